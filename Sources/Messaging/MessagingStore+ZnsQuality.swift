import ChatMeshAPI
import Foundation
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// ZNS quality (R-ZNS-1..3): feedback, the daily quota and the purposes allowed.
extension MessagingStore {
    // MARK: ZNS quality (R-ZNS-1..3)

    static func znsSent(_ db: any SQLDatabase, shop: String, day: Int64) async throws -> Int {
        try await db.raw("""
            SELECT COUNT(*) AS n FROM messages WHERE shop_id = \(bind: shop) AND channel = \(bind: Int64(Template.Channel.zns.rawValue))
              AND day = \(bind: day) AND status <> \(bind: MessageDelivery.Status.failed.rawValue)
            """).first()!.int("n")
    }

    static func countZns(_ db: any SQLDatabase, shop: String, templateId: String, day: Int64, delivered: Int64, negative: Int64) async throws {
        try await db.raw("""
            INSERT INTO zns_days (shop_id, day, delivered, negative) VALUES (\(bind: shop), \(bind: day), \(bind: delivered), \(bind: negative))
            ON CONFLICT (shop_id, day) DO UPDATE SET delivered = zns_days.delivered + \(bind: delivered), negative = zns_days.negative + \(bind: negative)
            """).run()
        try await db.raw("""
            INSERT INTO zns_template_days (shop_id, template_id, day, delivered, negative)
            VALUES (\(bind: shop), \(bind: templateId), \(bind: day), \(bind: delivered), \(bind: negative))
            ON CONFLICT (shop_id, template_id, day) DO UPDATE SET delivered = zns_template_days.delivered + \(bind: delivered),
                negative = zns_template_days.negative + \(bind: negative)
            """).run()
    }

    /// The OA's standing as of `today`: every day before it that has not been
    /// judged yet is closed in order (a Poor day disables the templates over the
    /// limit), and the result is saved. A shop's first day starts fresh.
    static func znsState(_ db: any SQLDatabase, shop: String, today: Int64, policy: ZnsQualityPolicy) async throws -> ZnsQualityState {
        var state = ZnsQualityState(policy: policy)
        var closedThrough = today - 1
        var saved = false
        if let row = try await db.raw("SELECT state, closed_through_day FROM zns_state WHERE shop_id = \(bind: shop)").first() {
            state = try JSONDecoder().decode(ZnsQualityState.self, from: Data(try row.string("state").utf8))
            closedThrough = try row.int64("closed_through_day")
            saved = true
        }
        if saved && closedThrough >= today - 1 { return state }
        if closedThrough < today - 1 {
            // An OA idle for years needs no more than a window and a spell of empty days to be judged.
            let first = max(closedThrough + 1, today - 400)
            let days = try await znsDays(db, shop: shop, from: first - Int64(policy.rateWindowDays), through: today - 1)
            for day in first..<today {
                state.refreshWindow(days.range(day - Int64(policy.rateWindowDays) + 1, day - 1), policy: policy)
                state.close(days[day], policy: policy)
                if state.level(policy) == .poor {
                    try await disablePoorTemplates(db, shop: shop, throughDay: day, policy: policy)
                }
            }
        }
        let json = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
        try await db.raw("""
            INSERT INTO zns_state (shop_id, state, closed_through_day) VALUES (\(bind: shop), \(bind: json), \(bind: today - 1))
            ON CONFLICT (shop_id) DO UPDATE SET state = \(bind: json), closed_through_day = \(bind: today - 1)
            """).run()
        return state
    }

    /// The OA's delivered and negative counts per day in [from, through], as they stand now.
    static func znsDays(_ db: any SQLDatabase, shop: String, from: Int64, through: Int64) async throws -> ZnsDays {
        var days = ZnsDays()
        for row in try await db.raw("""
            SELECT day, delivered, negative FROM zns_days WHERE shop_id = \(bind: shop) AND day >= \(bind: from) AND day <= \(bind: through)
            """).all() {
            days.byDay[try row.int64("day")] = .init(delivered: try row.int("delivered"), negative: try row.int("negative"))
        }
        return days
    }

