import CoreMetrics
import Foundation
import Logging
import MeshMetrics
import MeshProcess
import MeshRPC
import MeshStore

/// A producing service's outbox as it runs: the dispatcher delivering its queues
/// (woken by the store's commits), the operator RPCs (chatmesh.v1.OutboxService)
/// and the worker the process runs it on. Every producing service wires it alike.
public struct ServiceOutbox: Sendable {
    public let dispatcher: OutboxDispatcher
    public let operatorService: OutboxServiceHandler
    private let database: any SQLStore
    private let queues: [String]

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
        self.database = database
        queues = subscribers.map(\.name)
    }

    /// Each queue's backlog, retries, dead events and the age of its oldest pending event, read
    /// per scrape (one grouped query): `chatmesh_outbox_events{queue,state="pending|retrying|dead"}`
    /// and `chatmesh_outbox_oldest_pending_seconds{queue}`.
    public func metricsCollector(factory: any MetricsFactory = MetricsSystem.factory) -> MetricsCollector {
        var gauges: [String: (pending: Meter, retrying: Meter, dead: Meter, age: Meter)] = [:]
        for queue in queues {
            func events(_ state: String) -> Meter {
                Meter(label: "chatmesh_outbox_events", dimensions: [("queue", queue), ("state", state)], factory: factory)
            }
            gauges[queue] = (events("pending"), events("retrying"), events("dead"),
                             Meter(label: "chatmesh_outbox_oldest_pending_seconds", dimensions: [("queue", queue)], factory: factory))
        }
        let database = database
        let queues = queues
        return MetricsCollector(name: "outbox") { [gauges] in
            let nowMs = WallClock.nowMs()
            let statuses = try await database.read { db in
                try await Outbox.status(db, shop: nil, subscribers: queues, nowMs: nowMs)
            }
            for status in statuses {
                guard let gauge = gauges[status.subscriber] else { continue }
                gauge.pending.set(Double(status.pending))
                gauge.retrying.set(Double(status.retrying))
                gauge.dead.set(Double(status.dead))
                gauge.age.set(status.pending > 0 ? Double(max(0, nowMs - status.oldestPendingAtMs)) / 1000 : 0)
            }
        }
    }

    /// Delivers until the process shuts down.
    public var worker: MeshProcess.Worker {
        let dispatcher = dispatcher
        return MeshProcess.Worker(name: "outbox") { await dispatcher.run() }
    }
}
