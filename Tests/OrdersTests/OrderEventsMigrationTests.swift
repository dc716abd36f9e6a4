import ChatMeshAPI
import Foundation
import MeshStore
import MeshTestSupport
@testable import Orders
import SQLKit
import Testing

/// Order events written before the outbox existed (schema version 1 kept them in
/// `order_events`, undelivered) move into the outbox when order-svc starts.
@Suite struct OrderEventsMigrationTests {
    @Test func undeliveredOrderEventsMoveIntoTheOutboxOnce() async throws {
        let database = try await TestDatabase.open("orders-migration")
        try await database.closing {
            try await database.migrate(OrderSchema.migrations.filter { $0.version == 1 })
            try await database.write { db in
                for (id, delivered) in [("ord_a:paid", 0), ("ord_a:cancelled", 0), ("ord_b:paid", 1_700_000_000_000)] as [(String, Int64)] {
                    try await db.raw("""
                        INSERT INTO order_events (shop_id, event_id, order_id, customer_id, kind, amount_vnd, channel, district, province, used_offer, at_ms, delivered_at_ms)
                        VALUES ('shop-m', \(bind: id), \(bind: String(id.prefix(5))), 'cu_1', \(bind: id.hasSuffix("paid") ? 1 : 2 as Int64), 450000, 2, 'Quận 5', 'TP.HCM', 1,
                                \(bind: id.hasSuffix("paid") ? 1_000 : 2_000 as Int64), \(bind: delivered))
                        """).run()
                }
            }
            let store = try await OrderStore.open(database)
            let events = try await store.pendingEvents(shop: "shop-m", order: "ord_a")
            #expect(events.map(\.eventId) == ["ord_a:paid", "ord_a:cancelled"])
            #expect(events.map(\.kind) == [.paid, .cancelled])
            #expect(events[0].amountVnd == 450_000 && events[0].district == "Quận 5" && events[0].usedOffer && events[0].channel == .livestream)
            #expect(try await store.pendingEvents(shop: "shop-m", order: "ord_b").isEmpty)  // delivered already
            await #expect(throws: (any Error).self) {
                _ = try await database.read { db in try await db.raw("SELECT COUNT(*) AS n FROM order_events").all() }
            }
            // Opening again applies nothing twice.
            _ = try await OrderStore.open(database)
            #expect(try await store.pendingEvents(shop: "shop-m", order: "ord_a").count == 2)
        }
    }
}
