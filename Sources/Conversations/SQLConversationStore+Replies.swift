import ChatMeshAPI
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit

/// R-CONV-9: staff replies sent through the page. The reply is recorded PENDING with
/// its outbox event (`ConversationEvents.replySubscriber`) in one transaction; the
/// subscriber reads it when it is delivered (`replyDelivery`), messaging-svc talks to
/// the platform, and the answer is written back by `settleReply`.
extension SQLConversationStore {
    public func sendReply(shop: String, _ reply: OutgoingReply, nowMs: Int64) async throws -> ChatMessage {
        try await write { db in
            if !reply.idempotencyKey.isEmpty, let earlier = try await db.raw("""
                SELECT * FROM messages WHERE shop_id = \(bind: shop) AND idempotency_key = \(bind: reply.idempotencyKey)
                """).first() {
                let message = try Self.chatMessage(earlier)
                guard message.conversationId == reply.conversationId, message.target == reply.target, message.text == reply.text,
                      message.replyToMessageId == reply.commentMessageId
                else { throw ConversationError.idempotencyKeyReused(reply.idempotencyKey) }
                return message
            }
            guard let row = try await db.raw("""
                SELECT c.conversation_id, c.page_id, c.customer_id, c.last_message_at_ms, cu.blocked, p.platform FROM conversations c
                JOIN customers cu ON cu.shop_id = c.shop_id AND cu.customer_id = c.customer_id
                JOIN pages p ON p.shop_id = c.shop_id AND p.page_id = c.page_id
                WHERE c.shop_id = \(bind: shop) AND c.conversation_id = \(bind: reply.conversationId)
                """).first() else { throw ConversationError.noConversation(reply.conversationId) }
            let thread = StaffReply.Thread(
                conversationId: reply.conversationId, platform: Page.Platform(rawValue: Int32(try row.int64("platform"))),
                customerBlocked: try row.int64("blocked") != 0
            )
            var postId = ""
            var comment: StaffReply.Comment?
            if reply.target != .inbox, let found = try await db.raw("""
                SELECT m.message_id, m.kind, m.sender, m.post_id, m.platform_message_id,
                       (SELECT COUNT(*) FROM messages r WHERE r.shop_id = m.shop_id AND r.reply_to_message_id = m.message_id
                          AND r.target = \(bind: Int64(ChatMessage.Target.commentPrivate.rawValue))
                          AND r.delivery IN (\(binds: [ChatMessage.Delivery.pending, .sent].map { Int64($0.rawValue) }))) AS private_replies
                FROM messages m
                WHERE m.shop_id = \(bind: shop) AND m.conversation_id = \(bind: reply.conversationId) AND m.message_id = \(bind: reply.commentMessageId)
                """).first() {
                postId = try found.string("post_id")
                comment = StaffReply.Comment(
                    messageId: reply.commentMessageId, kind: .init(rawValue: Int32(try found.int64("kind"))),
                    sender: .init(rawValue: Int32(try found.int64("sender"))), platformMessageId: try found.string("platform_message_id"),
                    hasPrivateReply: try found.int64("private_replies") > 0
                )
            }
            try StaffReply.draft(thread: thread, target: reply.target, commentMessageId: reply.commentMessageId, comment: comment)

            let pageId = try row.string("page_id")
            let customerId = try row.string("customer_id")
            let message = ChatMessage(
                messageId: SortableID.make("msg_", nowMs: nowMs), conversationId: reply.conversationId,
                kind: reply.target == .inbox ? .message : .comment, sender: .staff, staffId: reply.staffId, text: reply.text, postId: postId,
                sentAtMs: nowMs, delivery: .pending, target: reply.target, replyToMessageId: reply.target == .inbox ? "" : reply.commentMessageId
            )
            try await db.raw("""
                INSERT INTO messages (shop_id, message_id, conversation_id, page_id, kind, sender, staff_id, text, post_id, sent_at_ms,
                                      delivery, target, reply_to_message_id, delivery_attempt, idempotency_key)
                VALUES (\(bind: shop), \(bind: message.messageId), \(bind: message.conversationId), \(bind: pageId), \(bind: Int64(message.kind.rawValue)),
                        \(bind: Int64(message.sender.rawValue)), \(bind: message.staffId), \(bind: message.text), \(bind: postId), \(bind: nowMs),
                        \(bind: Int64(message.delivery.rawValue)), \(bind: Int64(message.target.rawValue)), \(bind: message.replyToMessageId),
                        1, \(bind: reply.idempotencyKey))
                """).run()
            // The staff wrote: the inbox row shows the reply as the newest message and nothing unread.
            if nowMs >= (try row.int64("last_message_at_ms")) {
                try await db.raw("""
                    UPDATE conversations SET last_message_at_ms = \(bind: nowMs), last_message_text = \(bind: String(reply.text.prefix(200))), unread_count = 0
                    WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: reply.conversationId)
                    """).run()
                try await db.raw("""
                    UPDATE conversation_tags SET last_message_at_ms = \(bind: nowMs)
                    WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: reply.conversationId)
                    """).run()
            }
            try await Outbox.enqueue(db, [ConversationEvents.replyToDeliver(shop: shop, messageId: message.messageId, attempt: 1, customerId: customerId)], nowMs: nowMs)
            try await ChangeLog.record(db, [ChangeLog.Entry(
                shopId: shop, kind: .message, pageId: pageId, conversationId: reply.conversationId, customerId: customerId
            )], nowMs: nowMs)
            return message
        }
    }

