import Foundation
import Logging
import MeshProcess
import MeshRPC
import MeshStore

/// A producing service's outbox as it runs: the dispatcher delivering its queues
/// (woken by the store's commits), the operator RPCs (chatmesh.v1.OutboxService)
/// and the worker the process runs it on. Every producing service wires it alike.
public struct ServiceOutbox: Sendable {
    public let dispatcher: OutboxDispatcher
    public let operatorService: OutboxServiceHandler

    /// - Parameters:
    ///   - service: the executable's name ("order-svc"), as operators and logs see it.
    ///   - listen: where this replica listens; with the host name it tells replicas apart in leases.
    ///   - configuration: read from the environment before the database opens, so a wrong setting
    ///     stops the service before it touches anything.
    public init(
        service: String, listen: String, database: any SQLStore, subscribers: [Outbox.Subscriber], bell: CommitBell,
        configuration: OutboxDispatcher.Configuration, logger: Logger
    ) {
        dispatcher = OutboxDispatcher(
            store: database, subscribers: subscribers, replica: "\(ProcessInfo.processInfo.hostName)/\(listen)", bell: bell,
            configuration: configuration, logger: logger
        )
        operatorService = OutboxServiceHandler(service: service, store: database, dispatcher: dispatcher)
    }

    /// Delivers until the process shuts down.
    public var worker: MeshProcess.Worker {
        let dispatcher = dispatcher
        return MeshProcess.Worker(name: "outbox") { await dispatcher.run() }
    }
}
