import ChatMeshAPI
import MeshStore
import SQLKit

/// R-CONV-9: what messaging-svc recorded for each reply delivery key, so a redelivered
/// DeliverReply answers what happened instead of calling the platform again.
extension MessagingStore {
    enum ReplyState: Int64 { case attempting = 1, sent = 2, failed = 3, retrying = 4 }

    /// Reads what was recorded for `key`, asks `decide`, and records its step in the same
    /// transaction: `attempting` before a platform call, or a new answer given without one.
    public func beginReply(
        shop: String, key: String, nowMs: Int64, decide: @escaping @Sendable (ReplyDelivery.Recorded) -> ReplyDelivery.Step
    ) async throws -> ReplyDelivery.Step {
        try await db.write { db in
            let row = try await db.raw("""
                SELECT state, platform_message_id, reason FROM reply_deliveries WHERE shop_id = \(bind: shop) AND delivery_key = \(bind: key)
                """).first()
            var recorded = ReplyDelivery.Recorded.nothing
            if let row {
                switch ReplyState(rawValue: try row.int64("state")) {
                case .attempting, nil: recorded = .attempting
                case .retrying: recorded = .retrying
                case .sent: recorded = .sent(platformMessageId: try row.string("platform_message_id"))
                case .failed: recorded = .failed(reason: try row.string("reason"))
                }
            }
            let step = decide(recorded)
            switch (step, recorded) {
            case (.call, _):
                try await Self.recordReply(db, shop: shop, key: key, state: .attempting, platformMessageId: "", reason: "", nowMs: nowMs)
            case (.answer, .sent), (.answer, .failed):
                break  // answered from the record
            case (.answer(let outcome), _):
                try await Self.recordReply(db, shop: shop, key: key, outcome, nowMs: nowMs)
            }
            return step
        }
    }

    /// What the platform call came to.
    public func finishReply(shop: String, key: String, _ outcome: ReplyDelivery.Outcome, nowMs: Int64) async throws {
        try await db.write { db in try await Self.recordReply(db, shop: shop, key: key, outcome, nowMs: nowMs) }
    }

    static func recordReply(_ db: any SQLDatabase, shop: String, key: String, _ outcome: ReplyDelivery.Outcome, nowMs: Int64) async throws {
        switch outcome {
        case .sent(let id): try await recordReply(db, shop: shop, key: key, state: .sent, platformMessageId: id, reason: "", nowMs: nowMs)
        case .failed(let reason): try await recordReply(db, shop: shop, key: key, state: .failed, platformMessageId: "", reason: reason, nowMs: nowMs)
        case .retry(let reason, _): try await recordReply(db, shop: shop, key: key, state: .retrying, platformMessageId: "", reason: reason, nowMs: nowMs)
        }
    }

    static func recordReply(
        _ db: any SQLDatabase, shop: String, key: String, state: ReplyState, platformMessageId: String, reason: String, nowMs: Int64
    ) async throws {
        try await db.raw("""
            INSERT INTO reply_deliveries (shop_id, delivery_key, state, platform_message_id, reason, updated_at_ms)
            VALUES (\(bind: shop), \(bind: key), \(bind: state.rawValue), \(bind: platformMessageId), \(bind: String(reason.prefix(1000))), \(bind: nowMs))
            ON CONFLICT (shop_id, delivery_key) DO UPDATE SET state = excluded.state, platform_message_id = excluded.platform_message_id,
                reason = excluded.reason, updated_at_ms = excluded.updated_at_ms
            """).run()
    }
}
