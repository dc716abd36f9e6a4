import ChatMeshAPI
import Foundation
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// R-MSG-2 storage. A broadcast moves in batches: `reserveBatch` records a
/// batch's messages as QUEUED, holds their price and advances `next_seq` in one
/// transaction; `settleBatch` records the providers' answers and the counters
/// in another. A restart finds the broadcast RUNNING, delivers what the last
/// reserved batch left QUEUED, and goes on from `next_seq`: every recipient's
/// message has the idempotency key `bc:<broadcast>:<customer>`, so nobody is
/// reserved twice. With replicas, the broadcast is worked by the runner holding
/// its lease (RunnerLease): every write below takes a `lease` and changes nothing
/// unless it still holds it.
extension MessagingStore {
    /// A broadcast as the runner needs it.
    public struct BroadcastJob: Sendable, Hashable {
        public var shop: String
        public var broadcastId: String
        public var channel: Template.Channel
        public var templateId: String
        public var segmentId: String
        public var params: [String: String]
        public var status: Broadcast.Status
        public var audienceLoaded: Bool
        public var nextSeq: Int64
        public var attempts: Int
        public var updatedAtMs: Int64
    }

    /// One recipient of a broadcast, in audience order.
    public struct AudienceMember: Sendable, Hashable {
        public var seq: Int64
        public var customerId: String
        public var phone: String
        public var name: String
        public var email: String
    }

    /// A message the runner rendered for one member, ready to be reserved.
    public struct PlannedMessage: Sendable, Hashable {
        public var customerId: String
        public var recipient: String
        public var body: String
        public var params: [String: String]
        public var humanAgent: Bool = false

        public init(customerId: String, recipient: String, body: String, params: [String: String]) {
            self.customerId = customerId
            self.recipient = recipient
            self.body = body
            self.params = params
        }
    }

    /// What a batch reservation gave: the messages to deliver, or nothing because the broadcast stopped.
    public enum BatchReservation: Sendable {
        case stopped
        case reserved([(delivery: Delivery, costVnd: Int64, day: Int64)])
    }

    static func broadcastKey(_ broadcastId: String, _ customerId: String) -> String {
        "bc:\(broadcastId):\(customerId)"
    }

    /// Records a broadcast (R-MSG-2), scheduled or running at once.
    public func createBroadcast(
        shop: String, idempotencyKey: String, channel: Template.Channel, templateId: String, segmentId: String, scheduleAtMs: Int64,
        params: [String: String], attributionDays: Int = BroadcastAttribution.defaultDays, nowMs: Int64
    ) async throws -> Broadcast {
        let paramsJSON = String(decoding: try JSONEncoder().encode(params), as: UTF8.self)
        let id = try await db.write { db -> String in
            if let row = try await db.raw("""
                SELECT broadcast_id FROM broadcasts WHERE shop_id = \(bind: shop) AND idempotency_key = \(bind: idempotencyKey)
                """).first() {
                return try row.string("broadcast_id")
            }
            let id = SortableID.make("bc_", nowMs: nowMs)
            let status: Broadcast.Status = scheduleAtMs > nowMs ? .scheduled : .running
            try await db.raw("""
                INSERT INTO broadcasts (shop_id, broadcast_id, idempotency_key, channel, template_id, segment_id, schedule_at_ms, params, status,
                                        created_at_ms, updated_at_ms, attribution_days)
                VALUES (\(bind: shop), \(bind: id), \(bind: idempotencyKey), \(bind: Int64(channel.rawValue)), \(bind: templateId),
                        \(bind: segmentId), \(bind: max(scheduleAtMs, nowMs)), \(bind: paramsJSON), \(bind: Int64(status.rawValue)),
                        \(bind: nowMs), \(bind: nowMs), \(bind: Int64(attributionDays)))
                """).run()
            return id
        }
        return try await broadcast(shop: shop, id: id)
    }

