import ChatMeshAPI
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// Conversations: ingest (through `MessageIngest`), lists, messages, assignment and status (R-CONV-1, R-CONV-8).
extension SQLConversationStore {
    // MARK: Conversations

    /// Load → decide → persist: the page, customer and conversation are read in one
    /// statement, `MessageIngest` decides, and the message, the customer and
    /// conversation rows, the rota's turn, the outbox events and the change-log
    /// entries are written in the same transaction.
    public func ingest(shop: String, _ message: IncomingMessage, nowMs: Int64) async throws -> IngestedMessage {
        // Capture is pure text work: done before the transaction so the writer is held for SQL only.
        let incoming = MessageIngest.Message(
            sender: message.sender, customerName: message.customerName, sentAtMs: message.sentAtMs,
            capturedPhone: message.sender == .customer ? ContactCapture.phone(in: message.text) : nil,
            capturedAddress: message.sender == .customer ? ContactCapture.address(in: message.text) : nil,
            capturedEmail: message.sender == .customer ? ContactCapture.email(in: message.text) : nil
        )
        return try await write { db in
            // One read finds the page, the customer and their conversation (each may be missing).
            guard let known = try await db.raw("""
                SELECT p.page_id, p.platform, cu.customer_id, cu.name, cu.phone, cu.phone_source, cu.address, cu.address_source,
                       cu.email, cu.email_source, cu.blocked,
                       c.conversation_id, c.status, c.assigned_staff_id, c.last_message_at_ms
                FROM pages p
                LEFT JOIN customers cu ON cu.shop_id = p.shop_id AND cu.page_id = p.page_id AND cu.external_id = \(bind: message.customerExternalId)
                LEFT JOIN conversations c ON c.shop_id = cu.shop_id AND c.page_id = cu.page_id AND c.customer_id = cu.customer_id
                WHERE p.shop_id = \(bind: shop) AND p.page_id = \(bind: message.pageId)
                """).first() else {
                throw ConversationError.pageNotConnected(message.pageId)
            }
            let hasCustomer = try !known.decodeNil(column: "customer_id")
            let hasConversation = try !known.decodeNil(column: "conversation_id")
            var outcome = MessageIngest.decide(
                customer: hasCustomer ? try Self.ingestCustomer(known) : nil,
                conversation: hasConversation
                    ? MessageIngest.Thread(
                        status: Conversation.Status(rawValue: Int32(try known.int64("status"))), assignedStaffId: try known.string("assigned_staff_id"),
                        lastMessageAtMs: try known.int64("last_message_at_ms")
                    )
                    : nil,
                message: incoming
            )
            let customer = outcome.customer
            let customerId = hasCustomer ? try known.string("customer_id") : SortableID.make("cu_")
            if outcome.newCustomer {
                // R-CONV-5: where the customer came from is what the first message says.
                let referral = message.referral ?? Referral()
                try await db.raw("""
                    INSERT INTO customers (shop_id, customer_id, page_id, external_id, name, referral_source_link, referral_channel,
                                           referral_campaign, created_at_ms)
                    VALUES (\(bind: shop), \(bind: customerId), \(bind: message.pageId), \(bind: message.customerExternalId), \(bind: message.customerName),
                            \(bind: referral.sourceLink), \(bind: referral.channel), \(bind: referral.campaign), \(bind: nowMs))
                    """).run()
            }
            if outcome.customerRowChanged {
                try await db.raw("""
                    UPDATE customers SET name = \(bind: customer.name), phone = \(bind: customer.phone), phone_source = \(bind: customer.phoneSource.rawValue),
                           address = \(bind: customer.address), address_source = \(bind: customer.addressSource.rawValue),
                           email = \(bind: customer.email), email_source = \(bind: customer.emailSource.rawValue)
                    WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
                    """).run()
            }
            let conversationId = hasConversation ? try known.string("conversation_id") : SortableID.make("cv_")
            if outcome.newConversation {
                try await db.raw("""
                    INSERT INTO conversations (shop_id, conversation_id, page_id, customer_id, status, last_message_at_ms, created_at_ms)
                    VALUES (\(bind: shop), \(bind: conversationId), \(bind: message.pageId), \(bind: customerId), \(bind: Int64(Conversation.Status.open.rawValue)),
                            \(bind: message.sentAtMs), \(bind: nowMs))
                    """).run()
            }
            let messageId = SortableID.make("msg_")
            try await db.raw("""
                INSERT INTO messages (shop_id, message_id, conversation_id, page_id, kind, sender, staff_id, text, post_id, sent_at_ms, platform_message_id)
                VALUES (\(bind: shop), \(bind: messageId), \(bind: conversationId), \(bind: message.pageId), \(bind: Int64(message.kind.rawValue)),
                        \(bind: Int64(message.sender.rawValue)), \(bind: message.staffId), \(bind: message.text), \(bind: message.postId),
                        \(bind: message.sentAtMs), \(bind: message.platformMessageId))
                """).run()
            if outcome.reopened {
                try await Self.recordEvent(db, shop: shop, conversationId: conversationId, pageId: message.pageId, kind: .reopened, staffId: "", atMs: message.sentAtMs)
            }
            if outcome.assignFromRota, let staff = try await Self.nextOnlineStaff(db, shop: shop, pageId: message.pageId) {
                outcome.thread.assignedStaffId = staff
                try await Self.recordEvent(db, shop: shop, conversationId: conversationId, pageId: message.pageId, kind: .assignedAuto, staffId: staff, atMs: message.sentAtMs)
            }
            var update: SQLQueryString = """
                UPDATE conversations SET status = \(bind: Int64(outcome.thread.status.rawValue)), assigned_staff_id = \(bind: outcome.thread.assignedStaffId)
                """
            if outcome.isLatest {
                update += ", last_message_at_ms = \(bind: message.sentAtMs), last_message_text = \(bind: String(message.text.prefix(200)))"
            }
            if outcome.profileChanged {
                update += ", customer_name = \(bind: customer.name), search_key = \(bind: Self.searchKey(name: customer.name, phone: customer.phone))"
            }
            // R-PANEL-4: the inbox's unread count: customer messages since the staff last wrote.
            update += outcome.countsUnread ? ", unread_count = unread_count + 1" : ", unread_count = 0"
            update += " WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId)"
            try await db.raw(update).run()
            if outcome.isLatest && !outcome.newConversation {
                try await db.raw("""
                    UPDATE conversation_tags SET last_message_at_ms = \(bind: message.sentAtMs)
                    WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId)
                    """).run()
            }

            var events = outcome.profileChanged ? ConversationEvents.profileChanged(shop: shop, customerIds: [customerId], nowMs: nowMs) : []
            if outcome.tellsMessaging {
                let contact = ConversationEvents.Contact(
                    shop: shop, pageId: message.pageId, customerId: customerId,
                    facebook: try known.int64("platform") == Int64(Page.Platform.facebook.rawValue), externalId: message.customerExternalId,
                    phone: customer.phone
                )
                events.append(try ConversationEvents.customerMessage(contact, messageId: messageId, atMs: message.sentAtMs, comment: message.kind == .comment))
            }
            if !events.isEmpty {
                try await Outbox.enqueue(db, events, nowMs: nowMs)
            }
            var changes = [ChangeLog.Entry(
                shopId: shop, kind: outcome.newConversation ? .newConversation : .message, pageId: message.pageId, conversationId: conversationId,
                customerId: customerId
            )]
            if outcome.profileChanged { changes.append(ChangeLog.Entry(shopId: shop, kind: .customer, pageId: message.pageId, customerId: customerId)) }
            try await ChangeLog.record(db, changes, nowMs: nowMs)

            return IngestedMessage(
                conversationId: conversationId, messageId: messageId, customerId: customerId, status: outcome.thread.status,
                assignedStaffId: outcome.thread.assignedStaffId, capturedPhone: outcome.capturedPhone, capturedAddress: outcome.capturedAddress,
                capturedEmail: outcome.capturedEmail
            )
        }
    }

