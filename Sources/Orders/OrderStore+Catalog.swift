import ChatMeshAPI
import Foundation
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// The catalog (products and variants) and warehouses (R-SHIP-1).
extension OrderStore {
    // MARK: Catalog

    /// Creates (empty id) or updates a product; variants are added or updated, never
    /// removed (orders, carts and campaigns point at them).
    public func upsertProduct(shop: String, _ product: Product, nowMs: Int64) async throws -> Product {
        return try await write { db in
            var saved = product
            if saved.productId.isEmpty {
                saved.productId = SortableID.make("prd_", nowMs: nowMs)
            }
            try await db.raw("""
                INSERT INTO products (shop_id, product_id, name, name_key) VALUES (\(bind: shop), \(bind: saved.productId), \(bind: product.name),
                    \(bind: TagName.key(product.name)))
                ON CONFLICT (shop_id, product_id) DO UPDATE SET name = \(bind: product.name), name_key = \(bind: TagName.key(product.name))
                """).run()
            let existing = try await db.raw("""
                SELECT COALESCE(MAX(position), -1) AS p FROM variants WHERE shop_id = \(bind: shop) AND product_id = \(bind: saved.productId)
                """).first()!.int64("p")
            for (index, variant) in product.variants.enumerated() {
                var v = variant
                if v.variantId.isEmpty {
                    v.variantId = SortableID.make("var_", nowMs: nowMs)
                } else if let owner = try await db.raw("""
                    SELECT product_id FROM variants WHERE shop_id = \(bind: shop) AND variant_id = \(bind: v.variantId)
                    """).first(), try owner.string("product_id") != saved.productId {
                    throw OrderError.variantOfAnotherProduct(field: "variants[\(index)]", variant: v.variantId, product: try owner.string("product_id"))
                }
                try await db.raw("""
                    INSERT INTO variants (shop_id, variant_id, product_id, sku, title, price_vnd, stock, weight_g, position)
                    VALUES (\(bind: shop), \(bind: v.variantId), \(bind: saved.productId), \(bind: v.sku), \(bind: v.title), \(bind: v.priceVnd),
                            \(bind: Int64(v.stock)), \(bind: Int64(v.weightG)), \(bind: existing + 1 + Int64(index)))
                    ON CONFLICT (shop_id, variant_id) DO UPDATE SET sku = \(bind: v.sku), title = \(bind: v.title), price_vnd = \(bind: v.priceVnd),
                        stock = \(bind: Int64(v.stock)), weight_g = \(bind: Int64(v.weightG))
                    """).run()
                saved.variants[index] = v
            }
            return try await Self.products(db, shop: shop, ids: [saved.productId]).first!
        }
    }

    static func products(_ db: any SQLDatabase, shop: String, ids: [String]) async throws -> [Product] {
        guard !ids.isEmpty else { return [] }
        var products: [String: Product] = [:]
        for row in try await db.raw("SELECT product_id, name FROM products WHERE shop_id = \(bind: shop) AND product_id IN (\(binds: ids))").all() {
            products[try row.string("product_id")] = Product(productId: try row.string("product_id"), name: try row.string("name"))
        }
        for row in try await db.raw("""
            SELECT * FROM variants WHERE shop_id = \(bind: shop) AND product_id IN (\(binds: ids)) ORDER BY product_id, position
            """).all() {
            products[try row.string("product_id")]?.variants.append(try Self.variant(row))
        }
        return ids.compactMap { products[$0] }
    }

    static func variant(_ row: any SQLRow) throws -> Variant {
        Variant(
            variantId: try row.string("variant_id"), sku: try row.string("sku"), title: try row.string("title"), priceVnd: try row.int64("price_vnd"),
            stock: Int32(clamping: try row.int64("stock")), weightG: Int32(clamping: try row.int64("weight_g"))
        )
    }

    /// Products by id after `after`, optionally whose name contains `query` (accents and case ignored).
    public func products(shop: String, query: String, after: String, limit: Int) async throws -> [Product] {
        try await db.read { db in
            var sql: SQLQueryString = "SELECT product_id FROM products WHERE shop_id = \(bind: shop) AND product_id > \(bind: after)"
            let key = TagName.key(query)
            if !key.isEmpty {
                let pattern = "%" + key.replacingOccurrences(of: "%", with: "").replacingOccurrences(of: "_", with: "") + "%"
                sql += " AND name_key LIKE \(bind: pattern)"
            }
            sql += " ORDER BY product_id LIMIT \(literal: limit)"
            let ids = try await db.raw(sql).all().map { try $0.string("product_id") }
            return try await Self.products(db, shop: shop, ids: ids)
        }
    }

    /// The variants of `ids` the shop sells, by id.
    static func catalog(_ db: any SQLDatabase, shop: String, variants ids: [String]) async throws -> [String: OrderDraft.CatalogEntry] {
        guard !ids.isEmpty else { return [:] }
        var out: [String: OrderDraft.CatalogEntry] = [:]
        for row in try await db.raw("""
            SELECT v.variant_id, v.title, v.price_vnd, v.stock, p.name FROM variants v
            JOIN products p ON p.shop_id = v.shop_id AND p.product_id = v.product_id
            WHERE v.shop_id = \(bind: shop) AND v.variant_id IN (\(binds: Array(Set(ids))))
            """).all() {
            out[try row.string("variant_id")] = OrderDraft.CatalogEntry(
                productName: try row.string("name"), title: try row.string("title"), priceVnd: try row.int64("price_vnd"), stock: try row.int64("stock")
            )
        }
        return out
    }

    // MARK: Warehouses (R-SHIP-1)

    /// Creates (empty id) or updates a warehouse.
    public func upsertWarehouse(shop: String, _ warehouse: Warehouse, nowMs: Int64) async throws -> Warehouse {
        var saved = warehouse
        if saved.warehouseId.isEmpty { saved.warehouseId = SortableID.make("wh_", nowMs: nowMs) }
        let a = warehouse.address ?? Address()
        let id = saved.warehouseId
        try await write { db in
            try await db.raw("""
                INSERT INTO warehouses (shop_id, warehouse_id, name, street, ward, district, province)
                VALUES (\(bind: shop), \(bind: id), \(bind: warehouse.name), \(bind: a.street), \(bind: a.ward), \(bind: a.district), \(bind: a.province))
                ON CONFLICT (shop_id, warehouse_id) DO UPDATE SET name = \(bind: warehouse.name), street = \(bind: a.street), ward = \(bind: a.ward),
                    district = \(bind: a.district), province = \(bind: a.province)
                """).run()
        }
        return saved
    }

    /// The shop's warehouses by name.
    public func warehouses(shop: String) async throws -> [Warehouse] {
        try await db.read { db in
            try await db.raw("SELECT * FROM warehouses WHERE shop_id = \(bind: shop) ORDER BY name, warehouse_id").all().map(Self.warehouse)
        }
    }

    static func warehouse(_ row: any SQLRow) throws -> Warehouse {
        Warehouse(
            warehouseId: try row.string("warehouse_id"), name: try row.string("name"),
            address: Address(street: try row.string("street"), ward: try row.string("ward"), district: try row.string("district"), province: try row.string("province"))
        )
    }

    static func warehouse(_ db: any SQLDatabase, shop: String, id: String) async throws -> Warehouse {
        guard let row = try await db.raw("SELECT * FROM warehouses WHERE shop_id = \(bind: shop) AND warehouse_id = \(bind: id)").first() else {
            throw OrderError.noWarehouse(id)
        }
        return try warehouse(row)
    }
}