    /// A broadcast with its counts, skip reasons and the shop's remaining balance.
    public func broadcast(shop: String, id: String) async throws -> Broadcast {
        try await db.read { db in
            guard let row = try await db.raw("SELECT * FROM broadcasts WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id)").first() else {
                throw MessagingError.noBroadcast(id)
            }
            let skips = try await db.raw("""
                SELECT reason, count FROM broadcast_skips WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id) ORDER BY count DESC, reason
                """).all().map { SkipReason(reason: try $0.string("reason"), count: Int32(try $0.int64("count"))) }
            return Broadcast(
                broadcastId: id, status: .init(rawValue: Int32(try row.int64("status"))), channel: .init(rawValue: Int32(try row.int64("channel"))),
                templateId: try row.string("template_id"), segmentId: try row.string("segment_id"), scheduleAtMs: try row.int64("schedule_at_ms"),
                total: Int32(try row.int64("total")), sent: Int32(try row.int64("sent")), failed: Int32(try row.int64("failed")),
                skipped: Int32(try row.int64("skipped")), costVnd: try row.int64("cost_vnd"), skipReasons: skips,
                remainingBalanceVnd: try await Self.balance(db, shop: shop).balanceVnd,
                attributedOrders: Int32(try row.int64("attributed_orders")), attributedRevenueVnd: try row.int64("attributed_revenue_vnd"),
                profitVnd: BroadcastAttribution.profit(revenueVnd: try row.int64("attributed_revenue_vnd"), costVnd: try row.int64("cost_vnd")),
                attributionDays: Int32(try row.int64("attribution_days"))
            )
        }
    }

    /// Stops a scheduled or running broadcast; what was sent stays sent. Cancelling twice answers the same.
    public func cancelBroadcast(shop: String, id: String, nowMs: Int64) async throws -> Broadcast {
        try await db.write { db in
            guard let row = try await db.raw("SELECT status FROM broadcasts WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id)").first() else {
                throw MessagingError.noBroadcast(id)
            }
            let status = Broadcast.Status(rawValue: Int32(try row.int64("status")))
            if try BroadcastLifecycle.cancel(id, from: status).get() {
                try await db.raw("""
                    UPDATE broadcasts SET status = \(bind: Self.status(.cancel)), updated_at_ms = \(bind: nowMs)
                    WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id)
                    """).run()
            }
        }
        return try await broadcast(shop: shop, id: id)
    }

    /// A lifecycle step's target and source statuses as stored.
    static func status(_ step: BroadcastLifecycle.Step) -> Int64 { Int64(BroadcastLifecycle.to(step).rawValue) }
    static func statuses(before step: BroadcastLifecycle.Step) -> [Int64] { BroadcastLifecycle.from(step).map { Int64($0.rawValue) } }

    /// Broadcasts to work on: running ones (a restart left them so) and scheduled ones now due,
    /// that no other runner holds.
    public func dueBroadcasts(nowMs: Int64, holder: String, limit: Int = 20) async throws -> [BroadcastJob] {
        try await db.read { db in
            try await db.raw("""
                SELECT * FROM broadcasts
                WHERE (status = \(bind: Int64(Broadcast.Status.running.rawValue))
                       OR (status = \(bind: Int64(Broadcast.Status.scheduled.rawValue)) AND schedule_at_ms <= \(bind: nowMs)))
                  AND (lease_until_ms < \(bind: nowMs) OR lease_holder = \(bind: holder))
                ORDER BY schedule_at_ms, broadcast_id LIMIT \(literal: limit)
                """).all().map(Self.broadcastJob)
        }
    }

    /// Takes a due broadcast for `lease`'s holder: false when another runner holds it, or it ended meanwhile.
    public func claimBroadcast(shop: String, id: String, lease: RunnerLease, nowMs: Int64) async throws -> Bool {
        try await db.write { db in
            try await !db.raw("""
                UPDATE broadcasts SET lease_holder = \(bind: lease.holder), lease_until_ms = \(bind: nowMs + lease.durationMs)
                WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id)
                  AND status IN (\(bind: Int64(Broadcast.Status.scheduled.rawValue)), \(bind: Int64(Broadcast.Status.running.rawValue)))
                  AND (lease_until_ms < \(bind: nowMs) OR lease_holder = \(bind: lease.holder))
                RETURNING broadcast_id
                """).all().isEmpty
        }
    }

    /// Extends the lease while the runner delivers; false when another runner took the broadcast over.
    public func renewBroadcast(shop: String, id: String, lease: RunnerLease, nowMs: Int64) async throws -> Bool {
        do {
            try await db.write { db in try await Self.holdLease(db, shop: shop, id: id, lease: lease, nowMs: nowMs) }
            return true
        } catch MessagingError.leaseLost {
            return false
        }
    }

    /// Gives the broadcast up (the runner stops, or it ended): another replica may take it at once.
    public func releaseBroadcast(shop: String, id: String, lease: RunnerLease) async throws {
        try await db.write { db in
            try await db.raw("""
                UPDATE broadcasts SET lease_until_ms = 0
                WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id) AND lease_holder = \(bind: lease.holder)
                """).run()
        }
    }

