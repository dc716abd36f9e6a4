import ChatMeshAPI
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// Customers: profiles, block, notes and custom fields (R-CONV-2..7).
extension SQLConversationStore {
    // MARK: Customers

    public func customer(shop: String, id: String) async throws -> Customer {
        try await db.read { db in try await Self.customerView(db, shop: shop, id: id) }
    }

    /// R-PANEL-1: one read for the five answers a panel needs from this service. The conversation
    /// found proves its customer and page exist, so no existence checks are repeated.
    public func conversationContext(
        shop: String, conversationId: String, notes: Int, activity: Int, messages: Int, messagesOnly: Bool
    ) async throws -> ConversationContext {
        try await db.read { db in
            let conversation = try await Self.conversationView(db, shop: shop, id: conversationId)
            let recent = try await db.raw("""
                SELECT * FROM messages WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId)
                ORDER BY sent_at_ms DESC, message_id DESC LIMIT \(literal: messages)
                """).all().reversed().map { try Self.chatMessage($0) }
            if messagesOnly { return ConversationContext(conversation: conversation, messages: recent) }
            let customer = try await Self.customerView(db, shop: shop, id: conversation.customerId)
            let tags = try await Self.tagList(db, shop: shop, pageId: conversation.pageId, includeHidden: false)
            let notes = try await Self.notes(db, shop: shop, customerId: conversation.customerId, pageSize: notes, after: nil)
            var filter = ActivityFilter(pageId: conversation.pageId)
            filter.conversationId = conversationId
            filter.pageSize = activity
            let entries = try await Self.activity(db, shop: shop, filter: filter)
            return ConversationContext(
                conversation: conversation, customer: customer, tags: tags, notes: notes.items, activity: entries.items, messages: recent
            )
        }
    }

    public func updateCustomer(shop: String, id: String, changes: CustomerChanges) async throws -> Customer {
        return try await write { db in
            var customer = try await Self.customerView(db, shop: shop, id: id)
            var sql: SQLQueryString = "UPDATE customers SET customer_id = customer_id"
            if let name = changes.name {
                customer.name = name
                sql += ", name = \(bind: name)"
            }
            if let birthday = changes.birthday { sql += ", birthday = \(bind: birthday)" }
            // R-CONV-3/4: what staff type is theirs; auto-capture will not replace it.
            if let phone = changes.phone {
                customer.phone = phone
                sql += ", phone = \(bind: phone), phone_source = \(bind: (phone.isEmpty ? ContactSource.none : ContactSource.staff).rawValue)"
            }
            if let address = changes.address {
                sql += ", address = \(bind: address), address_source = \(bind: (address.isEmpty ? ContactSource.none : ContactSource.staff).rawValue)"
            }
            if let email = changes.email {
                sql += ", email = \(bind: email), email_source = \(bind: (email.isEmpty ? ContactSource.none : ContactSource.staff).rawValue)"
            }
            sql += " WHERE shop_id = \(bind: shop) AND customer_id = \(bind: id)"
            try await db.raw(sql).run()
            if changes.name != nil || changes.phone != nil {
                try await db.raw("""
                    UPDATE conversations SET customer_name = \(bind: customer.name), search_key = \(bind: Self.searchKey(name: customer.name, phone: customer.phone))
                    WHERE shop_id = \(bind: shop) AND customer_id = \(bind: id)
                    """).run()
            }
            if changes.name != nil || changes.phone != nil || changes.birthday != nil || changes.email != nil {
                let now = WallClock.nowMs()
                try await Outbox.enqueue(db, ConversationEvents.profileChanged(shop: shop, customerIds: [id], nowMs: now), nowMs: now)
            }
            try await Self.recordCustomerChange(db, shop: shop, customerId: id, .customer, nowMs: WallClock.nowMs())
            return try await Self.customerView(db, shop: shop, id: id)
        }
    }

    public func setBlocked(shop: String, customerId: String, blocked: Bool, staffId: String, nowMs: Int64) async throws -> Customer {
        return try await write { db in
            let customer = try await Self.customerView(db, shop: shop, id: customerId)
            if customer.blocked != blocked {
                try await db.raw("""
                    UPDATE customers SET blocked = \(bind: blocked ? 1 : 0 as Int64) WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
                    """).run()
                let conversationId = try await db.raw("""
                    SELECT conversation_id FROM conversations WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
                    """).first().map { try $0.string("conversation_id") } ?? ""
                try await Self.recordActivity(
                    db, shop: shop, pageId: customer.pageId, action: blocked ? .customerBlocked : .customerUnblocked, staffId: staffId,
                    conversationId: conversationId, customerId: customerId, tagId: "", tagName: "", nowMs: nowMs
                )
                try await Self.recordCustomerChange(db, shop: shop, customerId: customerId, .block, nowMs: nowMs)
            }
            return try await Self.customerView(db, shop: shop, id: customerId)
        }
    }