    static func ingestCustomer(_ row: any SQLRow) throws -> MessageIngest.Customer {
        MessageIngest.Customer(
            name: try row.string("name"), phone: try row.string("phone"),
            phoneSource: ContactSource(rawValue: try row.int64("phone_source")) ?? .none, address: try row.string("address"),
            addressSource: ContactSource(rawValue: try row.int64("address_source")) ?? .none, email: try row.string("email"),
            emailSource: ContactSource(rawValue: try row.int64("email_source")) ?? .none, blocked: try row.int64("blocked") != 0
        )
    }

    static func searchKey(name: String, phone: String) -> String {
        TagName.key(name) + (phone.isEmpty ? "" : " " + phone)
    }

    /// R-CONV-1: the online staff member whose turn it is, who then goes to the back of the line.
    static func nextOnlineStaff(_ db: any SQLDatabase, shop: String, pageId: String) async throws -> String? {
        guard let row = try await db.raw("""
            SELECT staff_id FROM staff_presence WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND online = 1
            ORDER BY auto_turn, staff_id LIMIT 1
            """).first() else { return nil }
        let staff = try row.string("staff_id")
        try await db.raw("""
            UPDATE staff_presence SET auto_turn = (SELECT MAX(auto_turn) FROM staff_presence WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId)) + 1
            WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND staff_id = \(bind: staff)
            """).run()
        return staff
    }

