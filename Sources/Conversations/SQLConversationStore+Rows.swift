import ChatMeshAPI
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// Rows read back as the API's types, and the lookups that refuse what is missing.
extension SQLConversationStore {
    // MARK: Reading rows

    static func requirePage(_ db: any SQLDatabase, shop: String, pageId: String) async throws -> Page {
        guard let row = try await db.raw("SELECT * FROM pages WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId)").first() else {
            throw ConversationError.pageNotConnected(pageId)
        }
        return try page(row)
    }

    static func page(_ row: any SQLRow) throws -> Page {
        Page(
            pageId: try row.string("page_id"), name: try row.string("name"), platform: .init(rawValue: Int32(try row.int64("platform"))),
            connectedAtMs: try row.int64("connected_at_ms"), firstConnect: false, facebookLabelSync: try row.int64("fb_sync") != 0
        )
    }

    static func requireFolder(_ db: any SQLDatabase, shop: String, pageId: String, folderId: String) async throws {
        guard try await db.raw("""
            SELECT folder_id FROM tag_folders WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND folder_id = \(bind: folderId)
            """).first() != nil else {
            throw ConversationError.noFolder(page: pageId, folder: folderId)
        }
    }

    static func requireTag(_ db: any SQLDatabase, shop: String, pageId: String, tagId: String, field: String = "tag_id") async throws -> Tag {
        guard let row = try await db.raw("""
            SELECT * FROM tags WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND tag_id = \(bind: tagId)
            """).first() else {
            throw ConversationError.noTag(field: field, page: pageId, tag: tagId)
        }
        return try tag(row)
    }

    /// R-TAG-3.
    static func requireFreeTagName(_ db: any SQLDatabase, shop: String, pageId: String, name: String, except: String?) async throws {
        if let row = try await db.raw("""
            SELECT tag_id, name FROM tags WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND name_key = \(bind: TagName.key(name))
            """).first(), try row.string("tag_id") != except {
            throw ConversationError.tagNameTaken(try row.string("name"))
        }
    }

    static func tag(_ row: any SQLRow) throws -> Tag {
        Tag(
            tagId: try row.string("tag_id"), folderId: try row.string("folder_id"), name: try row.string("name"), color: try row.string("color"),
            visible: try row.int64("visible") != 0
        )
    }

    static func requireConversation(_ db: any SQLDatabase, shop: String, id: String) async throws -> Conversation {
        guard let row = try await db.raw("SELECT * FROM conversations WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: id)").first() else {
            throw ConversationError.noConversation(id)
        }
        return try conversation(row)
    }

    static func conversation(_ row: any SQLRow) throws -> Conversation {
        Conversation(
            conversationId: try row.string("conversation_id"), pageId: try row.string("page_id"), customerId: try row.string("customer_id"),
            status: .init(rawValue: Int32(try row.int64("status"))), assignedStaffId: try row.string("assigned_staff_id"), tags: [],
            lastMessageAtMs: try row.int64("last_message_at_ms"), lastMessageText: try row.string("last_message_text"),
            customerName: try row.string("customer_name"), unreadCount: Int32(clamping: try row.int64("unread_count"))
        )
    }

    static func conversationView(_ db: any SQLDatabase, shop: String, id: String) async throws -> Conversation {
        var conversation = try await requireConversation(db, shop: shop, id: id)
        conversation.tags = try await attachedTags(db, shop: shop, conversationIds: [id])[id] ?? []
        return conversation
    }

    static func attachedTags(_ db: any SQLDatabase, shop: String, conversationIds: [String]) async throws -> [String: [Tag]] {
        guard !conversationIds.isEmpty else { return [:] }
        let rows = try await db.raw("""
            SELECT ct.conversation_id, t.* FROM conversation_tags ct
            JOIN tags t ON t.shop_id = ct.shop_id AND t.tag_id = ct.tag_id
            WHERE ct.shop_id = \(bind: shop) AND ct.conversation_id IN (\(binds: conversationIds))
            ORDER BY ct.conversation_id, ct.attached_at_ms, t.tag_id
            """).all()
        var result: [String: [Tag]] = [:]
        for row in rows {
            result[try row.string("conversation_id"), default: []].append(try tag(row))
        }
        return result
    }

    static func requireCustomer(_ db: any SQLDatabase, shop: String, id: String) async throws {
        guard try await db.raw("SELECT customer_id FROM customers WHERE shop_id = \(bind: shop) AND customer_id = \(bind: id)").first() != nil else {
            throw ConversationError.noCustomer(id)
        }
    }

    static func customerView(_ db: any SQLDatabase, shop: String, id: String) async throws -> Customer {
        guard let row = try await db.raw("SELECT * FROM customers WHERE shop_id = \(bind: shop) AND customer_id = \(bind: id)").first() else {
            throw ConversationError.noCustomer(id)
        }
        // R-CONV-6: with each field's label and type, in the order the shop shows its fields.
        let values = try await db.raw("""
            SELECT v.field_key, v.value, f.label, f.field_type FROM custom_field_values v
            JOIN custom_fields f ON f.shop_id = v.shop_id AND f.field_key = v.field_key
            WHERE v.shop_id = \(bind: shop) AND v.customer_id = \(bind: id) ORDER BY f.position, v.field_key
            """).all().map {
            CustomFieldValue(
                key: try $0.string("field_key"), value: try $0.string("value"), label: try $0.string("label"),
                type: .init(rawValue: Int32(try $0.int64("field_type")))
            )
        }
        return Customer(
            customerId: id, pageId: try row.string("page_id"), externalId: try row.string("external_id"), name: try row.string("name"),
            birthday: try row.string("birthday"), phone: try row.string("phone"), address: try row.string("address"), blocked: try row.int64("blocked") != 0,
            referral: Referral(
                sourceLink: try row.string("referral_source_link"), channel: try row.string("referral_channel"), campaign: try row.string("referral_campaign")
            ),
            customFields: values,
            phoneCaptured: try row.int64("phone_source") == ContactSource.captured.rawValue,
            addressCaptured: try row.int64("address_source") == ContactSource.captured.rawValue,
            email: try row.string("email"), emailCaptured: try row.int64("email_source") == ContactSource.captured.rawValue
        )
    }

    /// A `messages` row as ListMessages and the panel show it (a reply with its delivery).
    static func chatMessage(_ row: any SQLRow) throws -> ChatMessage {
        ChatMessage(
            messageId: try row.string("message_id"), conversationId: try row.string("conversation_id"),
            kind: .init(rawValue: Int32(try row.int64("kind"))), sender: .init(rawValue: Int32(try row.int64("sender"))),
            staffId: try row.string("staff_id"), text: try row.string("text"), postId: try row.string("post_id"), sentAtMs: try row.int64("sent_at_ms"),
            delivery: .init(rawValue: Int32(try row.int64("delivery"))), platformMessageId: try row.string("platform_message_id"),
            failureReason: try row.string("failure_reason"), target: .init(rawValue: Int32(try row.int64("target"))),
            replyToMessageId: try row.string("reply_to_message_id")
        )
    }

    static func customField(_ row: any SQLRow) throws -> CustomField {
        let options = try row.string("options")
        return CustomField(
            key: try row.string("field_key"), label: try row.string("label"), type: .init(rawValue: Int32(try row.int64("field_type"))),
            options: options.isEmpty ? [] : options.split(separator: "\n", omittingEmptySubsequences: false).map(String.init),
            position: Int32(try row.int64("position"))
        )
    }
}
