import ChatMeshAPI
import MeshStore
import SQLKit

/// R-SEG-3: the ad account, each synced segment's audience (schedule, last run) and the
/// members it was sent, so that a later run sends only who joined and who left, and a run
/// that stopped part-way resumes where its last accepted batch left the audience.
extension LoyaltyStore {
    /// Far enough never to come: a sync with schedule OFF that nobody asked for.
    static let never: Int64 = 1 << 62

    public func linkAdAccount(shop: String, adAccountId: String, sealedToken: String, nowMs: Int64) async throws -> AdAccount {
        try await write { db in
            try await db.raw("""
                INSERT INTO ad_accounts (shop_id, ad_account_id, sealed_token, linked_at_ms)
                VALUES (\(bind: shop), \(bind: adAccountId), \(bind: sealedToken), \(bind: nowMs))
                ON CONFLICT (shop_id) DO UPDATE SET ad_account_id = excluded.ad_account_id, sealed_token = excluded.sealed_token,
                    linked_at_ms = excluded.linked_at_ms
                """).run()
            return AdAccount(adAccountId: adAccountId, linkedAtMs: nowMs)
        }
    }

    /// The shop's ad account and its sealed token.
    public func adAccount(shop: String) async throws -> (id: String, sealedToken: String)? {
        try await db.read { db in
            try await db.raw("SELECT ad_account_id, sealed_token FROM ad_accounts WHERE shop_id = \(bind: shop)").first().map {
                (try $0.string("ad_account_id"), try $0.string("sealed_token"))
            }
        }
    }

    /// SyncSegmentAudience: due now, on `schedule` from then on.
    public func requestAudienceSync(shop: String, segmentId: String, schedule: SyncSegmentAudienceRequest.Schedule, nowMs: Int64) async throws -> AudienceSync {
        try await write { db in
            guard try await db.raw("SELECT shop_id FROM ad_accounts WHERE shop_id = \(bind: shop)").first() != nil else { throw LoyaltyError.noAdAccount }
            guard try await db.raw("SELECT segment_id FROM segments WHERE shop_id = \(bind: shop) AND segment_id = \(bind: segmentId)").first() != nil else {
                throw LoyaltyError.noSegment(segmentId)
            }
            try await db.raw("""
                INSERT INTO audience_syncs (shop_id, segment_id, schedule, status, next_run_at_ms)
                VALUES (\(bind: shop), \(bind: segmentId), \(bind: Int64(schedule.rawValue)), \(bind: Int64(AudienceSync.Status.pending.rawValue)), \(bind: nowMs))
                ON CONFLICT (shop_id, segment_id) DO UPDATE SET schedule = excluded.schedule, next_run_at_ms = excluded.next_run_at_ms,
                    status = CASE WHEN audience_syncs.claimed_until_ms > \(bind: nowMs) THEN audience_syncs.status ELSE excluded.status END
                """).run()
            return try await Self.audienceSync(db, shop: shop, segmentId: segmentId)
        }
    }

    public func audienceSync(shop: String, segmentId: String) async throws -> AudienceSync {
        try await db.read { db in try await Self.audienceSync(db, shop: shop, segmentId: segmentId) }
    }

    static func audienceSync(_ db: any SQLDatabase, shop: String, segmentId: String) async throws -> AudienceSync {
        guard let row = try await db.raw("""
            SELECT * FROM audience_syncs WHERE shop_id = \(bind: shop) AND segment_id = \(bind: segmentId)
            """).first() else { throw LoyaltyError.noAudienceSync(segmentId) }
        let next = try row.int64("next_run_at_ms")
        return AudienceSync(
            segmentId: segmentId, audienceId: try row.string("audience_id"), lastRunAtMs: try row.int64("last_run_at_ms"),
            uploaded: try row.int64("uploaded"), removed: try row.int64("removed"), skipped: try row.int64("skipped"),
            status: .init(rawValue: Int32(try row.int64("status"))), error: try row.string("error"),
            schedule: .init(rawValue: Int32(try row.int64("schedule"))), nextRunAtMs: next >= never ? 0 : next,
            audienceSize: try row.int64("audience_size")
        )
    }

    /// A sync that is due, claimed for `leaseMs` (replicas on one database take different ones).
    public struct AudienceRun: Sendable, Hashable {
        public var shop: String
        public var segmentId: String
        public var audienceId: String
        public var schedule: SyncSegmentAudienceRequest.Schedule
        public var claimedAtMs: Int64
    }