    /// The first statement of every write a runner makes for a broadcast: extends the lease if
    /// `lease`'s holder still has it, and otherwise throws `leaseLost`, so that the transaction
    /// changes nothing. The row stays locked to the end of the transaction, so a takeover
    /// (claimBroadcast) waits for it and then finds the lease extended.
    static func holdLease(_ db: any SQLDatabase, shop: String, id: String, lease: RunnerLease, nowMs: Int64) async throws {
        let held = try await db.raw("""
            UPDATE broadcasts SET lease_until_ms = \(bind: nowMs + lease.durationMs)
            WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id) AND lease_holder = \(bind: lease.holder)
            RETURNING broadcast_id
            """).all()
        if held.isEmpty { throw MessagingError.leaseLost(broadcastId: id) }
    }

    /// What the runner needs of a broadcast, if it exists.
    public func broadcastJob(shop: String, id: String) async throws -> BroadcastJob? {
        try await db.read { db in
            try await db.raw("SELECT * FROM broadcasts WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id)").first().map(Self.broadcastJob)
        }
    }

    static func broadcastJob(_ row: any SQLRow) throws -> BroadcastJob {
        BroadcastJob(
            shop: try row.string("shop_id"), broadcastId: try row.string("broadcast_id"), channel: .init(rawValue: Int32(try row.int64("channel"))),
            templateId: try row.string("template_id"), segmentId: try row.string("segment_id"),
            params: try JSONDecoder().decode([String: String].self, from: Data(try row.string("params").utf8)),
            status: .init(rawValue: Int32(try row.int64("status"))), audienceLoaded: try row.int64("audience_loaded") != 0,
            nextSeq: try row.int64("next_seq"), attempts: Int(try row.int64("attempts")), updatedAtMs: try row.int64("updated_at_ms")
        )
    }

    /// Starts (or, after a restart in the middle of it, starts again) taking the audience.
    /// False when the broadcast was cancelled meanwhile.
    public func beginAudience(shop: String, id: String, lease: RunnerLease, nowMs: Int64) async throws -> Bool {
        try await db.write { db in
            try await Self.holdLease(db, shop: shop, id: id, lease: lease, nowMs: nowMs)
            let updated = try await db.raw("""
                UPDATE broadcasts SET status = \(bind: Self.status(.start)), total = 0, updated_at_ms = \(bind: nowMs)
                WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id) AND status IN (\(binds: Self.statuses(before: .start)))
                  AND audience_loaded = 0
                RETURNING broadcast_id
                """).all()
            if updated.isEmpty { return false }
            try await db.raw("DELETE FROM broadcast_audience WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id)").run()
            return true
        }
    }

    /// Appends one page of the audience; `total` counts what is taken so far.
    public func appendAudience(shop: String, id: String, members: [SegmentMember], firstSeq: Int64, lease: RunnerLease, nowMs: Int64) async throws {
        guard !members.isEmpty else { return }
        try await db.write { db in
            try await Self.holdLease(db, shop: shop, id: id, lease: lease, nowMs: nowMs)
            for start in stride(from: 0, to: members.count, by: 500) {
                let chunk = members[start..<min(start + 500, members.count)]
                var sql: SQLQueryString = "INSERT INTO broadcast_audience (shop_id, broadcast_id, seq, customer_id, phone, name, email) VALUES "
                for (offset, member) in chunk.enumerated() {
                    if offset > 0 { sql += ", " }
                    sql += """
                        (\(bind: shop), \(bind: id), \(bind: firstSeq + Int64(start + offset)), \(bind: member.customerId), \(bind: member.phone),
                         \(bind: member.name), \(bind: member.email))
                        """
                }
                try await db.raw(sql).run()
            }
            try await db.raw("""
                UPDATE broadcasts SET total = total + \(bind: Int64(members.count)) WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id)
                """).run()
        }
    }

    /// Marks the audience complete: the runner sends from it from now on.
    public func finishAudience(shop: String, id: String, lease: RunnerLease, nowMs: Int64) async throws {
        try await db.write { db in
            try await Self.holdLease(db, shop: shop, id: id, lease: lease, nowMs: nowMs)
            try await db.raw("""
                UPDATE broadcasts SET audience_loaded = 1, attempts = 0, updated_at_ms = \(bind: nowMs) WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id)
                """).run()
        }
    }