    public func retryReply(shop: String, messageId: String, nowMs: Int64) async throws -> ChatMessage {
        try await write { db in
            guard let row = try await db.raw("""
                SELECT m.*, c.customer_id FROM messages m
                JOIN conversations c ON c.shop_id = m.shop_id AND c.conversation_id = m.conversation_id
                WHERE m.shop_id = \(bind: shop) AND m.message_id = \(bind: messageId)
                """).first() else { throw ConversationError.noShopMessage(messageId) }
            var message = try Self.chatMessage(row)
            guard message.delivery != .deliveryUnspecified else { throw ConversationError.notAReply(messageId) }
            let next = try StaffReply.retry(StaffReply.State(delivery: message.delivery, attempt: try row.int64("delivery_attempt")), messageId: messageId)
            try await db.raw("""
                UPDATE messages SET delivery = \(bind: Int64(next.delivery.rawValue)), delivery_attempt = \(bind: next.attempt), failure_reason = ''
                WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)
                """).run()
            let customerId = try row.string("customer_id")
            try await Outbox.enqueue(db, [ConversationEvents.replyToDeliver(shop: shop, messageId: messageId, attempt: next.attempt, customerId: customerId)], nowMs: nowMs)
            try await ChangeLog.record(db, [ChangeLog.Entry(
                shopId: shop, kind: .replyDelivery, pageId: try row.string("page_id"), conversationId: message.conversationId, customerId: customerId
            )], nowMs: nowMs)
            message.delivery = next.delivery
            message.failureReason = ""
            return message
        }
    }

