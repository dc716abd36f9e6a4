import ChatMeshAPI
import Foundation
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// The points ledger (R-PTS-1..4) through `PointsAccount`: redeem, adjust, expire.
extension LoyaltyStore {
    // MARK: Points (R-PTS-1..4)

    /// Loads the member's account, lets `change` act on it, and writes back what changed.
    static func withAccount<T>(
        _ db: any SQLDatabase, shop: String, customerId: String, nowMs: Int64, order: String = "",
        _ change: (inout PointsAccount) throws -> T
    ) async throws -> T {
        let lots = try await db.raw("""
            SELECT * FROM points_lots WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) ORDER BY lot_id
            """).all().map { row in
            let expires = try row.int64("expires_at_ms")
            return PointsAccount.Lot(
                lotId: Int(try row.int64("lot_id")), earnedAtMs: try row.int64("earned_at_ms"), expiresAtMs: expires == 0 ? nil : expires,
                points: try row.int64("points"), remaining: try row.int64("remaining"), orderId: try row.string("order_id")
            )
        }
        var redemptions: [String: [(lot: Int, points: Int64)]] = [:]
        var reversed: Set<String> = []
        if !order.isEmpty {
            for row in try await db.raw("""
                SELECT lot_id, points FROM redemptions WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND order_id = \(bind: order)
                """).all() {
                redemptions[order, default: []].append((Int(try row.int64("lot_id")), try row.int64("points")))
            }
            if try await db.raw("""
                SELECT order_id FROM reversed_orders WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND order_id = \(bind: order)
                """).first() != nil {
                reversed.insert(order)
            }
        }
        var account = PointsAccount(lots: lots, redemptions: redemptions, reversedOrders: reversed)
        let result = try change(&account)

        let before = Dictionary(uniqueKeysWithValues: lots.map { ($0.lotId, $0.remaining) })
        for lot in account.lots {
            if let old = before[lot.lotId] {
                if old != lot.remaining {
                    try await db.raw("""
                        UPDATE points_lots SET remaining = \(bind: lot.remaining)
                        WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND lot_id = \(bind: Int64(lot.lotId))
                        """).run()
                }
            } else {
                try await db.raw("""
                    INSERT INTO points_lots (shop_id, customer_id, lot_id, earned_at_ms, expires_at_ms, points, remaining, order_id)
                    VALUES (\(bind: shop), \(bind: customerId), \(bind: Int64(lot.lotId)), \(bind: lot.earnedAtMs), \(bind: lot.expiresAtMs ?? 0),
                            \(bind: lot.points), \(bind: lot.remaining), \(bind: lot.orderId))
                    """).run()
            }
        }
        for entry in account.entries {
            try await db.raw("""
                INSERT INTO points_ledger (shop_id, entry_id, customer_id, kind, points, at_ms, order_id, reason, staff_id, expires_at_ms)
                VALUES (\(bind: shop), \(bind: SortableID.make("pts_", nowMs: nowMs)), \(bind: customerId), \(bind: entry.kind.rawValue), \(bind: entry.points),
                        \(bind: entry.atMs), \(bind: entry.orderId), \(bind: entry.reason), \(bind: entry.staffId), \(bind: entry.expiresAtMs ?? 0))
                """).run()
        }
        if !order.isEmpty {
            try await db.raw("""
                DELETE FROM redemptions WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND order_id = \(bind: order)
                """).run()
            for (lot, points) in account.redemptions(of: order) {
                try await db.raw("""
                    INSERT INTO redemptions (shop_id, customer_id, order_id, lot_id, points) VALUES (\(bind: shop), \(bind: customerId), \(bind: order),
                        \(bind: Int64(lot)), \(bind: points))
                    ON CONFLICT (shop_id, customer_id, order_id, lot_id) DO UPDATE SET points = redemptions.points + \(bind: points)
                    """).run()
            }
            if account.reversedOrders.contains(order) && !reversed.contains(order) {
                try await db.raw("""
                    INSERT INTO reversed_orders (shop_id, customer_id, order_id) VALUES (\(bind: shop), \(bind: customerId), \(bind: order))
                    """).run()
            }
        }
        try await db.raw("""
            UPDATE members SET points = \(bind: account.balance) WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
            """).run()
        try await membersChanged(db, shop: shop, [customerId], nowMs: nowMs)
        return result
    }

    /// Runs a points change; its refusal, if any, comes back as a value (the transaction is then rolled back by the caller's throw).
    static func attempt(_ body: () throws(PointsAccount.Refusal) -> Void) -> PointsAccount.Refusal? {
        do {
            try body()
            return nil
        } catch {
            return error
        }
    }

    /// R-PTS-3: points spent at checkout on `orderId`.
    public func redeem(shop: String, customerId: String, points: Int64, orderId: String, reason: String, staffId: String, nowMs: Int64) async throws -> Member {
        return try await write { db in
            guard try await Self.member(db, shop: shop, customerId: customerId) != nil else {
                throw LoyaltyError.notAMember(customerId)
            }
            // An order redeems once: a retried call (order-svc after a time-out) changes nothing.
            if !orderId.isEmpty, try await db.raw("""
                SELECT entry_id FROM points_ledger WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND order_id = \(bind: orderId)
                  AND kind = \(bind: PointsAccount.EntryKind.redeem.rawValue) LIMIT 1
                """).first() != nil {
                return try await Self.member(db, shop: shop, customerId: customerId)!
            }
            let refused = try await Self.withAccount(db, shop: shop, customerId: customerId, nowMs: nowMs, order: orderId) { account in
                Self.attempt { () throws(PointsAccount.Refusal) in try account.spend(points, atMs: nowMs, kind: .redeem, orderId: orderId, reason: reason, staffId: staffId) }
            }
            if let refused { throw LoyaltyError.points(refused) }
            return try await Self.member(db, shop: shop, customerId: customerId)!
        }
    }

