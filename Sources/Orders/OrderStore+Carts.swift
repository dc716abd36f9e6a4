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
        try await db.read { db in
            let rows = try await db.raw("""
                SELECT * FROM carts WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customer) AND order_id = ''
                ORDER BY updated_at_ms DESC, cart_id DESC LIMIT 100
                """).all()
            return try await Self.carts(db, shop: shop, rows: rows)
        }
    }

    static func carts(_ db: any SQLDatabase, shop: String, rows: [any SQLRow]) async throws -> [Cart] {
        var carts: [Cart] = try rows.map { row in
            Cart(
                cartId: try row.string("cart_id"), customerId: try row.string("customer_id"), campaignId: try row.string("campaign_id"),
                campaignName: try row.string("name"), updatedByStaffId: try row.string("updated_by_staff_id"), updatedAtMs: try row.int64("updated_at_ms")
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
        if !order.isEmpty { throw OrderError.cartBecameOrder(field: field, cart: id, order: order) }
        return try await carts(db, shop: shop, rows: [row]).first!
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
