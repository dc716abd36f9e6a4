import ChatMeshAPI
import Foundation
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// order-svc's storage: catalog, warehouses, campaigns with their comments and
/// carts (this file), orders, quotes and events (+Orders). Every method takes the
/// shop and never reads another shop's rows; refusals throw before anything is
/// written or roll the transaction back.
public struct OrderStore: Sendable {
    let db: any SQLStore
    /// Rung after a commit that wrote order events for loyalty-svc (the outbox).
    public let commitBell: CommitBell

    public init(_ db: any SQLStore, commitBell: CommitBell = CommitBell()) {
        self.db = db
        self.commitBell = commitBell
    }

    /// Opens the store's tables, applying any migration not applied yet.
    public static func open(_ db: any SQLStore) async throws -> OrderStore {
        try await db.migrate(OrderSchema.migrations)
        return OrderStore(db)
    }

    /// A transaction, then the bell: the outbox rows and changes it committed are looked at now.
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        defer { commitBell.ring() }
        return try await db.write(body)
    }
}

extension OrderStore {
    /// "Áo sơ mi (Size M)" per variant id, for messages.
    public func variantNames(shop: String, ids: [String]) async throws -> [String: String] {
        try await db.read { db in
            try await Self.catalog(db, shop: shop, variants: ids).mapValues { $0.title.isEmpty ? $0.productName : "\($0.productName) (\($0.title))" }
        }
    }

    /// The newest phone the customer left in a comment (R-CONV-3), if any.
    public func commentPhone(shop: String, customer: String) async throws -> String? {
        try await db.read { db in
            try await db.raw("""
                SELECT phone FROM comments WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customer) AND phone <> ''
                ORDER BY commented_at_ms DESC LIMIT 1
                """).first()?.string("phone")
        }
    }
}
