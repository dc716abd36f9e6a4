import ChatMeshAPI
import Foundation
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// The shop's prepaid balance (R-MSG-3): top-ups, holds and their release.
extension MessagingStore {
    // MARK: Balance (R-MSG-3)

    /// The shop's balance, what is held, and its automatic top-up settings.
    public func balance(shop: String) async throws -> Balance {
        try await db.read { db in try await Self.balance(db, shop: shop) }
    }

    static func balance(_ db: any SQLDatabase, shop: String) async throws -> Balance {
        guard let row = try await db.raw("SELECT * FROM balances WHERE shop_id = \(bind: shop)").first() else {
            return Balance(balanceVnd: 0, autoTopUp: AutoTopUp())
        }
        return Balance(
            balanceVnd: try row.int64("balance_vnd"),
            autoTopUp: AutoTopUp(
                enabled: try row.int64("auto_enabled") != 0,
                thresholdVnd: try row.int64("auto_threshold_vnd"),
                amountVnd: try row.int64("auto_amount_vnd")
            )
        )
    }

    /// Appends to the ledger and moves the balance with it, in the caller's transaction.
    /// Returns false when an entry of this kind and reference exists already.
    static func post(_ db: any SQLDatabase, shop: String, amount: Int64, kind: LedgerKind, ref: String, nowMs: Int64) async throws -> Bool {
        if try await db.raw("""
            SELECT entry_id FROM balance_ledger WHERE shop_id = \(bind: shop) AND kind = \(bind: kind.rawValue) AND ref = \(bind: ref)
            """).first() != nil {
            return false
        }
        try await db.raw("""
            INSERT INTO balance_ledger (shop_id, entry_id, amount_vnd, kind, ref, at_ms)
            VALUES (\(bind: shop), \(bind: SortableID.make("led_", nowMs: nowMs)), \(bind: amount), \(bind: kind.rawValue), \(bind: ref), \(bind: nowMs))
            """).run()
        try await db.raw("""
            INSERT INTO balances (shop_id, balance_vnd) VALUES (\(bind: shop), \(bind: amount))
            ON CONFLICT (shop_id) DO UPDATE SET balance_vnd = balances.balance_vnd + \(bind: amount)
            """).run()
        return true
    }

    /// A top-up the payment gateway confirmed; the same `paymentRef` counts once
    /// (a different amount under a known reference is refused).
    public func topUp(shop: String, amountVnd: Int64, paymentRef: String, nowMs: Int64) async throws -> Balance {
        try await db.write { db in
            if let row = try await db.raw("""
                SELECT amount_vnd FROM balance_ledger WHERE shop_id = \(bind: shop) AND kind = \(bind: LedgerKind.topUp.rawValue) AND ref = \(bind: paymentRef)
                """).first(), try row.int64("amount_vnd") != amountVnd {
                throw MessagingError.topUpAmountDiffers(paymentRef: paymentRef)
            }
            _ = try await Self.post(db, shop: shop, amount: amountVnd, kind: .topUp, ref: paymentRef, nowMs: nowMs)
            return try await Self.balance(db, shop: shop)
        }
    }

    /// Saves when and by how much the balance tops itself up.
    public func setAutoTopUp(shop: String, _ settings: AutoTopUp) async throws -> Balance {
        try await db.write { db in
            try await db.raw("""
                INSERT INTO balances (shop_id, balance_vnd, auto_enabled, auto_threshold_vnd, auto_amount_vnd)
                VALUES (\(bind: shop), \(bind: 0 as Int64), \(bind: settings.enabled ? 1 : 0 as Int64), \(bind: settings.thresholdVnd), \(bind: settings.amountVnd))
                ON CONFLICT (shop_id) DO UPDATE SET auto_enabled = \(bind: settings.enabled ? 1 : 0 as Int64),
                    auto_threshold_vnd = \(bind: settings.thresholdVnd), auto_amount_vnd = \(bind: settings.amountVnd)
                """).run()
            return try await Self.balance(db, shop: shop)
        }
    }

    /// How many automatic top-ups the shop has had (their references are `auto-<shop>-<n>`).
    public func automaticTopUpCount(shop: String) async throws -> Int {
        try await db.read { db in
            try await db.raw("""
                SELECT COUNT(*) AS n FROM balance_ledger WHERE shop_id = \(bind: shop) AND kind = \(bind: LedgerKind.topUp.rawValue)
                  AND ref LIKE \(bind: "auto-" + shop + "-%")
                """).first()!.int("n")
        }
    }

    /// The sum of the shop's ledger: what the balance must always equal.
    public func ledgerSum(shop: String) async throws -> Int64 {
        try await db.read { db in
            try await db.raw("SELECT COALESCE(SUM(amount_vnd), 0) AS s FROM balance_ledger WHERE shop_id = \(bind: shop)").first()!
                .int64("s")
        }
    }
}