    /// R-PANEL-4: one change of a conversation, for the change log.
    static func changed(_ db: any SQLDatabase, shop: String, _ kind: Change.Kind, _ conversation: Conversation, nowMs: Int64) async throws {
        try await ChangeLog.record(
            db, [ChangeLog.Entry(shopId: shop, kind: kind, pageId: conversation.pageId, conversationId: conversation.conversationId, customerId: conversation.customerId)],
            nowMs: nowMs
        )
    }

    /// R-PANEL-4: the page's tags changed (created, renamed, hidden, moved, deleted): every panel of the page.
    static func pageTagsChanged(_ db: any SQLDatabase, shop: String, pageId: String, nowMs: Int64) async throws {
        try await ChangeLog.record(db, [ChangeLog.Entry(shopId: shop, kind: .tags, pageId: pageId)], nowMs: nowMs)
    }

    /// R-PANEL-4: a tag of the page was renamed, recoloured, hidden, moved or deleted: every panel of the
    /// page (the tags it offers) and each conversation carrying it (its inbox row shows the tag).
    static func tagChanged(_ db: any SQLDatabase, shop: String, pageId: String, tagId: String, nowMs: Int64) async throws {
        let carriers = try await db.raw("""
            SELECT c.conversation_id, c.customer_id FROM conversation_tags ct
            JOIN conversations c ON c.shop_id = ct.shop_id AND c.conversation_id = ct.conversation_id
            WHERE ct.shop_id = \(bind: shop) AND ct.tag_id = \(bind: tagId) ORDER BY c.conversation_id
            """).all()
        let entries = try [ChangeLog.Entry(shopId: shop, kind: .tags, pageId: pageId)] + carriers.map {
            ChangeLog.Entry(shopId: shop, kind: .tags, pageId: pageId, conversationId: try $0.string("conversation_id"), customerId: try $0.string("customer_id"))
        }
        try await ChangeLog.record(db, entries, nowMs: nowMs)
    }

    /// R-PANEL-4: something of a customer changed; each of the customer's conversations is named, for the inbox.
    static func recordCustomerChange(_ db: any SQLDatabase, shop: String, customerId: String, _ kind: Change.Kind, nowMs: Int64) async throws {
        let rows = try await db.raw("""
            SELECT conversation_id, page_id FROM conversations WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
            """).all()
        var entries = try rows.map {
            ChangeLog.Entry(shopId: shop, kind: kind, pageId: try $0.string("page_id"), conversationId: try $0.string("conversation_id"), customerId: customerId)
        }
        if entries.isEmpty { entries = [ChangeLog.Entry(shopId: shop, kind: kind, customerId: customerId)] }
        try await ChangeLog.record(db, entries, nowMs: nowMs)
    }

    static func recordEvent(_ db: any SQLDatabase, shop: String, conversationId: String, pageId: String, kind: EventKind, staffId: String, atMs: Int64) async throws {
        try await db.raw("""
            INSERT INTO conversation_events (shop_id, event_id, conversation_id, page_id, kind, staff_id, at_ms)
            VALUES (\(bind: shop), \(bind: SortableID.make("ev_")), \(bind: conversationId), \(bind: pageId), \(bind: kind.rawValue), \(bind: staffId), \(bind: atMs))
            """).run()
    }

    public func listConversations(shop: String, filter: ConversationFilter) async throws -> ResultPage<Conversation> {
        try await db.read { db in
            _ = try await Self.requirePage(db, shop: shop, pageId: filter.pageId)
            let sql = Self.listQuery(shop: shop, filter: filter)
            let rows = try await db.raw(sql).all()
            var conversations = try rows.prefix(filter.pageSize).map(Self.conversation)
            let tags = try await Self.attachedTags(db, shop: shop, conversationIds: conversations.map(\.conversationId))
            for i in conversations.indices {
                conversations[i].tags = tags[conversations[i].conversationId] ?? []
            }
            var page = ResultPage(items: conversations)
            if rows.count > filter.pageSize, let last = conversations.last {
                page.nextPageToken = ConversationCursor(lastMessageAtMs: last.lastMessageAtMs, conversationId: last.conversationId).token
            }
            return page
        }
    }