    public func claimDueAudienceSync(nowMs: Int64, leaseMs: Int64) async throws -> AudienceRun? {
        // Asked every second: a read finds nothing due without taking the writer.
        let due: SQLQueryString = """
            SELECT shop_id, segment_id FROM audience_syncs WHERE next_run_at_ms <= \(bind: nowMs) AND claimed_until_ms < \(bind: nowMs)
            ORDER BY next_run_at_ms LIMIT 1
            """
        guard try await db.read({ db in try await db.raw(due).first() }) != nil else { return nil }
        return try await write { db in
            guard let row = try await db.raw(due).first() else { return nil }
            let (shop, segment) = (try row.string("shop_id"), try row.string("segment_id"))
            guard let claimed = try await db.raw("""
                UPDATE audience_syncs SET claimed_until_ms = \(bind: nowMs + leaseMs), status = \(bind: Int64(AudienceSync.Status.running.rawValue))
                WHERE shop_id = \(bind: shop) AND segment_id = \(bind: segment) AND claimed_until_ms < \(bind: nowMs)
                RETURNING audience_id, schedule
                """).first() else { return nil }
            return AudienceRun(
                shop: shop, segmentId: segment, audienceId: try claimed.string("audience_id"),
                schedule: .init(rawValue: Int32(try claimed.int64("schedule"))), claimedAtMs: nowMs
            )
        }
    }

    public func setAudienceId(shop: String, segmentId: String, audienceId: String) async throws {
        try await write { db in
            try await db.raw("""
                UPDATE audience_syncs SET audience_id = \(bind: audienceId) WHERE shop_id = \(bind: shop) AND segment_id = \(bind: segmentId)
                """).run()
        }
    }

    /// A page of the members the audience was sent, by customer id after `after`.
    public func audienceMembers(shop: String, segmentId: String, after: String, limit: Int) async throws -> [AudienceRules.Member] {
        try await db.read { db in
            try await db.raw("""
                SELECT customer_id, phone_hash, email_hash FROM audience_members
                WHERE shop_id = \(bind: shop) AND segment_id = \(bind: segmentId) AND customer_id > \(bind: after)
                ORDER BY customer_id LIMIT \(literal: limit)
                """).all().map {
                AudienceRules.Member(
                    customerId: try $0.string("customer_id"),
                    identity: AudienceRules.Identity(phoneHash: try $0.string("phone_hash"), emailHash: try $0.string("email_hash"))
                )
            }
        }
    }

    /// What a batch the platform accepted did to the audience.
    public func recordAudienceBatch(shop: String, segmentId: String, kind: AudienceBatch.Kind, members: [(customerId: String, identity: AudienceRules.Identity)]) async throws {
        try await write { db in
            for chunk in members.chunked(100) {
                switch kind {
                case .add:
                    var sql: SQLQueryString = "INSERT INTO audience_members (shop_id, segment_id, customer_id, phone_hash, email_hash) VALUES "
                    for (index, member) in chunk.enumerated() {
                        sql += index == 0 ? "" : ", "
                        sql += "(\(bind: shop), \(bind: segmentId), \(bind: member.customerId), \(bind: member.identity.phoneHash), \(bind: member.identity.emailHash))"
                    }
                    sql += " ON CONFLICT (shop_id, segment_id, customer_id) DO UPDATE SET phone_hash = excluded.phone_hash, email_hash = excluded.email_hash"
                    try await db.raw(sql).run()
                case .remove:
                    // Only the identity that was removed: a changed member's new one may be in already.
                    for member in chunk {
                        try await db.raw("""
                            DELETE FROM audience_members WHERE shop_id = \(bind: shop) AND segment_id = \(bind: segmentId) AND customer_id = \(bind: member.customerId)
                              AND phone_hash = \(bind: member.identity.phoneHash) AND email_hash = \(bind: member.identity.emailHash)
                            """).run()
                    }
                }
            }
        }
    }

    /// A run's end: its counts, its status and error, when it runs next, the claim let go.
    public func finishAudienceRun(
        _ run: AudienceRun, status: AudienceSync.Status, uploaded: Int64, removed: Int64, skipped: Int64, error: String, nextRunAtMs: Int64?, nowMs: Int64
    ) async throws {
        try await write { db in
            let size = try await db.raw("""
                SELECT COUNT(*) AS n FROM audience_members WHERE shop_id = \(bind: run.shop) AND segment_id = \(bind: run.segmentId)
                """).first()!.int64("n")
            // A run asked for while this one ran (next_run_at_ms moved past the claim's start) stays due.
            try await db.raw("""
                UPDATE audience_syncs SET status = \(bind: Int64(status.rawValue)), uploaded = \(bind: uploaded), removed = \(bind: removed),
                    skipped = \(bind: skipped), error = \(bind: String(error.prefix(1000))), last_run_at_ms = \(bind: nowMs), audience_size = \(bind: size),
                    claimed_until_ms = 0,
                    next_run_at_ms = CASE WHEN next_run_at_ms > \(bind: run.claimedAtMs) AND next_run_at_ms < \(bind: Self.never) THEN next_run_at_ms
                                          ELSE \(bind: nextRunAtMs ?? Self.never) END
                WHERE shop_id = \(bind: run.shop) AND segment_id = \(bind: run.segmentId)
                """).run()
        }
    }
}
