import ChatMeshAPI
import Foundation
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// Carts (R-CART-1..2): read and edited by staff through `CartEdit`.
extension OrderStore {
    // MARK: Carts (R-CART-1..2)

    /// The customer's open carts, newest change first.
    public func carts(shop: String, customer: String) async throws -> [Cart] {
        try await db.read { db in try await Self.openCarts(db, shop: shop, customer: customer) }
    }

    /// R-PANEL-1: a customer's open carts and order summary in one read.
    public func customerOrderContext(shop: String, customer: String, recent: Int) async throws -> (carts: [Cart], summary: OrderSummary) {
        try await db.read { db in
            (try await Self.openCarts(db, shop: shop, customer: customer), try await Self.summary(db, shop: shop, customer: customer, recent: recent))
        }
    }

    /// The customer's open carts, newest first, at most 100.
    static func openCarts(_ db: any SQLDatabase, shop: String, customer: String) async throws -> [Cart] {
        let rows = try await db.raw("""
            SELECT * FROM carts WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customer) AND order_id = ''
            ORDER BY updated_at_ms DESC, cart_id DESC LIMIT 100
            """).all()
        return try await carts(db, shop: shop, rows: rows)
    }

    static func carts(_ db: any SQLDatabase, shop: String, rows: [any SQLRow]) async throws -> [Cart] {
        var carts: [Cart] = try rows.map { row in
            Cart(
                cartId: try row.string("cart_id"), customerId: try row.string("customer_id"), campaignId: try row.string("campaign_id"),
                campaignName: try row.string("name"), updatedByStaffId: try row.string("updated_by_staff_id"), updatedAtMs: try row.int64("updated_at_ms"),
                name: try row.string("name")
            )
        }
        guard !carts.isEmpty else { return [] }
        var items: [String: [CartItem]] = [:]
        for row in try await db.raw("""
            SELECT * FROM cart_items WHERE shop_id = \(bind: shop) AND cart_id IN (\(binds: carts.map(\.cartId))) ORDER BY cart_id, variant_id
            """).all() {
            items[try row.string("cart_id"), default: []].append(CartItem(
                variantId: try row.string("variant_id"), quantity: Int32(try row.int64("quantity")), priceVnd: try row.int64("price_vnd")
            ))
        }
        for index in carts.indices {
            carts[index].items = items[carts[index].cartId] ?? []
            carts[index].totalVnd = carts[index].items.reduce(0) { $0 + Int64($1.quantity) * $1.priceVnd }
        }
        return carts
    }

    /// An open cart; `field` names where the request gave its id.
    static func cart(_ db: any SQLDatabase, shop: String, id: String, field: String = "cart_id") async throws -> Cart {
        guard let row = try await db.raw("SELECT * FROM carts WHERE shop_id = \(bind: shop) AND cart_id = \(bind: id)").first() else {
            throw OrderError.noCart(field: field, id: id)
        }
        let order = try row.string("order_id")
        let combined = try row.string("combined_into")
        if !combined.isEmpty { throw OrderError.cartCombined(field: field, cart: id, into: combined) }
        if !order.isEmpty { throw OrderError.cartBecameOrder(field: field, cart: id, order: order) }
        return try await carts(db, shop: shop, rows: [row]).first!
    }

