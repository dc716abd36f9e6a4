import ChatMeshAPI
import Foundation
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// Sends: reserve, settle through `MessageDelivery`, delivery reports and redelivery (R-MSG-1, R-ZNS-2).
extension MessagingStore {
    // MARK: Sends

    /// What reserving a send did: a new message with its price held, or the message the idempotency key made before.
    public enum Reservation: Sendable {
        /// The idempotency key was used before: this is what that send answered.
        case existing(MessageDelivery.Sent)
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
                return .existing(try Self.sent(row))
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
        shop: String, messageId: String, outcome: DeliveryOutcome, provider: String?, nowMs: Int64
    ) async throws -> MessageDelivery.Sent {
        try await db.write { db in
            guard let sent = try await Self.settle(db, shop: shop, messageId: messageId, outcome: outcome, provider: provider, nowMs: nowMs) else {
                throw MessagingError.noMessage(messageId)
            }
            return sent
        }
    }

    /// Moves the message to what `outcome` makes of it, only if it is still in `from` (any
    /// status when nil); nil when it was not (another writer moved it first), with nothing
    /// written. The status moves first, so the money and the counters follow only the
    /// transition that happened.
    static func settle(
        _ db: any SQLDatabase, shop: String, messageId: String, outcome: DeliveryOutcome, provider: String?, nowMs: Int64, reported: Bool = false,
        from: MessageDelivery.Status? = nil
    ) async throws -> MessageDelivery.Sent? {
        let settlement = MessageDelivery.settle(outcome)
        guard let before = try await db.raw("""
            SELECT cost_vnd, broadcast_id FROM messages WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)
            """).first() else {
            return nil
        }
        var update: SQLQueryString = """
            UPDATE messages SET status = \(bind: settlement.status.rawValue), error = \(bind: settlement.error), updated_at_ms = \(bind: nowMs)
            """
        if let provider {
            update += ", attempts = attempts + 1, provider = \(bind: provider)"
        }
        if settlement.releasesHold { update += ", cost_vnd = 0" }
        update += " WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)"
        if let from { update += " AND status = \(bind: from.rawValue)" }
        guard try await !db.raw(update + " RETURNING message_id").all().isEmpty else { return nil }
        if settlement.releasesHold {
            let held = try before.int64("cost_vnd")
            if held > 0 {
                _ = try await Self.post(db, shop: shop, amount: held, kind: .release, ref: messageId, nowMs: nowMs)
            }
            // A broadcast message reported undelivered after its batch counted it sent.
            let broadcast = try before.string("broadcast_id")
            if reported, !broadcast.isEmpty {
                try await db.raw("""
                    UPDATE broadcasts SET sent = sent - 1, failed = failed + 1, cost_vnd = cost_vnd - \(bind: held)
                    WHERE shop_id = \(bind: shop) AND broadcast_id = \(bind: broadcast)
                    """).run()
            }
        }
        let row = try await db.raw("""
            SELECT message_id, status, cost_vnd, channel, template_id, day FROM messages WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)
            """).first()!
        if settlement.status == .delivered, try row.int64("channel") == Int64(Template.Channel.zns.rawValue) {
            try await Self.countZns(
                db, shop: shop, templateId: try row.string("template_id"), day: try row.int64("day"),
                delivered: 1, negative: 0
            )
        }
        return try Self.sent(row)
    }

    /// R-ZNS-2: a provider's report on a SENT message. Delivered keeps the price;
    /// not delivered gives it back (and moves a broadcast's counters with it). The status
    /// is read and moved in one transaction by a guarded update, so two reports racing
    /// for one message settle it once: the loser sees what the winner wrote.
    public func report(shop: String, messageId: String, delivered: Bool, reason: String, nowMs: Int64) async throws -> MessageDelivery.Sent {
        try await db.write { db in
            // Twice at most: a report that lost the race decides again on what won.
            for _ in 0..<2 {
                guard let row = try await db.raw("""
                    SELECT message_id, status, cost_vnd FROM messages WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)
                    """).first() else {
                    throw MessagingError.noMessage(messageId)
                }
                let current = try Self.sent(row)
                switch MessageDelivery.report(current: current.status, delivered: delivered, reason: reason) {
                case .settle(let outcome):
                    if let sent = try await Self.settle(
                        db, shop: shop, messageId: messageId, outcome: outcome, provider: nil, nowMs: nowMs, reported: true, from: current.status
                    ) {
                        return sent
                    }
                case .unchanged:
                    return current
                case .notSentYet:
                    throw MessagingError.messageNotSentYet(messageId)
                case .alreadySettled(let status):
                    throw MessagingError.messageSettled(messageId, status)
                }
            }
            throw MessagingError.noMessage(messageId)
        }
    }

    /// Takes a message `queued` found for delivering again, unless another replica took it
    /// since: touching it puts it out of every replica's reach for the redelivery age.
    public func claimQueued(shop: String, messageId: String, beforeMs: Int64, nowMs: Int64) async throws -> Bool {
        try await db.write { db in
            try await !db.raw("""
                UPDATE messages SET updated_at_ms = \(bind: nowMs)
                WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)
                  AND status = \(bind: MessageDelivery.Status.queued.rawValue) AND updated_at_ms < \(bind: beforeMs)
                RETURNING message_id
                """).all().isEmpty
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

    /// A message row as its sender sees it.
    static func sent(_ row: any SQLRow) throws -> MessageDelivery.Sent {
        let stored = try row.string("status")
        guard let status = MessageDelivery.Status(rawValue: stored) else {
            throw MessagingError.unknownStatus(what: "message \(try row.string("message_id"))", stored: stored)
        }
        return MessageDelivery.Sent(messageId: try row.string("message_id"), status: status, costVnd: try row.int64("cost_vnd"))
    }

}
