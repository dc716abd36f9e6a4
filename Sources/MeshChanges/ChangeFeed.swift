import ChatMeshAPI
import Logging
import MeshProcess
import MeshRPC
import MeshStore

/// A service's `WatchChanges` (R-PANEL-4), served from its `ChangeLog`: the
/// position the stream starts at, then every change of the shop asked for (or of
/// every shop, for a service token) in position order, or a reset when the
/// position asked for has left the retained window.
public struct ChangeFeed: Sendable {
    public let log: ChangeLog

    public init(log: ChangeLog) {
        self.log = log
    }

    /// How many changes one response carries at most.
    static let batch = 500

    /// Serves one WatchChanges stream until the caller leaves, the process drains or the reader stalls past `stallLimit`.
    public func serve(_ request: WatchChangesRequest, responses: RPCWriter<WatchChangesResponse>, stallLimit: Duration = .seconds(60)) async throws {
        guard request.afterPosition >= 0 else { throw RPCError.invalidArgument("after_position must not be negative") }
        let shop = request.shopId == Principal.anyShop ? nil : request.shopId
        var position = request.afterPosition == 0 ? try await log.newest() : request.afterPosition
        try await responses.write(WatchChangesResponse(position: position), stallLimit: stallLimit)
        while true {
            try Task.checkCancellation()
            if log.isDraining {
                throw RPCError.unavailable("the service is shutting down: resume after position \(position) on another replica")
            }
            switch try await log.read(after: position, shop: shop, limit: Self.batch) {
            case .changes(let changes, let through):
                if !changes.isEmpty {
                    try await responses.write(WatchChangesResponse(changes: changes.map(Self.message), position: through), stallLimit: stallLimit)
                }
                if through == position { await log.wait(after: position) }
                position = through
            case .reset(let through):
                try await responses.write(WatchChangesResponse(position: through, reset: true), stallLimit: stallLimit)
                position = through
            }
        }
    }

    /// A change-log entry as the wire's `Change`.
    public static func message(_ change: ChangeLog.Change) -> Change {
        Change(
            position: change.position, shopId: change.entry.shopId, kind: Change.Kind(rawValue: change.entry.kind),
            pageId: change.entry.pageId, conversationId: change.entry.conversationId, customerId: change.entry.customerId, atMs: change.atMs
        )
    }
}

extension ChangeLog.Entry {
    public init(shopId: String, kind: Change.Kind, pageId: String = "", conversationId: String = "", customerId: String = "") {
        self.init(shopId: shopId, kind: kind.rawValue, pageId: pageId, conversationId: conversationId, customerId: customerId)
    }
}

extension ChangeFeed {
    /// The service's change log at its newest change, woken by the store's commits; the
    /// process runs `log.run()` as a worker.
    public static func open(_ database: any SQLStore, bell: CommitBell, logger: Logger) async throws -> ChangeFeed {
        let log = try await ChangeLog.open(database, logger: logger)
        bell.listen { log.committed() }
        return ChangeFeed(log: log)
    }

    /// Follows the change log (its commits, other replicas' on PostgreSQL) until the process shuts down.
    public var worker: MeshProcess.Worker {
        let log = log
        return MeshProcess.Worker(name: "changes") { await log.run() }
    }
}
