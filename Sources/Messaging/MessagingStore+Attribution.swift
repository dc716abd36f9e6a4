import ChatMeshAPI
import MeshStore
import SQLKit

/// R-MSG-2 profit: order events from order-svc, credited to broadcasts by `BroadcastAttribution`.
extension MessagingStore {
    /// Applies an order event once by its id: a paid order is credited to the broadcast the
    /// rule picks from the customer's delivered broadcast messages; a cancellation or refund
    /// takes a credited order back out. Returns the broadcast credited (or taken from).
    public func orderEvent(
        shop: String, eventId: String, orderId: String, customerId: String, paid: Bool, amountVnd: Int64, atMs: Int64, nowMs: Int64
    ) async throws -> String? {
        try await db.write { db in
            guard try await Self.firstSight(db, shop: shop, eventId: eventId, nowMs: nowMs) else {
                return try await db.raw("""
                    SELECT broadcast_id FROM order_attributions WHERE shop_id = \(bind: shop) AND order_id = \(bind: orderId)
                    """).first()?.string("broadcast_id")
            }
            let existing = try await db.raw("""
                SELECT broadcast_id, amount_vnd, reversed FROM order_attributions WHERE shop_id = \(bind: shop) AND order_id = \(bind: orderId)
                """).first()
            guard paid else {
                guard let existing, try existing.int64("reversed") == 0 else { return nil }
                let broadcast = try existing.string("broadcast_id")
                try await db.raw("UPDATE order_attributions SET reversed = 1 WHERE shop_id = \(bind: shop) AND order_id = \(bind: orderId)").run()
                try await db.raw("""
                    UPDATE broadcasts SET attributed_orders = attributed_orders - 1, attributed_revenue_vnd = attributed_revenue_vnd - \(bind: try existing.int64("amount_vnd"))
                    WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: broadcast)
                    """).run()
                return broadcast
            }
            if let existing { return try existing.string("broadcast_id") }  // paid once
            let since = atMs - Int64(BroadcastAttribution.maxDays) * BroadcastAttribution.dayMs
            let touches = try await db.raw("""
                SELECT m.broadcast_id, m.updated_at_ms, b.attribution_days FROM messages m
                JOIN broadcasts b ON b.shop_id = m.shop_id AND b.broadcast_id = m.broadcast_id
                WHERE m.shop_id = \(bind: shop) AND m.customer_id = \(bind: customerId) AND m.status = \(bind: MessageDelivery.Status.delivered.rawValue)
                  AND m.updated_at_ms >= \(bind: since) AND m.updated_at_ms <= \(bind: atMs) AND m.broadcast_id <> ''
                """).all().map { row in
                BroadcastAttribution.Touch(
                    broadcastId: try row.string("broadcast_id"), deliveredAtMs: try row.int64("updated_at_ms"), windowDays: Int(try row.int64("attribution_days"))
                )
            }
            guard let broadcast = BroadcastAttribution.credit(paidAtMs: atMs, touches: touches) else { return nil }
            try await db.raw("""
                INSERT INTO order_attributions (shop_id, order_id, broadcast_id, customer_id, amount_vnd, paid_at_ms)
                VALUES (\(bind: shop), \(bind: orderId), \(bind: broadcast), \(bind: customerId), \(bind: amountVnd), \(bind: atMs))
                """).run()
            try await db.raw("""
                UPDATE broadcasts SET attributed_orders = attributed_orders + 1, attributed_revenue_vnd = attributed_revenue_vnd + \(bind: amountVnd)
                WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: broadcast)
                """).run()
            return broadcast
        }
    }
}
