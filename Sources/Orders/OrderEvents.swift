import ChatMeshAPI
import MeshRPC
import MeshStore

/// Order events for loyalty-svc (R-PTS-1, R-LOY-3): written to the outbox with the
/// change that causes them, delivered as RecordOrderEvent, in order per customer.
public enum OrderEvents {
    /// The outbox queue they travel in.
    public static let subscriber = "loyalty"
    public static let kind = "RecordOrderEvent"

    static func outboxEvent(_ event: RecordOrderEventRequest) throws -> Outbox.Event {
        Outbox.Event(
            subscriber: subscriber, shopId: event.shopId, eventId: event.eventId, key: event.customerId, kind: kind,
            payload: try event.serializedBytes()
        )
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