    /// R-PTS-4: staff add (positive) or remove (negative) points with a reason.
    public func adjust(shop: String, customerId: String, points: Int64, orderId: String, reason: String, staffId: String, nowMs: Int64) async throws -> Member {
        return try await write { db in
            guard try await Self.member(db, shop: shop, customerId: customerId) != nil else {
                throw LoyaltyError.notAMember(customerId)
            }
            let program = try await Self.program(db, shop: shop)
            let refused = try await Self.withAccount(db, shop: shop, customerId: customerId, nowMs: nowMs) { account in
                Self.attempt { () throws(PointsAccount.Refusal) in
                    if points > 0 {
                        try account.add(points, atMs: nowMs, expiresAtMs: program.expiresAt(earnedAtMs: nowMs), kind: .adjust, orderId: orderId, reason: reason, staffId: staffId)
                    } else {
                        try account.spend(-points, atMs: nowMs, kind: .adjust, orderId: orderId, reason: reason, staffId: staffId)
                    }
                }
            }
            if let refused { throw LoyaltyError.points(refused) }
            return try await Self.member(db, shop: shop, customerId: customerId)!
        }
    }

    /// R-PTS-6: a page of the member's ledger, newest first, before `before` (an entry id; empty: from the newest).
    public func history(shop: String, customerId: String, before: String, limit: Int) async throws -> [PointsHistoryEntry] {
        try await db.read { db in
            var sql: SQLQueryString = "SELECT * FROM points_ledger WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)"
            if !before.isEmpty { sql += " AND entry_id < \(bind: before)" }
            return try await db.raw(sql + " ORDER BY entry_id DESC LIMIT \(literal: limit)").all().map { row in
                let kind: PointsHistoryEntry.Kind = switch PointsAccount.EntryKind(rawValue: try row.string("kind")) {
                case .earn: .earned
                case .redeem: .redeemed
                case .adjust: .adjusted
                case .expire: .expired
                case .reverse: .reversed
                case .restore: .restored
                case nil: .kindUnspecified
                }
                return PointsHistoryEntry(
                    entryId: try row.string("entry_id"), kind: kind, points: try row.int64("points"), orderId: try row.string("order_id"),
                    staffId: try row.string("staff_id"), reason: try row.string("reason"), atMs: try row.int64("at_ms"),
                    expiresAtMs: try row.int64("expires_at_ms")
                )
            }
        }
    }

    /// The member's ledger, oldest first (for tests and operators).
    public func ledger(shop: String, customerId: String) async throws -> [(kind: String, points: Int64, reason: String, staffId: String)] {
        try await db.read { db in
            try await db.raw("""
                SELECT kind, points, reason, staff_id FROM points_ledger WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) ORDER BY entry_id
                """).all().map { (try $0.string("kind"), try $0.int64("points"), try $0.string("reason"), try $0.string("staff_id")) }
        }
    }

    /// R-PTS-2: every lot whose expiry has come by `asOfMs` loses what is left,
    /// for the whole shop in three set-based statements. Returns the points expired.
    public func expire(shop: String, asOfMs: Int64, nowMs: Int64) async throws -> Int64 {
        return try await write { db in
            let due: SQLQueryString = """
                l.shop_id = \(bind: shop) AND l.remaining > 0 AND l.expires_at_ms > 0 AND l.expires_at_ms <= \(bind: asOfMs)
                """
            let total = try await db.raw("SELECT COALESCE(SUM(l.remaining), 0) AS n FROM points_lots l WHERE " + due).first()!.int64("n")
            guard total > 0 else { return 0 }
            let customers = try await db.raw("SELECT DISTINCT l.customer_id FROM points_lots l WHERE " + due).all().map { try $0.string("customer_id") }
            try await Self.membersChanged(db, shop: shop, customers, nowMs: nowMs)
            let run = SortableID.make("pts_", nowMs: nowMs)
            try await db.raw("""
                INSERT INTO points_ledger (shop_id, entry_id, customer_id, kind, points, at_ms, order_id, reason, staff_id)
                SELECT l.shop_id, \(bind: run + "_") || l.customer_id, l.customer_id, 'expire', -SUM(l.remaining), \(bind: asOfMs), '', 'expired', ''
                FROM points_lots l WHERE
                """ + " " + due + " GROUP BY l.shop_id, l.customer_id").run()
            try await db.raw("""
                UPDATE members SET points = points - (SELECT COALESCE(SUM(l.remaining), 0) FROM points_lots l
                                                      WHERE l.customer_id = members.customer_id AND
                """ + " " + due + ") WHERE shop_id = \(bind: shop) AND customer_id IN (SELECT l.customer_id FROM points_lots l WHERE " + due + ")").run()
            try await db.raw("UPDATE points_lots SET remaining = 0 WHERE shop_id = \(bind: shop) AND remaining > 0 AND expires_at_ms > 0 AND expires_at_ms <= \(bind: asOfMs)").run()
            return total
        }
    }
}
