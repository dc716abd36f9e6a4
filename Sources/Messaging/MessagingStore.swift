import ChatMeshAPI
import MeshRPC
import MeshStore
import SQLKit

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
                throw RPCError.notFound("template_id: no template \(id)")
            }
            return try Self.template(row)
        }
    }

    static func template(_ row: any SQLRow) throws -> Template {
        let placeholders = try row.decode(column: "placeholders", as: String.self)
        return Template(
            templateId: try row.decode(column: "template_id", as: String.self),
            channel: .init(rawValue: Int32(try row.decode(column: "channel", as: Int64.self))),
            name: try row.decode(column: "name", as: String.self), body: try row.decode(column: "body", as: String.self),
            purpose: .init(rawValue: Int32(try row.decode(column: "purpose", as: Int64.self))),
            enabled: try row.decode(column: "enabled", as: Int64.self) != 0,
            providerTemplateId: try row.decode(column: "provider_template_id", as: String.self),
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
            balanceVnd: try row.decode(column: "balance_vnd", as: Int64.self),
            autoTopUp: AutoTopUp(
                enabled: try row.decode(column: "auto_enabled", as: Int64.self) != 0,
                thresholdVnd: try row.decode(column: "auto_threshold_vnd", as: Int64.self),
                amountVnd: try row.decode(column: "auto_amount_vnd", as: Int64.self)
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
                """).first(), try row.decode(column: "amount_vnd", as: Int64.self) != amountVnd {
                throw RPCError.failedPrecondition("payment_ref: \(paymentRef) already topped up a different amount")
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

    /// The sum of the shop's ledger: what the balance must always equal.
    public func ledgerSum(shop: String) async throws -> Int64 {
        try await db.read { db in
            try await db.raw("SELECT COALESCE(SUM(amount_vnd), 0) AS s FROM balance_ledger WHERE shop_id = \(bind: shop)").first()!
                .decode(column: "s", as: Int64.self)
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
    public func reserve(
        shop: String, idempotencyKey: String, channel: Template.Channel, recipient: String, templateId: String, body: String,
        customerId: String, priceVnd: Int64, nowMs: Int64
    ) async throws -> Reservation {
        try await db.write { db in
            if let row = try await db.raw("""
                SELECT message_id, status, cost_vnd FROM messages WHERE shop_id = \(bind: shop) AND idempotency_key = \(bind: idempotencyKey)
                """).first() {
                return .existing(try Self.response(row))
            }
            let balance = try await Self.balance(db, shop: shop).balanceVnd
            if priceVnd > balance {
                throw RPCError.resourceExhausted(
                    "balance: \(balance) VND cannot cover this \(channel.protoName) message at \(priceVnd) VND; top up first (R-MSG-3)"
                )
            }
            let messageId = SortableID.make("msg_", nowMs: nowMs)
            if priceVnd > 0 {
                _ = try await Self.post(db, shop: shop, amount: -priceVnd, kind: .hold, ref: messageId, nowMs: nowMs)
            }
            try await db.raw("""
                INSERT INTO messages (shop_id, message_id, idempotency_key, channel, recipient, template_id, body, customer_id, status, cost_vnd,
                                      created_at_ms, updated_at_ms)
                VALUES (\(bind: shop), \(bind: messageId), \(bind: idempotencyKey), \(bind: Int64(channel.rawValue)), \(bind: recipient),
                        \(bind: templateId), \(bind: body), \(bind: customerId), \(bind: "QUEUED"), \(bind: priceVnd), \(bind: nowMs), \(bind: nowMs))
                """).run()
            return .reserved(messageId: messageId)
        }
    }

    /// Records the provider's answer. A message that did not go gives its hold back;
    /// a temporary failure stays QUEUED for the next attempt.
    public func settle(shop: String, messageId: String, outcome: DeliveryOutcome, provider: String, nowMs: Int64) async throws -> SendMessageResponse {
        try await db.write { db in
            let (status, error): (String, String)
            switch outcome {
            case .sent: (status, error) = ("SENT", "")
            case .delivered: (status, error) = ("DELIVERED", "")
            case .rejected(_, let message): (status, error) = ("FAILED", message)
            case .failedTemporarily(let message): (status, error) = ("QUEUED", message)
            }
            var costUpdate: SQLQueryString = ""
            if status == "FAILED" {
                let row = try await db.raw("SELECT cost_vnd FROM messages WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)").first()
                let held = try row?.decode(column: "cost_vnd", as: Int64.self) ?? 0
                if held > 0 {
                    _ = try await Self.post(db, shop: shop, amount: held, kind: .release, ref: messageId, nowMs: nowMs)
                }
                costUpdate = ", cost_vnd = 0"
            }
            try await db.raw("""
                UPDATE messages SET status = \(bind: status), error = \(bind: error), attempts = attempts + 1, updated_at_ms = \(bind: nowMs),
                       provider = \(bind: provider)
                """ + costUpdate + " WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)").run()
            guard let row = try await db.raw("SELECT message_id, status, cost_vnd FROM messages WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)").first() else {
                throw RPCError.notFound("message_id: no message \(messageId)")
            }
            return try Self.response(row)
        }
    }

    /// Messages still QUEUED (a crash between reserve and settle, or a temporary
    /// failure) last touched before `beforeMs`: the delivery worker sends them again.
    public func queued(beforeMs: Int64, limit: Int) async throws -> [(shop: String, messageId: String)] {
        try await db.read { db in
            try await db.raw("""
                SELECT shop_id, message_id FROM messages WHERE status = 'QUEUED' AND updated_at_ms < \(bind: beforeMs)
                ORDER BY updated_at_ms LIMIT \(literal: limit)
                """).all().map { (try $0.decode(column: "shop_id", as: String.self), try $0.decode(column: "message_id", as: String.self)) }
        }
    }

    static func response(_ row: any SQLRow) throws -> SendMessageResponse {
        SendMessageResponse(
            messageId: try row.decode(column: "message_id", as: String.self), status: try row.decode(column: "status", as: String.self),
            costVnd: try row.decode(column: "cost_vnd", as: Int64.self)
        )
    }
}