    /// A round that could not go on (loyalty-svc unreachable): counted, and after `maxAttempts` the broadcast FAILED.
    public func broadcastAttemptFailed(shop: String, id: String, error: String, maxAttempts: Int, lease: RunnerLease, nowMs: Int64) async throws {
        try await db.write { db in
            try await Self.holdLease(db, shop: shop, id: id, lease: lease, nowMs: nowMs)
            try await db.raw("""
                UPDATE broadcasts SET attempts = attempts + 1, error = \(bind: error), updated_at_ms = \(bind: nowMs),
                       status = CASE WHEN attempts + 1 >= \(bind: Int64(maxAttempts)) AND status IN (\(binds: Self.statuses(before: .fail)))
                                     THEN \(bind: Self.status(.fail)) ELSE status END
                WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id)
                """).run()
        }
    }

    /// Ends a broadcast that cannot be sent at all (its segment or template is gone).
    public func failBroadcast(shop: String, id: String, error: String, lease: RunnerLease, nowMs: Int64) async throws {
        try await db.write { db in
            try await Self.holdLease(db, shop: shop, id: id, lease: lease, nowMs: nowMs)
            try await db.raw("""
                UPDATE broadcasts SET status = \(bind: Self.status(.fail)), error = \(bind: error), updated_at_ms = \(bind: nowMs)
                WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id) AND status IN (\(binds: Self.statuses(before: .fail)))
                """).run()
        }
    }

    /// Ends a running broadcast whose every recipient was sent to or skipped.
    public func completeBroadcast(shop: String, id: String, lease: RunnerLease, nowMs: Int64) async throws {
        try await db.write { db in
            try await Self.holdLease(db, shop: shop, id: id, lease: lease, nowMs: nowMs)
            try await db.raw("""
                UPDATE broadcasts SET status = \(bind: Self.status(.complete)), updated_at_ms = \(bind: nowMs)
                WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id) AND status IN (\(binds: Self.statuses(before: .complete)))
                """).run()
        }
    }

    /// Recipients from `fromSeq` on, in order.
    public func audience(shop: String, id: String, fromSeq: Int64, limit: Int) async throws -> [AudienceMember] {
        try await db.read { db in
            try await db.raw("""
                SELECT seq, customer_id, phone, name, email FROM broadcast_audience
                WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: id) AND seq >= \(bind: fromSeq)
                ORDER BY seq LIMIT \(literal: limit)
                """).all().map { row in
                AudienceMember(
                    seq: try row.int64("seq"), customerId: try row.string("customer_id"), phone: try row.string("phone"),
                    name: try row.string("name"), email: try row.string("email")
                )
            }
        }
    }