    /// What messaging-svc needs to deliver attempt `attempt` of a reply, read now (the customer
    /// may have written since, opening a window); nil when that attempt is no longer wanted.
    public func replyDelivery(shop: String, messageId: String, attempt: Int64) async throws -> DeliverReplyRequest? {
        try await db.read { db in
            guard let row = try await db.raw("""
                SELECT m.message_id, m.conversation_id, m.page_id, m.text, m.target, m.reply_to_message_id, m.delivery, m.delivery_attempt,
                       c.customer_id, cu.external_id, p.platform
                FROM messages m
                JOIN conversations c ON c.shop_id = m.shop_id AND c.conversation_id = m.conversation_id
                JOIN customers cu ON cu.shop_id = c.shop_id AND cu.customer_id = c.customer_id
                JOIN pages p ON p.shop_id = m.shop_id AND p.page_id = m.page_id
                WHERE m.shop_id = \(bind: shop) AND m.message_id = \(bind: messageId)
                """).first() else { return nil }
            guard try row.int64("delivery") == Int64(ChatMessage.Delivery.pending.rawValue), try row.int64("delivery_attempt") == attempt else { return nil }
            let conversationId = try row.string("conversation_id")
            // R-MSG-5: only the customer's inbox messages open the window, not their comments.
            let lastInbox = try await db.raw("""
                SELECT MAX(sent_at_ms) AS last FROM messages
                WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId)
                  AND sender = \(bind: Int64(ChatMessage.Sender.customer.rawValue)) AND kind = \(bind: Int64(ChatMessage.Kind.message.rawValue))
                """).first().flatMap { try $0.decodeNil(column: "last") ? nil : $0.int64("last") } ?? 0
            var request = DeliverReplyRequest(
                shopId: shop, deliveryKey: StaffReply.deliveryKey(messageId: messageId, attempt: attempt), pageId: try row.string("page_id"),
                platform: try row.int64("platform") == Int64(Page.Platform.zalo.rawValue) ? .zalo : .facebook,
                target: .init(rawValue: Int32(try row.int64("target"))), recipient: try row.string("external_id"), text: try row.string("text"),
                lastCustomerMessageAtMs: lastInbox, customerId: try row.string("customer_id")
            )
            let commentId = try row.string("reply_to_message_id")
            if !commentId.isEmpty, let comment = try await db.raw("""
                SELECT platform_message_id, sent_at_ms FROM messages WHERE shop_id = \(bind: shop) AND message_id = \(bind: commentId)
                """).first() {
                request.commentId = try comment.string("platform_message_id")
                request.commentAtMs = try comment.int64("sent_at_ms")
            }
            return request
        }
    }

    /// Writes what delivering attempt `attempt` came to; a stale answer (an older attempt, a
    /// reply settled already) changes nothing. Returns whether it was written.
    @discardableResult
    public func settleReply(shop: String, messageId: String, attempt: Int64, _ answer: StaffReply.Answer, nowMs: Int64) async throws -> Bool {
        try await write { db in
            guard let row = try await db.raw("""
                SELECT m.delivery, m.delivery_attempt, m.page_id, m.conversation_id, c.customer_id FROM messages m
                JOIN conversations c ON c.shop_id = m.shop_id AND c.conversation_id = m.conversation_id
                WHERE m.shop_id = \(bind: shop) AND m.message_id = \(bind: messageId)
                """).first() else { return false }
            let state = StaffReply.State(delivery: .init(rawValue: Int32(try row.int64("delivery"))), attempt: try row.int64("delivery_attempt"))
            guard let change = StaffReply.settle(state, attempt: attempt, answer: answer) else { return false }
            try await db.raw("""
                UPDATE messages SET delivery = \(bind: Int64(change.delivery.rawValue)), platform_message_id = \(bind: change.platformMessageId),
                       failure_reason = \(bind: String(change.failureReason.prefix(1000)))
                WHERE shop_id = \(bind: shop) AND message_id = \(bind: messageId)
                """).run()
            try await ChangeLog.record(db, [ChangeLog.Entry(
                shopId: shop, kind: .replyDelivery, pageId: try row.string("page_id"), conversationId: try row.string("conversation_id"),
                customerId: try row.string("customer_id")
            )], nowMs: nowMs)
            return true
        }
    }
}

/// A staff reply as SendReply asks for it, checked.
public struct OutgoingReply: Sendable, Hashable {
    public var conversationId: String
    public var staffId: String
    public var text: String
    public var target: ChatMessage.Target
    /// COMMENT_* targets: the comment's message id.
    public var commentMessageId: String
    public var idempotencyKey: String

    public init(conversationId: String, staffId: String, text: String, target: ChatMessage.Target, commentMessageId: String, idempotencyKey: String) {
        self.conversationId = conversationId
        self.staffId = staffId
        self.text = text
        self.target = target
        self.commentMessageId = commentMessageId
        self.idempotencyKey = idempotencyKey
    }
}