    /// Days with their counts; a day without a row had nothing delivered.
    struct ZnsDays {
        var byDay: [Int64: ZnsQualityState.Day] = [:]
        subscript(day: Int64) -> ZnsQualityState.Day { byDay[day] ?? .init(delivered: 0, negative: 0) }
        func range(_ from: Int64, _ through: Int64) -> [ZnsQualityState.Day] {
            from <= through ? (from...through).map { self[$0] } : []
        }
    }

    static func disablePoorTemplates(_ db: any SQLDatabase, shop: String, throughDay day: Int64, policy: ZnsQualityPolicy) async throws {
        let rows = try await db.raw("""
            SELECT template_id, SUM(delivered) AS d, SUM(negative) AS n FROM zns_template_days
            WHERE shop_id = \(bind: shop) AND day > \(bind: day - Int64(policy.rateWindowDays)) AND day <= \(bind: day)
            GROUP BY template_id
            """).all()
        var stats: [String: ZnsQualityState.Day] = [:]
        for row in rows {
            stats[try row.string("template_id")] = .init(
                delivered: try row.int("d"), negative: try row.int("n")
            )
        }
        let poor = ZnsQualityState.poorTemplates(stats, policy: policy)
        if !poor.isEmpty {
            try await db.raw("UPDATE templates SET enabled = 0 WHERE shop_id = \(bind: shop) AND template_id IN (\(binds: poor))").run()
        }
    }

    /// R-ZNS-1: a recipient's feedback on a delivered ZNS message, counted once per message
    /// against the day it was sent.
    public func recordFeedback(shop: String, messageId: String, negative: Bool, nowMs: Int64) async throws {
        try await db.write { db in
            guard let row = try await db.raw("""
                SELECT channel, status, template_id, day FROM messages WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)
                """).first() else {
                throw MessagingError.noMessage(messageId)
            }
            guard try row.int64("channel") == Int64(Template.Channel.zns.rawValue) else {
                throw MessagingError.feedbackForZnsOnly
            }
            guard try row.string("status") == MessageDelivery.Status.delivered.rawValue else {
                throw MessagingError.messageNotDelivered(messageId)
            }
            if try await db.raw("SELECT message_id FROM feedback WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)").first() != nil {
                return
            }
            try await db.raw("""
                INSERT INTO feedback (shop_id, message_id, negative, at_ms) VALUES (\(bind: shop), \(bind: messageId), \(bind: negative ? 1 : 0 as Int64), \(bind: nowMs))
                """).run()
            if negative {
                try await Self.countZns(
                    db, shop: shop, templateId: try row.string("template_id"), day: try row.int64("day"),
                    delivered: 0, negative: 1
                )
            }
        }
    }

    /// The OA's ZNS quality (R-ZNS-1..3): level, quota and allowed purposes today. The level
    /// and rate are over the rolling window as it stands now, today included (R-ZNS-1); the
    /// quota and purposes move only as whole days are closed (R-ZNS-2).
    public func znsQuality(shop: String, policy: ZnsQualityPolicy, nowMs: Int64) async throws -> ZnsQuality {
        let today = VietnamTime.dayNumber(atMs: nowMs)
        return try await db.write { db in
            let state = try await Self.znsState(db, shop: shop, today: today, policy: policy)
            let window = try await Self.znsDays(db, shop: shop, from: today - Int64(policy.rateWindowDays) + 1, through: today)
            let rate = ZnsQualityState.negativeRate(of: window.range(today - Int64(policy.rateWindowDays) + 1, today))
            return ZnsQuality(
                level: policy.level(negativeRate: rate), negativeRate: rate, dailyQuota: Int32(state.quota),
                sentToday: Int32(try await Self.znsSent(db, shop: shop, day: today)), allowedPurposes: state.allowedPurposes
            )
        }
    }
}
