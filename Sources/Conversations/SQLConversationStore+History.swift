import ChatMeshAPI
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// Activity history and its retention (R-ACT-1..2), and the staff report's events (R-REP-1).
extension SQLConversationStore {
    // MARK: History

    static func recordActivity(
        _ db: any SQLDatabase, shop: String, pageId: String, action: ActivityEntry.Action, staffId: String, conversationId: String,
        customerId: String, tagId: String, tagName: String, nowMs: Int64
    ) async throws {
        try await db.raw("""
            INSERT INTO activity (shop_id, entry_id, page_id, action, staff_id, conversation_id, customer_id, tag_id, tag_name, at_ms)
            VALUES (\(bind: shop), \(bind: SortableID.make("act_", nowMs: nowMs)), \(bind: pageId), \(bind: Int64(action.rawValue)), \(bind: staffId),
                    \(bind: conversationId), \(bind: customerId), \(bind: tagId), \(bind: tagName), \(bind: nowMs))
            """).run()
    }

    public func listActivity(shop: String, filter: ActivityFilter) async throws -> ResultPage<ActivityEntry> {
        try await db.read { db in
            let page = try await Self.activity(db, shop: shop, filter: filter)
            // As for notes: entries prove their page exists, only an empty answer needs the check.
            if page.items.isEmpty { _ = try await Self.requirePage(db, shop: shop, pageId: filter.pageId) }
            return page
        }
    }

    static func activity(_ db: any SQLDatabase, shop: String, filter: ActivityFilter) async throws -> ResultPage<ActivityEntry> {
        var sql: SQLQueryString = "SELECT * FROM activity WHERE shop_id = \(bind: shop) AND page_id = \(bind: filter.pageId)"
        if !filter.conversationId.isEmpty { sql += " AND conversation_id = \(bind: filter.conversationId)" }
        if !filter.actions.isEmpty {
            sql += " AND action IN (\(binds: Array(Set(filter.actions.map { Int64($0.rawValue) })).sorted()))"
        }
        if filter.fromMs > 0 { sql += " AND at_ms >= \(bind: filter.fromMs)" }
        if filter.toMs > 0 { sql += " AND at_ms < \(bind: filter.toMs)" }
        if let after = filter.after { sql += " AND entry_id < \(bind: after)" }
        sql += " ORDER BY entry_id DESC LIMIT \(literal: filter.pageSize + 1)"
        let rows = try await db.raw(sql).all()
        let entries = try rows.prefix(filter.pageSize).map { row in
            ActivityEntry(
                entryId: try row.string("entry_id"), action: .init(rawValue: Int32(try row.int64("action"))), staffId: try row.string("staff_id"),
                conversationId: try row.string("conversation_id"), customerId: try row.string("customer_id"), tagId: try row.string("tag_id"),
                tagName: try row.string("tag_name"), atMs: try row.int64("at_ms")
            )
        }
        return ResultPage(items: entries, nextPageToken: rows.count > filter.pageSize ? entries.last?.entryId ?? "" : "")
    }

    public func purgeExpiredActivity(nowMs: Int64) async throws -> Int {
        let cutoff = nowMs - ActivityRetention.tagHistoryMs
        return try await write { db in
            let tagActions = [ActivityEntry.Action.tagAttached, .tagDetached].map { Int64($0.rawValue) }
            let row = try await db.raw("""
                SELECT COUNT(*) AS n FROM activity WHERE action IN (\(binds: tagActions)) AND at_ms < \(bind: cutoff)
                """).first()
            let count = try row?.int64("n") ?? 0
            if count > 0 {
                try await db.raw("DELETE FROM activity WHERE action IN (\(binds: tagActions)) AND at_ms < \(bind: cutoff)").run()
            }
            return Int(count)
        }
    }

    /// R-CONV-9 / R-REP-1: messages that happened: everything ingested, and the replies the platform took
    /// (a pending or failed reply reached nobody).
    static let countedDeliveries = [Int64(ChatMessage.Delivery.deliveryUnspecified.rawValue), Int64(ChatMessage.Delivery.sent.rawValue)]

    public func staffHistory(shop: String, pageId: String, fromMs: Int64, toMs: Int64) async throws -> [StaffConversationStatsCalculator.Event] {
        try await db.read { db in
            _ = try await Self.requirePage(db, shop: shop, pageId: pageId)
            var events: [StaffConversationStatsCalculator.Event] = []
            // A reply in range may answer a wait that began before it: its conversation's earlier messages are read too.
            let messageRows = try await db.raw("""
                SELECT conversation_id, kind, sender, staff_id, sent_at_ms FROM messages
                WHERE shop_id = \(bind: shop) AND sent_at_ms < \(bind: toMs) AND delivery IN (\(binds: Self.countedDeliveries)) AND conversation_id IN (
                    SELECT DISTINCT conversation_id FROM messages
                    WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND sent_at_ms >= \(bind: fromMs) AND sent_at_ms < \(bind: toMs)
                      AND sender = \(bind: Int64(ChatMessage.Sender.staff.rawValue)) AND delivery IN (\(binds: Self.countedDeliveries)))
                ORDER BY sent_at_ms, message_id
                """).all()
            for row in messageRows {
                let kind: StaffConversationStatsCalculator.ReplyKind = try row.int64("kind") == Int64(ChatMessage.Kind.comment.rawValue) ? .comment : .message
                let sender: StaffConversationStatsCalculator.Sender
                switch ChatMessage.Sender(rawValue: Int32(try row.int64("sender"))) {
                case .staff: sender = .staff(try row.string("staff_id"))
                case .bot: sender = .bot
                default: sender = .customer
                }
                events.append(.init(conversationId: try row.string("conversation_id"), atMs: try row.int64("sent_at_ms"), what: .message(kind, sender)))
            }
            let eventRows = try await db.raw("""
                SELECT conversation_id, kind, staff_id, at_ms FROM conversation_events
                WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND at_ms >= \(bind: fromMs) AND at_ms < \(bind: toMs)
                ORDER BY at_ms, event_id
                """).all()
            for row in eventRows {
                let staff = try row.string("staff_id")
                let what: StaffConversationStatsCalculator.Event.What
                switch EventKind(rawValue: try row.int64("kind")) {
                case .assignedAuto: what = .assigned(staffId: staff, .auto)
                case .assignedManual: what = .assigned(staffId: staff, .manual)
                case .closed: what = .closed(staffId: staff)
                case .reopened, nil: continue
                }
                events.append(.init(conversationId: try row.string("conversation_id"), atMs: try row.int64("at_ms"), what: what))
            }
            return events
        }
    }
}