    /// R-TAG-5 as SQL, newest activity first. Without tags the page's activity
    /// index drives the scan. With tags, each driving tag's index range is read
    /// in activity order (conversation_tags carries the activity time) and
    /// stops at the page size, so the first page costs the same whether a tag
    /// is on ten conversations or ten thousand: any-of is a union of one range
    /// per tag; all-of is driven by its first tag and checks the others per row.
    static func listQuery(shop: String, filter: ConversationFilter) -> SQLQueryString {
        let limit = filter.pageSize + 1
        let any = Array(Set(filter.tagIdsAny)).sorted()
        let all = Array(Set(filter.tagIdsAll)).sorted()
        // Conditions on the conversation row `c`, which every branch shares.
        var conditions: SQLQueryString = "c.shop_id = \(bind: shop) AND c.page_id = \(bind: filter.pageId)"
        if let status = filter.status {
            conditions += " AND c.status = \(bind: Int64(status.rawValue))"
        }
        if !filter.assignedStaffId.isEmpty {
            conditions += " AND c.assigned_staff_id = \(bind: filter.assignedStaffId)"
        }
        for word in filter.query.split(separator: " ") where !word.isEmpty {
            conditions += " AND c.search_key LIKE \(bind: "%" + escapeLike(String(word)) + "%") ESCAPE '\\'"
        }
        func hasTag(_ tag: String) -> SQLQueryString {
            " AND EXISTS (SELECT 1 FROM conversation_tags x WHERE x.shop_id = c.shop_id AND x.conversation_id = c.conversation_id AND x.tag_id = \(bind: tag))"
        }
        func after(_ table: String) -> SQLQueryString {
            guard let cursor = filter.after else { return "" }
            return """
                 AND (\(unsafeRaw: table).last_message_at_ms < \(bind: cursor.lastMessageAtMs)
                   OR (\(unsafeRaw: table).last_message_at_ms = \(bind: cursor.lastMessageAtMs) AND \(unsafeRaw: table).conversation_id < \(bind: cursor.conversationId)))
                """
        }
        let order: SQLQueryString = " ORDER BY last_message_at_ms DESC, conversation_id DESC LIMIT \(literal: limit)"
        guard !any.isEmpty || !all.isEmpty else {
            return "SELECT c.* FROM conversations c WHERE " + conditions + after("c") + order
        }
        // One index range per driving tag, joined to its conversation for the other conditions.
        func range(driving tag: String, also: SQLQueryString) -> SQLQueryString {
            "SELECT c.* FROM conversation_tags ct JOIN conversations c ON c.shop_id = ct.shop_id AND c.conversation_id = ct.conversation_id"
                + " WHERE ct.shop_id = \(bind: shop) AND ct.tag_id = \(bind: tag) AND " + conditions + also + after("ct")
                + " ORDER BY ct.last_message_at_ms DESC, ct.conversation_id DESC LIMIT \(literal: limit)"
        }
        if !all.isEmpty {
            var also: SQLQueryString = ""
            for tag in all.dropFirst() { also += hasTag(tag) }
            if !any.isEmpty {
                also += " AND EXISTS (SELECT 1 FROM conversation_tags y WHERE y.shop_id = c.shop_id AND y.conversation_id = c.conversation_id AND y.tag_id IN (\(binds: any)))"
            }
            // Subqueries in FROM carry aliases: PostgreSQL before 16 requires them.
            return "SELECT * FROM (" + range(driving: all[0], also: also) + ") AS tagged" + order
        }
        // UNION (not UNION ALL): a conversation with two of the tags comes once.
        let branches = any.enumerated().map { "SELECT * FROM (" + range(driving: $1, also: "") + ") AS tag\(unsafeRaw: String($0))" as SQLQueryString }
        return "SELECT * FROM (" + branches.joined(separator: " UNION ") + ") AS tagged" + order
    }

    static func escapeLike(_ text: String) -> String {
        var out = ""
        for ch in text {
            if ch == "%" || ch == "_" || ch == "\\" { out.append("\\") }
            out.append(ch)
        }
        return out
    }

    public func conversation(shop: String, id: String) async throws -> Conversation {
        try await db.read { db in try await Self.conversationView(db, shop: shop, id: id) }
    }

