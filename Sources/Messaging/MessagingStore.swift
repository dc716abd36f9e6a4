import ChatMeshAPI
import Foundation
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// messaging-svc's storage. A send is two transactions around the provider
/// call: `reserve` records the message as QUEUED and holds its price on the
/// balance; `settle` records what the provider said and gives the hold back
/// when the message did not go. The provider is never called while the
/// writer is held, and a message left QUEUED by a crash is found again by
/// `queued(before:)` and delivered then.
public struct MessagingStore: Sendable {
    let db: any SQLStore

    public init(_ db: any SQLStore) {
        self.db = db
    }

    public static func open(_ db: any SQLStore) async throws -> MessagingStore {
        try await db.migrate(MessagingSchema.migrations)
        return MessagingStore(db)
    }

    enum LedgerKind: Int64 { case topUp = 1, hold = 2, release = 3 }

    // MARK: Templates

    public func createTemplate(shop: String, _ template: Template, nowMs: Int64) async throws -> Template {
        try await db.write { db in
            var created = template
            created.templateId = SortableID.make("tpl_", nowMs: nowMs)
            created.enabled = true
            try await db.raw("""
                INSERT INTO templates (shop_id, template_id, channel, name, body, purpose, enabled, provider_template_id, placeholders, created_at_ms)
                VALUES (\(bind: shop), \(bind: created.templateId), \(bind: Int64(created.channel.rawValue)), \(bind: created.name), \(bind: created.body),
                        \(bind: Int64(created.purpose.rawValue)), \(bind: 1 as Int64), \(bind: created.providerTemplateId),
                        \(bind: created.placeholders.joined(separator: "\n")), \(bind: nowMs))
                """).run()
            return created
        }
    }

    public func templates(shop: String, channel: Template.Channel?) async throws -> [Template] {
        try await db.read { db in
            var sql: SQLQueryString = "SELECT * FROM templates WHERE shop_id = \(bind: shop)"
            if let channel { sql += " AND channel = \(bind: Int64(channel.rawValue))" }
            sql += " ORDER BY template_id"
            return try await db.raw(sql).all().map(Self.template)
        }
    }

    public func template(shop: String, id: String) async throws -> Template {
        try await db.read { db in
            guard let row = try await db.raw("SELECT * FROM templates WHERE shop_id = \(bind: shop) AND template_id = \(bind: id)").first() else {
                throw MessagingError.noTemplate(id)
            }
            return try Self.template(row)
        }
    }

    static func template(_ row: any SQLRow) throws -> Template {
        let placeholders = try row.string("placeholders")
        return Template(
            templateId: try row.string("template_id"),
            channel: .init(rawValue: Int32(try row.int64("channel"))),
            name: try row.string("name"), body: try row.string("body"),
            purpose: .init(rawValue: Int32(try row.int64("purpose"))),
            enabled: try row.int64("enabled") != 0,
            providerTemplateId: try row.string("provider_template_id"),
            placeholders: placeholders.isEmpty ? [] : placeholders.split(separator: "\n").map(String.init)
        )
    }

    // MARK: Balance (R-MSG-3)

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

    // MARK: Sends

    public enum Reservation: Sendable {
        /// The idempotency key was used before: this is what that send answered.
        case existing(SendMessageResponse)
        case reserved(messageId: String)
    }

