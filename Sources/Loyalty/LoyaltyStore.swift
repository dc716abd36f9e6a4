import ChatMeshAPI
import Foundation
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// loyalty-svc's storage. A points change loads the member's lots into a
/// `PointsAccount` inside the write transaction, applies the rule there and
/// writes back what changed (lots, ledger entries, redemptions, the balance),
/// so the store cannot drift from the rule its property tests check. Only the
/// nightly expiry, which touches every member at once, is done in set-based SQL.
public struct LoyaltyStore: Sendable {
    let db: any SQLStore
    /// Rung after every commit, for the change log (R-PANEL-4).
    public let commitBell: CommitBell

    public init(_ db: any SQLStore, commitBell: CommitBell = CommitBell()) {
        self.db = db
        self.commitBell = commitBell
    }

    /// A transaction, then the bell: the changes it committed are looked at now.
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        defer { commitBell.ring() }
        return try await db.write(body)
    }

    /// R-PANEL-4: the members' points, tier or membership changed, for the change log.
    static func membersChanged(_ db: any SQLDatabase, shop: String, _ customers: some Collection<String>, nowMs: Int64) async throws {
        try await ChangeLog.record(db, Set(customers).sorted().map { ChangeLog.Entry(shopId: shop, kind: .member, customerId: $0) }, nowMs: nowMs)
    }

    /// Opens the store's tables, applying any migration not applied yet.
    public static func open(_ db: any SQLStore) async throws -> LoyaltyStore {
        try await db.migrate(LoyaltySchema.migrations)
        return LoyaltyStore(db)
    }
}
