import ChatMeshAPI
import MeshRPC
import MeshStore

/// Order events: written to the outbox with the change that causes them, delivered in
/// order per customer — to loyalty-svc as RecordOrderEvent (R-PTS-1, R-LOY-3) and to
/// messaging-svc as OnOrderEvent (R-MSG-2: the broadcasts' profit).
public enum OrderEvents {
    /// The outbox queues they travel in.
    public static let subscriber = "loyalty"
    public static let kind = "RecordOrderEvent"
    public static let messagingQueue = "messaging"
    public static let messagingKind = "OnOrderEvent"

    static func outboxEvent(_ event: RecordOrderEventRequest) throws -> Outbox.Event {
        Outbox.Event(
            subscriber: subscriber, shopId: event.shopId, eventId: event.eventId, key: event.customerId, kind: kind,
            payload: try event.serializedBytes()
        )
    }

    /// The same event as messaging-svc takes it.
    static func messagingEvent(_ event: RecordOrderEventRequest) throws -> Outbox.Event {
        let kind: OnOrderEventRequest.Kind = switch event.kind {
        case .paid: .paid
        case .cancelled: .cancelled
        default: .refunded
        }
        let payload = OnOrderEventRequest(
            shopId: event.shopId, eventId: event.eventId, orderId: event.orderId, customerId: event.customerId, kind: kind, amountVnd: event.amountVnd,
            atMs: event.atMs
        )
        return Outbox.Event(
            subscriber: messagingQueue, shopId: event.shopId, eventId: event.eventId, key: event.customerId, kind: messagingKind,
            payload: try payload.serializedBytes()
        )
    }

    /// messaging-svc over the wire with a service token for the event's shop.
    public static func messagingSubscriber(channel: any RPCChannel, token: @escaping @Sendable (_ shop: String) -> String) -> Outbox.Subscriber {
        let client = MessagingService.Client(channel: channel)
        return Outbox.Subscriber(name: messagingQueue) { delivery in
            let event = try OnOrderEventRequest(serializedBytes: delivery.payload)
            _ = try await client.onOrderEvent(event, options: .bearer(token(delivery.shopId), timeout: .seconds(10)))
        }
    }

    /// An outbox payload as the request loyalty-svc receives.
    public static func decode(_ payload: [UInt8]) throws -> RecordOrderEventRequest {
        try RecordOrderEventRequest(serializedBytes: payload)
    }

    /// The subscriber the dispatcher delivers them to: loyalty-svc over the wire with
    /// a service token for the event's shop. An event loyalty-svc had applied before
    /// comes back `applied = false`, which is delivered too.
    public static func loyaltySubscriber(channel: any RPCChannel, token: @escaping @Sendable (_ shop: String) -> String) -> Outbox.Subscriber {
        let client = LoyaltyService.Client(channel: channel)
        return Outbox.Subscriber(name: subscriber) { delivery in
            let event = try decode(delivery.payload)
            _ = try await client.recordOrderEvent(event, options: .bearer(token(delivery.shopId), timeout: .seconds(10)))
        }
    }
}