    /// Records a send as QUEUED and holds its price, or answers what the same key got before.
    /// RESOURCE_EXHAUSTED when the balance cannot cover the price; nothing is written then.
    /// For ZNS (`zns` given) the template's purpose must be one the OA may use and
    /// today's quota must have room (R-ZNS-2..3), judged on the standing as of today.
    public func reserve(
        shop: String, idempotencyKey: String, channel: Template.Channel, recipient: String, template: Template, body: String,
        params: [String: String], customerId: String, priceVnd: Int64, zns: ZnsQualityPolicy?, nowMs: Int64
    ) async throws -> Reservation {
        let paramsJSON = String(decoding: try JSONEncoder().encode(params), as: UTF8.self)
        let day = VietnamTime.dayNumber(atMs: nowMs)
        let templateId = template.templateId
        return try await db.write { db in
            if let row = try await db.raw("""
                SELECT message_id, status, cost_vnd FROM messages WHERE shop_id = \(bind: shop) AND idempotency_key = \(bind: idempotencyKey)
                """).first() {
                return .existing(try Self.response(row))
            }
            if let zns {
                let state = try await Self.znsState(db, shop: shop, today: day, policy: zns)
                guard state.allowedPurposes.contains(template.purpose) else {
                    throw MessagingError.purposeNotAllowed(template.purpose, allowed: state.allowedPurposes)
                }
                let sent = try await Self.znsSent(db, shop: shop, day: day)
                guard sent < state.quota else {
                    throw MessagingError.znsQuotaUsed(quota: state.quota)
                }
            }
            let balance = try await Self.balance(db, shop: shop).balanceVnd
            if priceVnd > balance {
                throw MessagingError.balanceTooLow(balanceVnd: balance, priceVnd: priceVnd, channel: channel)
            }
            let messageId = SortableID.make("msg_", nowMs: nowMs)
            if priceVnd > 0 {
                _ = try await Self.post(db, shop: shop, amount: -priceVnd, kind: .hold, ref: messageId, nowMs: nowMs)
            }
            try await db.raw("""
                INSERT INTO messages (shop_id, message_id, idempotency_key, channel, recipient, template_id, body, customer_id, status, cost_vnd,
                                      created_at_ms, updated_at_ms, day, params)
                VALUES (\(bind: shop), \(bind: messageId), \(bind: idempotencyKey), \(bind: Int64(channel.rawValue)), \(bind: recipient),
                        \(bind: templateId), \(bind: body), \(bind: customerId), \(bind: MessageDelivery.Status.queued.rawValue), \(bind: priceVnd), \(bind: nowMs), \(bind: nowMs),
                        \(bind: day), \(bind: paramsJSON))
                """).run()
            return .reserved(messageId: messageId)
        }
    }

    /// Records the provider's answer. A message that did not go gives its hold back;
    /// a temporary failure stays QUEUED for the next attempt.
    /// `provider` is nil for a delivery report (R-ZNS-2), which is not another attempt.
    public func settle(
        shop: String, messageId: String, outcome: DeliveryOutcome, provider: String?, nowMs: Int64, reported: Bool = false
    ) async throws -> SendMessageResponse {
        try await db.write { db in
            let settlement = MessageDelivery.settle(outcome)
            var costUpdate: SQLQueryString = ""
            if settlement.releasesHold {
                let row = try await db.raw("""
                    SELECT cost_vnd, broadcast_id FROM messages WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)
                    """).first()
                let held = try row?.int64("cost_vnd") ?? 0
                if held > 0 {
                    _ = try await Self.post(db, shop: shop, amount: held, kind: .release, ref: messageId, nowMs: nowMs)
                }
                costUpdate = ", cost_vnd = 0"
                // A broadcast message reported undelivered after its batch counted it sent.
                if reported, let broadcast = try row?.string("broadcast_id"), !broadcast.isEmpty {
                    try await db.raw("""
                        UPDATE broadcasts SET sent = sent - 1, failed = failed + 1, cost_vnd = cost_vnd - \(bind: held)
                        WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: broadcast)
                        """).run()
                }
            }
            var update: SQLQueryString = """
                UPDATE messages SET status = \(bind: settlement.status.rawValue), error = \(bind: settlement.error), updated_at_ms = \(bind: nowMs)
                """
            if let provider {
                update += ", attempts = attempts + 1, provider = \(bind: provider)"
            }
            try await db.raw(update + costUpdate + " WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)").run()
            guard let row = try await db.raw("""
                SELECT message_id, status, cost_vnd, channel, template_id, day FROM messages WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)
                """).first() else {
                throw MessagingError.noMessage(messageId)
            }
            if settlement.status == .delivered, try row.int64("channel") == Int64(Template.Channel.zns.rawValue) {
                try await Self.countZns(
                    db, shop: shop, templateId: try row.string("template_id"), day: try row.int64("day"),
                    delivered: 1, negative: 0
                )
            }
            return try Self.response(row)
        }
    }