    public func conversations(shop: String, ids: [String]) async throws -> [Conversation] {
        guard !ids.isEmpty else { return [] }
        return try await db.read { db in
            var rows: [Conversation] = []
            for start in stride(from: 0, to: ids.count, by: 500) {
                let chunk = Array(ids[start..<min(start + 500, ids.count)])
                rows += try await db.raw("SELECT * FROM conversations WHERE shop_id = \(bind: shop) AND conversation_id IN (\(binds: chunk))").all()
                    .map(Self.conversation)
            }
            let tags = try await Self.attachedTags(db, shop: shop, conversationIds: rows.map(\.conversationId))
            for index in rows.indices { rows[index].tags = tags[rows[index].conversationId] ?? [] }
            return rows
        }
    }

    public func requirePage(shop: String, pageId: String) async throws {
        _ = try await db.read { db in try await Self.requirePage(db, shop: shop, pageId: pageId) }
    }

    public func listMessages(shop: String, conversationId: String, pageSize: Int, after: String?) async throws -> ResultPage<ChatMessage> {
        try await db.read { db in
            _ = try await Self.requireConversation(db, shop: shop, id: conversationId)
            var sql: SQLQueryString = "SELECT * FROM messages WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId)"
            if let after, let cursor = ConversationCursor(token: after) {
                sql += " AND (sent_at_ms > \(bind: cursor.lastMessageAtMs) OR (sent_at_ms = \(bind: cursor.lastMessageAtMs) AND message_id > \(bind: cursor.conversationId)))"
            }
            sql += " ORDER BY sent_at_ms, message_id LIMIT \(literal: pageSize + 1)"
            let rows = try await db.raw(sql).all()
            let messages = try rows.prefix(pageSize).map { try Self.chatMessage($0) }
            var page = ResultPage(items: messages)
            if rows.count > pageSize, let last = messages.last {
                page.nextPageToken = ConversationCursor(lastMessageAtMs: last.sentAtMs, conversationId: last.messageId).token
            }
            return page
        }
    }

    /// R-CONV-1: a conversation given to a staff member, or to the page's rota.
    public func assign(shop: String, conversationId: String, _ assignment: Assignment, nowMs: Int64) async throws -> Conversation {
        return try await write { db in
            let current = try await Self.requireConversation(db, shop: shop, id: conversationId)
            let staff: String
            if let chosen = assignment.staffId {
                staff = chosen
            } else {
                guard let next = try await Self.nextOnlineStaff(db, shop: shop, pageId: current.pageId) else {
                    throw ConversationError.nobodyOnline(page: current.pageId)
                }
                staff = next
            }
            if staff != current.assignedStaffId {
                try await db.raw("""
                    UPDATE conversations SET assigned_staff_id = \(bind: staff) WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId)
                    """).run()
                try await Self.recordEvent(
                    db, shop: shop, conversationId: conversationId, pageId: current.pageId, kind: assignment.isAutomatic ? .assignedAuto : .assignedManual,
                    staffId: staff, atMs: nowMs
                )
                try await Self.changed(db, shop: shop, .conversation, current, nowMs: nowMs)
            }
            return try await Self.conversationView(db, shop: shop, id: conversationId)
        }
    }

    public func setPresence(shop: String, pageId: String, staffId: String, online: Bool) async throws {
        return try await write { db in
            _ = try await Self.requirePage(db, shop: shop, pageId: pageId)
            try await db.raw("""
                INSERT INTO staff_presence (shop_id, page_id, staff_id, online, auto_turn)
                VALUES (\(bind: shop), \(bind: pageId), \(bind: staffId), \(bind: online ? 1 : 0 as Int64), \(bind: 0 as Int64))
                ON CONFLICT (shop_id, page_id, staff_id) DO UPDATE SET online = \(bind: online ? 1 : 0 as Int64)
                """).run()
        }
    }

    public func setStatus(shop: String, conversationId: String, open: Bool, staffId: String, nowMs: Int64) async throws -> Conversation {
        return try await write { db in
            let current = try await Self.requireConversation(db, shop: shop, id: conversationId)
            let wanted: Conversation.Status = open ? .open : .closed
            if current.status != wanted {
                // R-CONV-1: what gets closed is an assigned conversation (one problem solved by someone).
                if !open && current.assignedStaffId.isEmpty {
                    throw ConversationError.closingUnassigned(conversationId)
                }
                try await db.raw("""
                    UPDATE conversations SET status = \(bind: Int64(wanted.rawValue)) WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId)
                    """).run()
                try await Self.recordEvent(
                    db, shop: shop, conversationId: conversationId, pageId: current.pageId, kind: open ? .reopened : .closed, staffId: staffId, atMs: nowMs
                )
                try await Self.changed(db, shop: shop, .conversation, current, nowMs: nowMs)
            }
            return try await Self.conversationView(db, shop: shop, id: conversationId)
        }
    }
}