    /// R-CART-3: one customer's open carts combined into a new cart named after the staff
    /// member (`name`), each variant once at the price its cart had; the carts combined are
    /// closed in the same transaction. The same key returns the cart it made.
    public func combineCarts(shop: String, ids: [String], name: String, staffId: String, idempotencyKey: String, nowMs: Int64) async throws -> Cart {
        return try await write { db in
            if !idempotencyKey.isEmpty, let row = try await db.raw("""
                SELECT * FROM carts WHERE shop_id = \(bind: shop) AND idempotency_key = \(bind: idempotencyKey) AND campaign_id = ''
                """).first() {
                return try await Self.carts(db, shop: shop, rows: [row]).first!
            }
            var carts: [Cart] = []
            for (index, id) in ids.enumerated() {
                carts.append(try await Self.cart(db, shop: shop, id: id, field: "cart_ids[\(index)]"))
            }
            let customer = carts[0].customerId
            // R-CART-3: one customer, each variant once; the draft's rule says both.
            let wanted = try OrderDraft.wanted(items: [], carts: carts, customerId: customer)
            let id = SortableID.make("cart_", nowMs: nowMs)
            try await db.raw("""
                INSERT INTO carts (shop_id, cart_id, customer_id, campaign_id, name, updated_by_staff_id, updated_at_ms, idempotency_key)
                VALUES (\(bind: shop), \(bind: id), \(bind: customer), '', \(bind: name), \(bind: staffId), \(bind: nowMs), \(bind: idempotencyKey))
                """).run()
            for line in wanted {
                try await db.raw("""
                    INSERT INTO cart_items (shop_id, cart_id, variant_id, quantity, price_vnd)
                    VALUES (\(bind: shop), \(bind: id), \(bind: line.variantId), \(bind: line.quantity), \(bind: line.priceVnd ?? 0))
                    """).run()
            }
            let closed = try await db.raw("""
                UPDATE carts SET combined_into = \(bind: id), order_id = \(bind: id), updated_by_staff_id = \(bind: staffId), updated_at_ms = \(bind: nowMs)
                WHERE shop_id = \(bind: shop) AND cart_id IN (\(binds: ids)) AND order_id = '' RETURNING cart_id
                """).all()
            if closed.count != ids.count { throw OrderError.cartTakenMeanwhile }
            try await Self.changed(db, shop: shop, [.carts], customers: [customer], nowMs: nowMs)
            return try await Self.cart(db, shop: shop, id: id)
        }
    }

    /// An open cart; a cart that became an order is refused.
    public func cart(shop: String, id: String) async throws -> Cart {
        try await db.read { db in try await Self.cart(db, shop: shop, id: id) }
    }

    /// R-CART-1..2: the cart's items replaced by staff. A variant already in the cart
    /// keeps its price; a new one takes the campaign's price, else the catalog's.
    public func updateCart(shop: String, id: String, items: [CartItem], staffId: String, nowMs: Int64) async throws -> Cart {
        return try await write { db in
            let cart = try await Self.cart(db, shop: shop, id: id)
            let catalog = try await Self.catalog(db, shop: shop, variants: items.map(\.variantId))
            var campaignPrices: [String: Int64] = [:]
            if !cart.campaignId.isEmpty {
                for row in try await db.raw("""
                    SELECT variant_id, price_vnd FROM campaign_items WHERE shop_id = \(bind: shop) AND campaign_id = \(bind: cart.campaignId)
                    """).all() {
                    campaignPrices[try row.string("variant_id")] = try row.int64("price_vnd")
                }
            }
            let edited = try CartEdit.items(
                replacing: cart.items, with: items, campaignPrices: campaignPrices, catalogPrices: catalog.mapValues(\.priceVnd)
            )
            try await db.raw("DELETE FROM cart_items WHERE shop_id = \(bind: shop) AND cart_id = \(bind: id)").run()
            for item in edited {
                try await db.raw("""
                    INSERT INTO cart_items (shop_id, cart_id, variant_id, quantity, price_vnd)
                    VALUES (\(bind: shop), \(bind: id), \(bind: item.variantId), \(bind: Int64(item.quantity)), \(bind: item.priceVnd))
                    """).run()
            }
            try await db.raw("""
                UPDATE carts SET updated_by_staff_id = \(bind: staffId), updated_at_ms = \(bind: nowMs) WHERE shop_id = \(bind: shop) AND cart_id = \(bind: id)
                """).run()
            try await Self.changed(db, shop: shop, [.carts], customers: [cart.customerId], nowMs: nowMs)
            return try await Self.cart(db, shop: shop, id: id)
        }
    }
}
