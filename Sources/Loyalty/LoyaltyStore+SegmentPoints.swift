import ChatMeshAPI
import MeshStore
import SQLKit

/// R-PTS-5: points added to or removed from every member of a segment, once per key.
///
/// The segment's members are written down when the key is first seen, then adjusted in
/// batches, each batch one transaction that also marks its members done: a run cut off
/// part-way (a crash, a deadline) is finished by the same key again, and nobody is
/// adjusted twice. Additions are set-based (one lot and one ledger entry per member);
/// removals go through `PointsAccount`, member by member, so they spend oldest first and
/// never take a balance below zero.
extension LoyaltyStore {
    public struct SegmentAdjustment: Sendable, Hashable {
        /// The segment's members when the key was first seen.
        public var members: Int64
        /// Members whose balance changed.
        public var adjusted: Int64
        /// What was added or removed in all (signed).
        public var pointsTotal: Int64
    }

    public func adjustSegment(
        shop: String, segmentId: String, rule: SegmentRule, points: Int64, reason: String, staffId: String, key: String, nowMs: Int64,
        batchSize: Int = 1_000
    ) async throws -> SegmentAdjustment {
        try await write { db in
            if let row = try await db.raw("""
                SELECT segment_id, points FROM segment_adjustments WHERE shop_id = \(bind: shop) AND idempotency_key = \(bind: key)
                """).first() {
                let (segment, was) = (try row.string("segment_id"), try row.int64("points"))
                guard segment == segmentId, was == points else { throw LoyaltyError.adjustmentKeyReused(key: key, segment: segment, points: was) }
                return
            }
            try await db.raw("""
                INSERT INTO segment_adjustment_members (shop_id, idempotency_key, customer_id)
                SELECT m.shop_id, \(bind: key), m.customer_id FROM members m WHERE m.shop_id = \(bind: shop) AND
                """ + Self.predicate(rule, shop: shop)).run()
            let members = try await db.raw("""
                SELECT COUNT(*) AS n FROM segment_adjustment_members WHERE shop_id = \(bind: shop) AND idempotency_key = \(bind: key)
                """).first()!.int64("n")
            try await db.raw("""
                INSERT INTO segment_adjustments (shop_id, idempotency_key, segment_id, points, reason, staff_id, members, created_at_ms)
                VALUES (\(bind: shop), \(bind: key), \(bind: segmentId), \(bind: points), \(bind: reason), \(bind: staffId), \(bind: members), \(bind: nowMs))
                """).run()
        }
        while try await adjustNextBatch(shop: shop, key: key, points: points, reason: reason, staffId: staffId, nowMs: nowMs, limit: batchSize) {}
        return try await db.read { db in
            let row = try await db.raw("""
                SELECT members, adjusted, points_total FROM segment_adjustments WHERE shop_id = \(bind: shop) AND idempotency_key = \(bind: key)
                """).first()!
            return SegmentAdjustment(members: try row.int64("members"), adjusted: try row.int64("adjusted"), pointsTotal: try row.int64("points_total"))
        }
    }

    /// Adjusts up to `limit` members not done yet; false when none was left.
    private func adjustNextBatch(shop: String, key: String, points: Int64, reason: String, staffId: String, nowMs: Int64, limit: Int) async throws -> Bool {
        try await write { db in
            let batch = try await db.raw("""
                SELECT customer_id FROM segment_adjustment_members WHERE shop_id = \(bind: shop) AND idempotency_key = \(bind: key) AND done = 0
                ORDER BY customer_id LIMIT \(literal: limit)
                """).all().map { try $0.string("customer_id") }
            guard !batch.isEmpty else {
                try await db.raw("UPDATE segment_adjustments SET done = 1 WHERE shop_id = \(bind: shop) AND idempotency_key = \(bind: key)").run()
                return false
            }
            var adjusted: [String] = []
            var total: Int64 = 0
            if points > 0 {
                let expires = try await Self.program(db, shop: shop).expiresAt(earnedAtMs: nowMs) ?? 0
                try await db.raw("""
                    INSERT INTO points_lots (shop_id, customer_id, lot_id, earned_at_ms, expires_at_ms, points, remaining, order_id)
                    SELECT m.shop_id, m.customer_id,
                           COALESCE((SELECT MAX(l.lot_id) + 1 FROM points_lots l WHERE l.shop_id = m.shop_id AND l.customer_id = m.customer_id), 0),
                           \(bind: nowMs), \(bind: expires), \(bind: points), \(bind: points), ''
                    FROM members m WHERE m.shop_id = \(bind: shop) AND m.customer_id IN (\(binds: batch))
                    """).run()
                let run = SortableID.make("pts_", nowMs: nowMs) + "_"
                try await db.raw("""
                    INSERT INTO points_ledger (shop_id, entry_id, customer_id, kind, points, at_ms, order_id, reason, staff_id, expires_at_ms)
                    SELECT m.shop_id, \(bind: run) || m.customer_id, m.customer_id, \(bind: PointsAccount.EntryKind.adjust.rawValue), \(bind: points),
                           \(bind: nowMs), '', \(bind: reason), \(bind: staffId), \(bind: expires)
                    FROM members m WHERE m.shop_id = \(bind: shop) AND m.customer_id IN (\(binds: batch))
                    """).run()
                try await db.raw("""
                    UPDATE members SET points = points + \(bind: points) WHERE shop_id = \(bind: shop) AND customer_id IN (\(binds: batch))
                    """).run()
                try await Self.membersChanged(db, shop: shop, batch, nowMs: nowMs)
                adjusted = batch
                total = points * Int64(batch.count)
            } else {
                for customer in batch {
                    let removed = try await Self.withAccount(db, shop: shop, customerId: customer, nowMs: nowMs) { account -> Int64 in
                        // Never below zero: what is spendable now, up to what was asked.
                        var amount = -points
                        if case .insufficient(let spendable)? = Self.attempt({ () throws(PointsAccount.Refusal) in
                            try account.spend(amount, atMs: nowMs, kind: .adjust, reason: reason, staffId: staffId)
                        }) {
                            amount = spendable
                            guard amount > 0 else { return 0 }
                            try account.spend(amount, atMs: nowMs, kind: .adjust, reason: reason, staffId: staffId)
                        }
                        return amount
                    }
                    if removed > 0 {
                        adjusted.append(customer)
                        total -= removed
                    }
                }
            }
            try await db.raw("""
                UPDATE segment_adjustment_members SET done = 1
                WHERE shop_id = \(bind: shop) AND idempotency_key = \(bind: key) AND customer_id IN (\(binds: batch))
                """).run()
            try await db.raw("""
                UPDATE segment_adjustments SET adjusted = adjusted + \(bind: Int64(adjusted.count)), points_total = points_total + \(bind: total)
                WHERE shop_id = \(bind: shop) AND idempotency_key = \(bind: key)
                """).run()
            return true
        }
    }
}
