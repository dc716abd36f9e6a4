import ChatMeshAPI
import Foundation
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// Members (R-LOY-1, R-SEG-1): profiles from conversation-svc, tiers, reads.
extension LoyaltyStore {
    // MARK: Members (R-LOY-1, R-SEG-1)

    /// Makes sure the customer is a member (since `atMs` when new).
    static func ensureMember(_ db: any SQLDatabase, shop: String, customerId: String, atMs: Int64) async throws {
        try await db.raw("""
            INSERT INTO members (shop_id, customer_id, member_since_ms) VALUES (\(bind: shop), \(bind: customerId), \(bind: atMs))
            ON CONFLICT (shop_id, customer_id) DO NOTHING
            """).run()
    }

    /// A member by customer id; `notAMember` when the customer never joined.
    public func member(shop: String, customerId: String) async throws -> Member {
        try await db.read { db in
            guard let member = try await Self.member(db, shop: shop, customerId: customerId) else {
                throw LoyaltyError.notAMember(customerId)
            }
            return member
        }
    }

    static func member(_ db: any SQLDatabase, shop: String, customerId: String) async throws -> Member? {
        guard let row = try await db.raw("""
            SELECT m.*, COALESCE(t.name, '') AS tier_name FROM members m LEFT JOIN tiers t ON t.shop_id = m.shop_id AND t.tier_id = m.tier_id
            WHERE m.shop_id = \(bind: shop) AND m.customer_id = \(bind: customerId)
            """).first() else { return nil }
        var member = try Self.member(row)
        // `+expires_at_ms` keeps the planner off points_lots_expiring (a partial index whose condition this query
        // would otherwise imply): through it, one member's read walked every expiring lot of the shop.
        member.expiring = try await db.raw("""
            SELECT expires_at_ms, SUM(remaining) AS points FROM points_lots
            WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND remaining > 0 AND +expires_at_ms > 0
            GROUP BY expires_at_ms ORDER BY expires_at_ms LIMIT 5
            """).all().map { ExpiringPoints(points: try $0.int64("points"), expiresAtMs: try $0.int64("expires_at_ms")) }
        return member
    }

    static func member(_ row: any SQLRow) throws -> Member {
        Member(
            customerId: try row.string("customer_id"), tierId: try row.string("tier_id"), tierName: try row.string("tier_name"),
            points: try row.int64("points"), orderCount: Int32(try row.int64("order_count")), totalSpentVnd: try row.int64("total_spent_vnd"),
            memberSinceMs: try row.int64("member_since_ms")
        )
    }

    /// R-LOY-1: members by customer id, optionally in a tier and with at least some points.
    public func members(shop: String, tierId: String?, minPoints: Int64, after: String, limit: Int) async throws -> [Member] {
        try await db.read { db in
            var sql: SQLQueryString = """
                SELECT m.*, COALESCE(t.name, '') AS tier_name FROM members m LEFT JOIN tiers t ON t.shop_id = m.shop_id AND t.tier_id = m.tier_id
                WHERE m.shop_id = \(bind: shop) AND m.customer_id > \(bind: after)
                """
            if let tierId { sql += " AND m.tier_id = \(bind: tierId)" }
            if minPoints > 0 { sql += " AND m.points >= \(bind: minPoints)" }
            sql += " ORDER BY m.customer_id LIMIT \(literal: limit)"
            return try await db.raw(sql).all().map(Self.member)
        }
    }

    /// R-SEG-1: the facts conversation-svc knows (phone, name, e-mail, birthday, chat tags by key).
    /// An `eventId` seen before, or a profile read (`atMs`) before the one applied last,
    /// changes nothing; returns whether it was applied.
    @discardableResult
    public func upsertProfile(
        shop: String, customerId: String, phone: String, name: String, email: String, birthday: (year: Int, month: Int, day: Int)?,
        tagKeys: Set<String>, eventId: String = "", atMs: Int64 = 0, nowMs: Int64
    ) async throws -> Bool {
        let birthdayText = birthday.map { String(format: "%04d-%02d-%02d", $0.year, $0.month, $0.day) } ?? ""
        return try await write { db in
            if !eventId.isEmpty {
                let first = try await db.raw("""
                    INSERT INTO seen_events (shop_id, event_id, at_ms) VALUES (\(bind: shop), \(bind: eventId), \(bind: nowMs))
                    ON CONFLICT (shop_id, event_id) DO NOTHING RETURNING event_id
                    """).all()
                if first.isEmpty { return false }
            }
            try await Self.ensureMember(db, shop: shop, customerId: customerId, atMs: nowMs)
            if atMs > 0, let row = try await db.raw("""
                SELECT profile_at_ms FROM members WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
                """).first(), try row.int64("profile_at_ms") > atMs {
                return false
            }
            // R-CONV-10, R-REF-1: a profile without a phone or an e-mail address (from a page that never
            // learnt it) keeps the one loyalty-svc has; neither is blanked by omission.
            let emailUpdate: SQLQueryString = email.isEmpty ? "" : "email = \(bind: email),"
            let phoneUpdate: SQLQueryString = phone.isEmpty ? "" : "phone = \(bind: phone),"
            try await db.raw("""
                UPDATE members SET \(phoneUpdate) name = \(bind: name), \(emailUpdate) birthday = \(bind: birthdayText),
                    birthday_month = \(bind: Int64(birthday?.month ?? 0)), birthday_md = \(bind: Int64(birthday.map { $0.month * 100 + $0.day } ?? 0)),
                    profile_at_ms = CASE WHEN profile_at_ms > \(bind: atMs) THEN profile_at_ms ELSE \(bind: atMs) END
                WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
                """).run()
            try await db.raw("DELETE FROM member_tags WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)").run()
            for key in tagKeys.sorted() {
                try await db.raw("INSERT INTO member_tags (shop_id, customer_id, tag_key) VALUES (\(bind: shop), \(bind: customerId), \(bind: key))").run()
            }
            try await Self.membersChanged(db, shop: shop, [customerId], nowMs: nowMs)
            return true
        }
    }
}