    /// Reserves one batch: skips counted by reason, then as many planned messages as
    /// today's ZNS quota and the balance allow (the rest skipped with that reason),
    /// each recorded QUEUED with its price held. `nextSeq` is where the next batch starts.
    public func reserveBatch(
        shop: String, broadcastId: String, template: Template, planned: [PlannedMessage], skipped: [String], nextSeq: Int64,
        priceVnd: Int64, zns: ZnsQualityPolicy?, lease: RunnerLease, nowMs: Int64
    ) async throws -> BatchReservation {
        let day = VietnamTime.dayNumber(atMs: nowMs)
        let encoder = JSONEncoder()
        let rows = try planned.map { ($0, String(decoding: try encoder.encode($0.params), as: UTF8.self)) }
        return try await db.write { db in
            try await Self.holdLease(db, shop: shop, id: broadcastId, lease: lease, nowMs: nowMs)
            guard let row = try await db.raw("""
                SELECT status FROM broadcasts WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: broadcastId)
                """).first(), try row.int64("status") == Int64(Broadcast.Status.running.rawValue) else {
                return .stopped
            }
            var skips = skipped
            var candidates = rows
            // A member listed twice (in this batch or an earlier one) is messaged once.
            if !candidates.isEmpty {
                let keys = candidates.map { Self.broadcastKey(broadcastId, $0.0.customerId) }
                var taken = Set(try await db.raw("""
                    SELECT idempotency_key FROM messages WHERE shop_id = \(bind: shop) AND idempotency_key IN (\(binds: keys))
                    """).all().map { try $0.string("idempotency_key") })
                let before = candidates.count
                candidates.removeAll { !taken.insert(Self.broadcastKey(broadcastId, $0.0.customerId)).inserted }
                skips += Array(repeating: BroadcastSkip.duplicate, count: before - candidates.count)
            }
            if let zns, !candidates.isEmpty {
                let state = try await Self.znsState(db, shop: shop, today: day, policy: zns)
                if !state.allowedPurposes.contains(template.purpose) {
                    skips += Array(repeating: BroadcastSkip.purposeNotAllowed, count: candidates.count)
                    candidates = []
                } else {
                    let room = max(0, state.quota - (try await Self.znsSent(db, shop: shop, day: day)))
                    if candidates.count > room {
                        skips += Array(repeating: BroadcastSkip.znsQuota, count: candidates.count - room)
                        candidates.removeLast(candidates.count - room)
                    }
                }
            }
            if priceVnd > 0, !candidates.isEmpty {
                let affordable = Int(max(0, try await Self.balance(db, shop: shop).balanceVnd) / priceVnd)
                if candidates.count > affordable {
                    skips += Array(repeating: BroadcastSkip.balance, count: candidates.count - affordable)
                    candidates.removeLast(candidates.count - affordable)
                }
            }
            var reserved: [(delivery: Delivery, costVnd: Int64, day: Int64)] = []
            reserved.reserveCapacity(candidates.count)
            for start in stride(from: 0, to: candidates.count, by: 400) {
                let chunk = candidates[start..<min(start + 400, candidates.count)]
                var sql: SQLQueryString = """
                    INSERT INTO messages (shop_id, message_id, idempotency_key, channel, recipient, template_id, body, customer_id, status, cost_vnd,
                                          created_at_ms, updated_at_ms, day, params, broadcast_id) VALUES
                    """
                for (offset, (message, paramsJSON)) in chunk.enumerated() {
                    let messageId = SortableID.make("msg_", nowMs: nowMs)
                    if offset > 0 { sql += ", " }
                    sql += """
                        (\(bind: shop), \(bind: messageId), \(bind: Self.broadcastKey(broadcastId, message.customerId)), \(bind: Int64(template.channel.rawValue)),
                         \(bind: message.recipient), \(bind: template.templateId), \(bind: message.body), \(bind: message.customerId), \(bind: MessageDelivery.Status.queued.rawValue),
                         \(bind: priceVnd), \(bind: nowMs), \(bind: nowMs), \(bind: day), \(bind: paramsJSON), \(bind: broadcastId))
                        """
                    var delivery = Delivery(
                        messageId: messageId, channel: template.channel, recipient: message.recipient, text: message.body,
                        providerTemplateId: template.providerTemplateId, params: message.params
                    )
                    delivery.subject = template.name
                    delivery.humanAgent = message.humanAgent
                    reserved.append((delivery, priceVnd, day))
                }
                try await db.raw(sql).run()
            }
            if priceVnd > 0, !reserved.isEmpty {
                // One hold for the batch; a message that fails gets its own price back (ref = its id).
                _ = try await Self.post(
                    db, shop: shop, amount: -priceVnd * Int64(reserved.count), kind: .hold, ref: "\(broadcastId):\(nextSeq)", nowMs: nowMs
                )
            }
            var counts: [String: Int64] = [:]
            for reason in skips { counts[reason, default: 0] += 1 }
            for (reason, count) in counts {
                try await db.raw("""
                    INSERT INTO broadcast_skips (shop_id, broadcast_id, reason, count) VALUES (\(bind: shop), \(bind: broadcastId), \(bind: reason), \(bind: count))
                    ON CONFLICT (shop_id, broadcast_id, reason) DO UPDATE SET count = broadcast_skips.count + \(bind: count)
                    """).run()
            }
            try await db.raw("""
                UPDATE broadcasts SET next_seq = \(bind: nextSeq), skipped = skipped + \(bind: Int64(skips.count)),
                       updated_at_ms = \(bind: nowMs)
                WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: broadcastId)
                """).run()
            return .reserved(reserved)
        }
    }