    public func addNote(shop: String, customerId: String, text: String, staffId: String, nowMs: Int64) async throws -> Note {
        return try await write { db in
            try await Self.requireCustomer(db, shop: shop, id: customerId)
            let note = Note(noteId: SortableID.make("note_", nowMs: nowMs), customerId: customerId, text: text, staffId: staffId, createdAtMs: nowMs)
            try await db.raw("""
                INSERT INTO notes (shop_id, note_id, customer_id, text, staff_id, created_at_ms)
                VALUES (\(bind: shop), \(bind: note.noteId), \(bind: customerId), \(bind: text), \(bind: staffId), \(bind: nowMs))
                """).run()
            try await Self.recordCustomerChange(db, shop: shop, customerId: customerId, .notes, nowMs: nowMs)
            return note
        }
    }

    public func listNotes(shop: String, customerId: String, pageSize: Int, after: String?) async throws -> ResultPage<Note> {
        try await db.read { db in
            let page = try await Self.notes(db, shop: shop, customerId: customerId, pageSize: pageSize, after: after)
            // Customers are never deleted: one with notes exists, so only an empty answer needs the check.
            if page.items.isEmpty { try await Self.requireCustomer(db, shop: shop, id: customerId) }
            return page
        }
    }

    static func notes(_ db: any SQLDatabase, shop: String, customerId: String, pageSize: Int, after: String?) async throws -> ResultPage<Note> {
        var sql: SQLQueryString = "SELECT * FROM notes WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)"
        if let after { sql += " AND note_id < \(bind: after)" }
        sql += " ORDER BY note_id DESC LIMIT \(literal: pageSize + 1)"
        let rows = try await db.raw(sql).all()
        let notes = try rows.prefix(pageSize).map { row in
            Note(
                noteId: try row.string("note_id"), customerId: customerId, text: try row.string("text"), staffId: try row.string("staff_id"),
                createdAtMs: try row.int64("created_at_ms")
            )
        }
        return ResultPage(items: notes, nextPageToken: rows.count > pageSize ? notes.last?.noteId ?? "" : "")
    }

    public func deleteNote(shop: String, customerId: String, noteId: String) async throws {
        return try await write { db in
            try await Self.requireCustomer(db, shop: shop, id: customerId)
            guard try await db.raw("""
                SELECT note_id FROM notes WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND note_id = \(bind: noteId)
                """).first() != nil else {
                throw ConversationError.noNote(customer: customerId, note: noteId)
            }
            try await db.raw("DELETE FROM notes WHERE shop_id = \(bind: shop) AND note_id = \(bind: noteId)").run()
            try await Self.recordCustomerChange(db, shop: shop, customerId: customerId, .notes, nowMs: WallClock.nowMs())
        }
    }

    public func defineCustomField(shop: String, field: CustomField) async throws -> CustomField {
        return try await write { db in
            if let row = try await db.raw("SELECT * FROM custom_fields WHERE shop_id = \(bind: shop) AND field_key = \(bind: field.key)").first() {
                let existing = try Self.customField(row)
                // Values already stored were checked against the old type; a new type could make them wrong.
                guard existing.type == field.type else {
                    throw ConversationError.customFieldTypeFixed(key: field.key, type: existing.type)
                }
                try await db.raw("""
                    UPDATE custom_fields SET label = \(bind: field.label), options = \(bind: field.options.joined(separator: "\n")),
                        position = \(bind: Int64(field.position))
                    WHERE shop_id = \(bind: shop) AND field_key = \(bind: field.key)
                    """).run()
            } else {
                try await db.raw("""
                    INSERT INTO custom_fields (shop_id, field_key, label, field_type, options, position)
                    VALUES (\(bind: shop), \(bind: field.key), \(bind: field.label), \(bind: Int64(field.type.rawValue)), \(bind: field.options.joined(separator: "\n")),
                            \(bind: Int64(field.position)))
                    """).run()
            }
            return field
        }
    }

    public func listCustomFields(shop: String) async throws -> [CustomField] {
        try await db.read { db in
            try await db.raw("SELECT * FROM custom_fields WHERE shop_id = \(bind: shop) ORDER BY position, field_key").all().map(Self.customField)
        }
    }

    public func setCustomFieldValue(shop: String, customerId: String, key: String, value: String) async throws -> Customer {
        return try await write { db in
            try await Self.requireCustomer(db, shop: shop, id: customerId)
            guard let row = try await db.raw("SELECT * FROM custom_fields WHERE shop_id = \(bind: shop) AND field_key = \(bind: key)").first() else {
                throw ConversationError.noCustomField(key)
            }
            if value.isEmpty {
                try await db.raw("""
                    DELETE FROM custom_field_values WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND field_key = \(bind: key)
                    """).run()
            } else {
                if let problem = CustomFieldRules.check(value: value, for: try Self.customField(row)) {
                    throw ConversationError.customFieldValue(problem)
                }
                try await db.raw("""
                    INSERT INTO custom_field_values (shop_id, customer_id, field_key, value)
                    VALUES (\(bind: shop), \(bind: customerId), \(bind: key), \(bind: value))
                    ON CONFLICT (shop_id, customer_id, field_key) DO UPDATE SET value = \(bind: value)
                    """).run()
            }
            try await Self.recordCustomerChange(db, shop: shop, customerId: customerId, .customer, nowMs: WallClock.nowMs())
            return try await Self.customerView(db, shop: shop, id: customerId)
        }
    }
}
