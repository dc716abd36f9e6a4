import ChatMeshAPI
import MeshRPC
import MeshStore

/// The outbox as operators see it (chatmesh.v1.OutboxService): a producing
/// service serves it beside its own RPCs. Every answer is the calling shop's
/// rows only; the dispatcher's view of a subscriber (reachable, last delivery)
/// is the service's and names no shop.
public struct OutboxServiceHandler: OutboxService.Handler {
    let service: String
    let store: any SQLStore
    let dispatcher: OutboxDispatcher
    let now: @Sendable () -> Int64

    public init(service: String, store: any SQLStore, dispatcher: OutboxDispatcher, now: @escaping @Sendable () -> Int64 = WallClock.nowMs) {
        self.service = service
        self.store = store
        self.dispatcher = dispatcher
        self.now = now
    }

    public func getOutboxStatus(_ request: GetOutboxStatusRequest, context: ServerContext) async throws -> GetOutboxStatusResponse {
        let shop = try FieldCheck.id(request.shopId, "shop_id")
        let names = dispatcher.subscribers.map(\.name)
        let now = now()
        let queues = try await store.read { db in try await Outbox.status(db, shop: shop, subscribers: names, nowMs: now) }
        return GetOutboxStatusResponse(service: service, queues: queues.map { queue in
            let health = dispatcher.health(queue.subscriber) ?? OutboxDispatcher.Health()
            return OutboxQueueStatus(
                subscriber: queue.subscriber, pending: queue.pending, retrying: queue.retrying, dead: queue.dead,
                oldestPendingAgeMs: queue.pending > 0 ? max(0, now - queue.oldestPendingAtMs) : 0, reachable: health.reachable,
                lastError: health.reachable ? queue.lastError : health.unreachableError, lastDeliveredAtMs: health.lastDeliveredAtMs
            )
        })
    }

    public func listDeadEvents(_ request: ListDeadEventsRequest, context: ServerContext) async throws -> ListDeadEventsResponse {
        let shop = try FieldCheck.id(request.shopId, "shop_id")
        let subscriber = try self.subscriber(request.subscriber)
        let size = try FieldCheck.pageSize(request.pageSize, default: 100, max: 500)
        let after = try FieldCheck.optionalId(request.pageToken, "page_token")
        let dead = try await store.read { db in
            try await Outbox.dead(db, shop: shop, subscriber: subscriber, after: after, limit: size)
        }
        return ListDeadEventsResponse(
            events: dead.map {
                DeadEvent(
                    eventId: $0.eventId, subscriber: $0.subscriber, kind: $0.kind, customerId: $0.key, attempts: $0.attempts,
                    lastError: $0.lastError, createdAtMs: $0.createdAtMs, lastAttemptAtMs: $0.lastAttemptAtMs
                )
            },
            nextPageToken: dead.count == size ? dead.last!.seq : ""
        )
    }

    public func replayDeadEvents(_ request: ReplayDeadEventsRequest, context: ServerContext) async throws -> ReplayDeadEventsResponse {
        let shop = try FieldCheck.id(request.shopId, "shop_id")
        let subscriber = try self.subscriber(request.subscriber)
        guard request.eventIds.count <= 1000 else {
            throw RPCError.invalidArgument("event_ids: at most 1000 at once, not \(request.eventIds.count)")
        }
        for id in request.eventIds {
            _ = try FieldCheck.id(id, "event_ids")
        }
        let ids = request.eventIds
        let replayed = try await store.write { db in try await Outbox.replay(db, shop: shop, subscriber: subscriber, eventIds: ids) }
        if replayed > 0 { dispatcher.ring() }
        return ReplayDeadEventsResponse(replayed: Int64(replayed))
    }

    func subscriber(_ name: String) throws(RPCError) -> String? {
        if name.isEmpty { return nil }
        let names = dispatcher.subscribers.map(\.name)
        guard names.contains(name) else {
            throw RPCError.invalidArgument("subscriber must be one of \(names.joined(separator: ", ")), not \"\(name)\"")
        }
        return name
    }
}