    /// Records a batch's answers: counters, refunds for what failed, ZNS delivered counts.
    public func settleBatch(
        shop: String, broadcastId: String, results: [(delivery: Delivery, costVnd: Int64, day: Int64, outcome: DeliveryOutcome)], provider: String,
        lease: RunnerLease, nowMs: Int64
    ) async throws {
        guard !results.isEmpty else { return }
        try await db.write { db in
            try await Self.holdLease(db, shop: shop, id: broadcastId, lease: lease, nowMs: nowMs)
            var byStatus: [MessageDelivery.Status: [String]] = [:]
            var failed: [(String, Int64, String)] = []
            var cost: Int64 = 0
            var znsDelivered: [Int64: Int64] = [:]
            var templateId = ""
            for result in results {
                switch result.outcome {
                case .delivered:
                    byStatus[.delivered, default: []].append(result.delivery.messageId)
                    cost += result.costVnd
                    if result.delivery.channel == .zns { znsDelivered[result.day, default: 0] += 1 }
                case .sent:
                    byStatus[.sent, default: []].append(result.delivery.messageId)
                    cost += result.costVnd
                case .rejected(_, let message), .failedTemporarily(let message):
                    failed.append((result.delivery.messageId, result.costVnd, message))
                }
            }
            for (status, ids) in byStatus {
                for start in stride(from: 0, to: ids.count, by: 500) {
                    let chunk = Array(ids[start..<min(start + 500, ids.count)])
                    try await db.raw("""
                        UPDATE messages SET status = \(bind: status.rawValue), attempts = attempts + 1, updated_at_ms = \(bind: nowMs), provider = \(bind: provider)
                        WHERE shop_id = \(bind: shop) AND message_id IN (\(binds: chunk))
                        """).run()
                }
            }
            for (messageId, held, message) in failed {
                if held > 0 {
                    _ = try await Self.post(db, shop: shop, amount: held, kind: .release, ref: messageId, nowMs: nowMs)
                }
                try await db.raw("""
                    UPDATE messages SET status = \(bind: MessageDelivery.Status.failed.rawValue), error = \(bind: message), cost_vnd = 0, attempts = attempts + 1, updated_at_ms = \(bind: nowMs),
                           provider = \(bind: provider)
                    WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)
                    """).run()
            }
            if !znsDelivered.isEmpty {
                templateId = try await db.raw("SELECT template_id FROM broadcasts WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: broadcastId)")
                    .first()?.string("template_id") ?? ""
                for (day, count) in znsDelivered {
                    try await Self.countZns(db, shop: shop, templateId: templateId, day: day, delivered: count, negative: 0)
                }
            }
            let sent = Int64(byStatus.values.reduce(0) { $0 + $1.count })
            try await db.raw("""
                UPDATE broadcasts SET sent = sent + \(bind: sent), failed = failed + \(bind: Int64(failed.count)), cost_vnd = cost_vnd + \(bind: cost),
                       updated_at_ms = \(bind: nowMs)
                WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: broadcastId)
                """).run()
        }
    }

    /// What a crash left reserved but not settled for this broadcast.
    public func unsettled(shop: String, broadcastId: String) async throws -> [(delivery: Delivery, costVnd: Int64, day: Int64)] {
        try await db.read { db in
            try await db.raw("""
                SELECT m.message_id, m.channel, m.recipient, m.body, m.params, m.cost_vnd, m.day,
                       COALESCE(t.provider_template_id, '') AS provider_template_id, COALESCE(t.name, '') AS template_name
                FROM messages m LEFT JOIN templates t ON t.shop_id = m.shop_id AND t.template_id = m.template_id
                WHERE m.shop_id = \(bind: shop) AND m.broadcast_id = \(bind: broadcastId) AND m.status = \(bind: MessageDelivery.Status.queued.rawValue)
                ORDER BY m.message_id
                """).all().map { row in
                var delivery = Delivery(
                    messageId: try row.string("message_id"), channel: .init(rawValue: Int32(try row.int64("channel"))),
                    recipient: try row.string("recipient"), text: try row.string("body"),
                    providerTemplateId: try row.string("provider_template_id"),
                    params: try JSONDecoder().decode([String: String].self, from: Data(try row.string("params").utf8))
                )
                delivery.subject = try row.string("template_name")
                return (delivery, try row.int64("cost_vnd"), try row.int64("day"))
            }
        }
    }
}

/// R-MSG-2: why a member of the audience got nothing. Short, fixed strings, so
/// that GetBroadcast counts them per reason.
public enum BroadcastSkip {
    public static let noPhone = "no valid mobile number"
    public static let noEmail = "no valid e-mail address"
    public static let neverMessaged = "never messaged the page (R-MSG-5)"
    public static let outsideWindow = "outside Messenger's 24-hour window (R-MSG-5)"
    public static let znsQuota = "today's ZNS quota used up (R-ZNS-2)"
    public static let purposeNotAllowed = "template purpose not yet allowed for this OA (R-ZNS-3)"
    public static let templateDisabled = "template disabled for poor quality (R-ZNS-2)"
    public static let balance = "balance cannot cover it (R-MSG-3)"
    public static let duplicate = "listed twice in the segment"

    /// The skip reason for recipients lacking template parameters.
    public static func missing(_ names: [String]) -> String {
        "no value for " + names.map { "{{\($0)}}" }.joined(separator: ", ")
    }
}
