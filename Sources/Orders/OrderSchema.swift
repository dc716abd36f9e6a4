import ChatMeshAPI
import MeshRPC
import MeshStore

/// order-svc's tables; every key starts with shop_id.
public enum OrderSchema {
    public static let migrations: [Migration] = [
        Migration(version: 1, name: "orders", statements: [
            "CREATE TABLE products (shop_id TEXT NOT NULL, product_id TEXT NOT NULL, name TEXT NOT NULL, name_key TEXT NOT NULL, PRIMARY KEY (shop_id, product_id))",
            "CREATE INDEX products_by_name ON products (shop_id, name_key)",
            // stock is what can still be sold: an order takes from it, a cancellation gives back.
            """
            CREATE TABLE variants (
                shop_id TEXT NOT NULL, variant_id TEXT NOT NULL, product_id TEXT NOT NULL, sku TEXT NOT NULL, title TEXT NOT NULL,
                price_vnd BIGINT NOT NULL, stock BIGINT NOT NULL, weight_g BIGINT NOT NULL, position BIGINT NOT NULL,
                PRIMARY KEY (shop_id, variant_id))
            """,
            "CREATE INDEX variants_by_product ON variants (shop_id, product_id, position)",
            """
            CREATE TABLE warehouses (
                shop_id TEXT NOT NULL, warehouse_id TEXT NOT NULL, name TEXT NOT NULL, street TEXT NOT NULL, ward TEXT NOT NULL,
                district TEXT NOT NULL, province TEXT NOT NULL, PRIMARY KEY (shop_id, warehouse_id))
            """,
            // R-CAMP-1. kind as Campaign.Kind.
            """
            CREATE TABLE campaigns (
                shop_id TEXT NOT NULL, campaign_id TEXT NOT NULL, page_id TEXT NOT NULL, kind BIGINT NOT NULL, name TEXT NOT NULL,
                post_id TEXT NOT NULL, live BIGINT NOT NULL, created_at_ms BIGINT NOT NULL, PRIMARY KEY (shop_id, campaign_id))
            """,
            "CREATE INDEX campaigns_by_page ON campaigns (shop_id, page_id, created_at_ms)",
            // A code may sell several variants (sizes); the first listed is the default.
            """
            CREATE TABLE campaign_items (
                shop_id TEXT NOT NULL, campaign_id TEXT NOT NULL, code TEXT NOT NULL, code_key TEXT NOT NULL, variant_id TEXT NOT NULL,
                price_vnd BIGINT NOT NULL, position BIGINT NOT NULL, PRIMARY KEY (shop_id, campaign_id, variant_id))
            """,
            // R-CAMP-2..3: every comment is kept, with the phone it gave.
            """
            CREATE TABLE comments (
                shop_id TEXT NOT NULL, comment_id TEXT NOT NULL, campaign_id TEXT NOT NULL, customer_id TEXT NOT NULL, text TEXT NOT NULL,
                phone TEXT NOT NULL, intents BIGINT NOT NULL, commented_at_ms BIGINT NOT NULL, PRIMARY KEY (shop_id, comment_id))
            """,
            "CREATE INDEX comments_by_campaign ON comments (shop_id, campaign_id, customer_id)",
            // R-CART-1..3: open carts are draft orders; one open cart per customer and campaign
            // (campaign_id empty for a cart staff put together, named after them).
            """
            CREATE TABLE carts (
                shop_id TEXT NOT NULL, cart_id TEXT NOT NULL, customer_id TEXT NOT NULL, campaign_id TEXT NOT NULL, name TEXT NOT NULL,
                updated_by_staff_id TEXT NOT NULL, updated_at_ms BIGINT NOT NULL, order_id TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (shop_id, cart_id))
            """,
            "CREATE UNIQUE INDEX carts_open ON carts (shop_id, customer_id, campaign_id) WHERE order_id = '' AND campaign_id <> ''",
            "CREATE INDEX carts_by_campaign ON carts (shop_id, campaign_id)",
            """
            CREATE TABLE cart_items (
                shop_id TEXT NOT NULL, cart_id TEXT NOT NULL, variant_id TEXT NOT NULL, quantity BIGINT NOT NULL, price_vnd BIGINT NOT NULL,
                PRIMARY KEY (shop_id, cart_id, variant_id))
            """,
            // R-ORD-1..6. status, payment_method and channel as their proto enums.
            """
            CREATE TABLE orders (
                shop_id TEXT NOT NULL, order_id TEXT NOT NULL, customer_id TEXT NOT NULL, status BIGINT NOT NULL,
                subtotal_vnd BIGINT NOT NULL, tier_discount_vnd BIGINT NOT NULL, points_discount_vnd BIGINT NOT NULL, redeemed_points BIGINT NOT NULL,
                shipping_fee_vnd BIGINT NOT NULL, total_vnd BIGINT NOT NULL, points_earned BIGINT NOT NULL,
                payment_method BIGINT NOT NULL, channel BIGINT NOT NULL, has_promotion BIGINT NOT NULL,
                ship_name TEXT NOT NULL, ship_phone TEXT NOT NULL, street TEXT NOT NULL, ward TEXT NOT NULL, district TEXT NOT NULL, province TEXT NOT NULL,
                quote_id TEXT NOT NULL, carrier TEXT NOT NULL DEFAULT '', tracking_code TEXT NOT NULL DEFAULT '', tracking_url TEXT NOT NULL DEFAULT '',
                shipment_warehouse_id TEXT NOT NULL DEFAULT '', shipped_at_ms BIGINT NOT NULL DEFAULT 0,
                created_by_staff_id TEXT NOT NULL, cancelled_by_staff_id TEXT NOT NULL DEFAULT '', cancel_reason TEXT NOT NULL DEFAULT '',
                idempotency_key TEXT NOT NULL, created_at_ms BIGINT NOT NULL, paid_at_ms BIGINT NOT NULL DEFAULT 0,
                completed_at_ms BIGINT NOT NULL DEFAULT 0, cancelled_at_ms BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (shop_id, order_id),
                UNIQUE (shop_id, idempotency_key))
            """,
            "CREATE INDEX orders_by_customer ON orders (shop_id, customer_id, created_at_ms)",
            "CREATE INDEX orders_by_time ON orders (shop_id, created_at_ms)",
            """
            CREATE TABLE order_items (
                shop_id TEXT NOT NULL, order_id TEXT NOT NULL, variant_id TEXT NOT NULL, quantity BIGINT NOT NULL, price_vnd BIGINT NOT NULL,
                product_name TEXT NOT NULL, variant_title TEXT NOT NULL, position BIGINT NOT NULL,
                PRIMARY KEY (shop_id, order_id, variant_id))
            """,
            // R-SHIP-1: a quote is used by one order at most, before it expires.
            """
            CREATE TABLE shipping_quotes (
                shop_id TEXT NOT NULL, quote_id TEXT NOT NULL, warehouse_id TEXT NOT NULL, carrier TEXT NOT NULL, service TEXT NOT NULL,
                fee_vnd BIGINT NOT NULL, eta_days BIGINT NOT NULL, province TEXT NOT NULL, district TEXT NOT NULL, weight_g BIGINT NOT NULL,
                cod_vnd BIGINT NOT NULL, created_at_ms BIGINT NOT NULL, expires_at_ms BIGINT NOT NULL, used_by_order_id TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (shop_id, quote_id))
            """,
            // What loyalty-svc must hear, before the outbox (version 2) carried it.
            """
            CREATE TABLE order_events (
                shop_id TEXT NOT NULL, event_id TEXT NOT NULL, order_id TEXT NOT NULL, customer_id TEXT NOT NULL, kind BIGINT NOT NULL,
                amount_vnd BIGINT NOT NULL, channel BIGINT NOT NULL, district TEXT NOT NULL, province TEXT NOT NULL, used_offer BIGINT NOT NULL,
                at_ms BIGINT NOT NULL, delivered_at_ms BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (shop_id, event_id))
            """,
            "CREATE INDEX order_events_pending ON order_events (delivered_at_ms, at_ms)",
        ]),
        // Order events go to loyalty-svc through the outbox; those written before it existed move there.
        Migration(version: 2, name: "outbox", statements: Outbox.schema) { db in
            let rows = try await db.raw("SELECT * FROM order_events WHERE delivered_at_ms = 0 ORDER BY at_ms, event_id").all()
            var events: [Outbox.Event] = []
            for row in rows {
                let event = RecordOrderEventRequest(
                    shopId: try row.string("shop_id"), eventId: try row.string("event_id"), orderId: try row.string("order_id"),
                    customerId: try row.string("customer_id"), kind: RecordOrderEventRequest.Kind(rawValue: Int32(try row.int64("kind"))),
                    amountVnd: try row.int64("amount_vnd"), channel: Order.Channel(rawValue: Int32(try row.int64("channel"))),
                    district: try row.string("district"), province: try row.string("province"), usedOffer: try row.int64("used_offer") != 0,
                    atMs: try row.int64("at_ms")
                )
                events.append(try OrderEvents.outboxEvent(event))
            }
            try await Outbox.enqueue(db, events, nowMs: WallClock.nowMs())
        },
        Migration(version: 3, name: "order events in the outbox only", statements: ["DROP TABLE order_events"]),
        // A customer's open carts (the panel's carts section): carts_open leaves out staff-made carts
        // (campaign_id empty), so without this the lookup walked every cart of the shop.
        Migration(version: 4, name: "carts by customer", statements: [
            "CREATE INDEX carts_by_customer ON carts (shop_id, customer_id, order_id, updated_at_ms)",
        ]),
        // R-PANEL-4: carts and orders changed, in order, for the live panel (ChangeLog).
        Migration(version: 5, name: "change log", statements: ChangeLog.schema),
        // R-SEG-4, R-ORD-7: the promotion and voucher an order got; R-REP-2: the page whose chat made it;
        // R-CART-3: a cart combined into another is closed with it, and a combined cart remembers its key.
        Migration(version: 6, name: "promotions, vouchers, pages, combined carts", statements: [
            "ALTER TABLE orders ADD COLUMN promotion_id TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE orders ADD COLUMN promotion_discount_vnd BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE orders ADD COLUMN voucher_code TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE orders ADD COLUMN voucher_discount_vnd BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE orders ADD COLUMN page_id TEXT NOT NULL DEFAULT ''",
            "CREATE INDEX orders_by_page ON orders (shop_id, page_id, created_at_ms)",
            "ALTER TABLE carts ADD COLUMN combined_into TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE carts ADD COLUMN idempotency_key TEXT NOT NULL DEFAULT ''",
        ]),
        // An event's trace goes on when it is delivered (README, Observability).
        Migration(version: 7, name: "outbox trace context", statements: Outbox.traceContextColumn),
    ]
}