    /// R-ZNS-2: a provider's report on a SENT message. Delivered keeps the price;
    /// not delivered gives it back (and moves a broadcast's counters with it).
    public func report(shop: String, messageId: String, delivered: Bool, reason: String, nowMs: Int64) async throws -> SendMessageResponse {
        let stored = try await db.read { db in
            try await db.raw("SELECT status FROM messages WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)").first()?.string("status")
        }
        guard let stored else { throw MessagingError.noMessage(messageId) }
        guard let current = MessageDelivery.Status(rawValue: stored) else {
            throw MessagingError.unknownStatus(what: "message \(messageId)", stored: stored)
        }
        switch MessageDelivery.report(current: current, delivered: delivered, reason: reason) {
        case .settle(let outcome):
            return try await settle(shop: shop, messageId: messageId, outcome: outcome, provider: nil, nowMs: nowMs, reported: true)
        case .unchanged:
            return try await db.read { db in
                try Self.response(try await db.raw("SELECT message_id, status, cost_vnd FROM messages WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)").first()!)
            }
        case .notSentYet:
            throw MessagingError.messageNotSentYet(messageId)
        case .alreadySettled(let status):
            throw MessagingError.messageSettled(messageId, status)
        }
    }

    /// Messages still QUEUED (a crash between reserve and settle, or a temporary
    /// failure) last touched before `beforeMs`, as deliveries to make again.
    /// A broadcast's messages are left to its runner, which resumes them itself.
    public func queued(beforeMs: Int64, limit: Int) async throws -> [(shop: String, delivery: Delivery)] {
        try await db.read { db in
            try await db.raw("""
                SELECT m.shop_id, m.message_id, m.channel, m.recipient, m.body, m.params, COALESCE(t.provider_template_id, '') AS provider_template_id,
                       COALESCE(t.name, '') AS template_name
                FROM messages m LEFT JOIN templates t ON t.shop_id = m.shop_id AND t.template_id = m.template_id
                WHERE m.status = \(bind: MessageDelivery.Status.queued.rawValue) AND m.updated_at_ms < \(bind: beforeMs) AND m.broadcast_id = ''
                ORDER BY m.updated_at_ms LIMIT \(literal: limit)
                """).all().map { row in
                let params = try JSONDecoder().decode([String: String].self, from: Data(try row.string("params").utf8))
                var delivery = Delivery(
                    messageId: try row.string("message_id"),
                    channel: .init(rawValue: Int32(try row.int64("channel"))),
                    recipient: try row.string("recipient"), text: try row.string("body"),
                    providerTemplateId: try row.string("provider_template_id"), params: params
                )
                delivery.subject = try row.string("template_name")
                return (try row.string("shop_id"), delivery)
            }
        }
    }

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
            let rows = try await db.raw("""
                SELECT day, delivered, negative FROM zns_days WHERE shop_id = \(bind: shop) AND day > \(bind: closedThrough) AND day < \(bind: today)
                """).all()
            var days: [Int64: ZnsQualityState.Day] = [:]
            for row in rows {
                days[try row.int64("day")] = .init(
                    delivered: try row.int("delivered"), negative: try row.int("negative")
                )
            }
            // An OA idle for years needs no more than a window and a spell of empty days to be judged.
            let first = max(closedThrough + 1, today - 400)
            for day in first..<today {
                state.close(days[day] ?? .init(delivered: 0, negative: 0), policy: policy)
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

    public func znsQuality(shop: String, policy: ZnsQualityPolicy, nowMs: Int64) async throws -> ZnsQuality {
        let today = VietnamTime.dayNumber(atMs: nowMs)
        return try await db.write { db in
            let state = try await Self.znsState(db, shop: shop, today: today, policy: policy)
            return ZnsQuality(
                level: state.level(policy), negativeRate: state.negativeRate(), dailyQuota: Int32(state.quota),
                sentToday: Int32(try await Self.znsSent(db, shop: shop, day: today)), allowedPurposes: state.allowedPurposes
            )
        }
    }

    static func response(_ row: any SQLRow) throws -> SendMessageResponse {
        SendMessageResponse(
            messageId: try row.string("message_id"), status: try row.string("status"),
            costVnd: try row.int64("cost_vnd")
        )
    }
}
