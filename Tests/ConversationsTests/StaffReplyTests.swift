import ChatMeshAPI
@testable import Conversations
import Foundation
import MeshRPC
import MeshStore
import MeshTestSupport
import Testing
import VietnamCommerce

/// R-CONV-9: the reply rules on their own, then SendReply / RetryReply through the
/// handler and store: what is recorded, what the outbox owes, what a delivery answer does.
@Suite struct StaffReplyTests {
    static let shop = ServiceHarness.shop
    static let facebook = StaffReply.Thread(conversationId: "cv_1", platform: .facebook, customerBlocked: false)

    static func comment(kind: ChatMessage.Kind = .comment, sender: ChatMessage.Sender = .customer, platformId: String = "123_456", replied: Bool = false) -> StaffReply.Comment {
        StaffReply.Comment(messageId: "msg_c", kind: kind, sender: sender, platformMessageId: platformId, hasPrivateReply: replied)
    }

    @Test func draftRefusesWhatNoPlatformCanSend() throws {
        try StaffReply.draft(thread: Self.facebook, target: .inbox, commentMessageId: "", comment: nil)
        try StaffReply.draft(thread: Self.facebook, target: .commentPublic, commentMessageId: "msg_c", comment: Self.comment(replied: true))
        try StaffReply.draft(thread: Self.facebook, target: .commentPrivate, commentMessageId: "msg_c", comment: Self.comment())
        let cases: [(StaffReply.Thread, ChatMessage.Target, StaffReply.Comment?, ConversationError)] = [
            (StaffReply.Thread(conversationId: "cv_1", platform: .facebook, customerBlocked: true), .inbox, nil, .replyToBlockedCustomer(conversation: "cv_1")),
            (StaffReply.Thread(conversationId: "cv_1", platform: .zalo, customerBlocked: false), .commentPublic, Self.comment(),
             .replyTargetNotOnPlatform(target: .commentPublic, platform: .zalo)),
            (Self.facebook, .commentPublic, nil, .noMessage(conversation: "cv_1", message: "msg_c")),
            (Self.facebook, .commentPublic, Self.comment(kind: .message), .notACustomerComment("msg_c")),
            (Self.facebook, .commentPrivate, Self.comment(sender: .staff), .notACustomerComment("msg_c")),
            (Self.facebook, .commentPublic, Self.comment(platformId: ""), .commentWithoutPlatformId("msg_c")),
            (Self.facebook, .commentPrivate, Self.comment(replied: true), .commentAlreadyRepliedPrivately("msg_c")),
        ]
        for (thread, target, comment, expected) in cases {
            #expect(throws: expected) { try StaffReply.draft(thread: thread, target: target, commentMessageId: "msg_c", comment: comment) }
        }
    }

    @Test func anAnswerSettlesOnlyTheCurrentPendingAttempt() throws {
        let pending = StaffReply.State(delivery: .pending, attempt: 2)
        #expect(StaffReply.settle(pending, attempt: 2, answer: .sent(platformMessageId: "m_1"))! == (.sent, "m_1", ""))
        #expect(StaffReply.settle(pending, attempt: 2, answer: .failed(reason: "window closed"))! == (.failed, "", "window closed"))
        #expect(StaffReply.settle(pending, attempt: 1, answer: .sent(platformMessageId: "m_0")) == nil)
        #expect(StaffReply.settle(StaffReply.State(delivery: .sent, attempt: 2), attempt: 2, answer: .failed(reason: "late")) == nil)
        #expect(try StaffReply.retry(StaffReply.State(delivery: .failed, attempt: 2), messageId: "m") == StaffReply.State(delivery: .pending, attempt: 3))
        for delivery in [ChatMessage.Delivery.pending, .sent] {
            #expect(throws: ConversationError.replyNotFailed(message: "m", delivery: delivery)) {
                try StaffReply.retry(StaffReply.State(delivery: delivery, attempt: 1), messageId: "m")
            }
        }
        let key = StaffReply.deliveryKey(messageId: "msg_01abc", attempt: 3)
        #expect(StaffReply.parseDeliveryKey(key)! == ("msg_01abc", 3))
        #expect(StaffReply.parseDeliveryKey("msg_01abc") == nil && StaffReply.parseDeliveryKey("msg#0") == nil)
    }

    func pendingReplies(_ h: ServiceHarness) async throws -> [Outbox.Delivery] {
        try await h.database.read { db in try await Outbox.pending(db, shop: Self.shop, subscriber: ConversationEvents.replySubscriber) }
    }

    @Test func aReplyIsRecordedPendingOnceAndItsDeliveryIsOwed() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let saidAt = h.now
        let said = try await h.customerSays("áo này còn size M không shop?", from: "24681357")
        h.advance(ms: 60_000)
        let request = SendReplyRequest(shopId: Self.shop, conversationId: said.conversationId, staffId: "agent-1", text: "Dạ còn chị ơi", idempotencyKey: "k-1")
        let reply = try await h.owner.sendReply(request)
        #expect(reply.delivery == .pending && reply.target == .inbox && reply.sender == .staff && reply.staffId == "agent-1" && reply.sentAtMs == h.now)
        // The same key answers the same reply; the key with other text is refused.
        #expect(try await h.owner.sendReply(request) == reply)
        var other = request
        other.text = "khác"
        await #expect(throws: RPCError.self) { try await h.owner.sendReply(other) }
        let owed = try await pendingReplies(h)
        #expect(owed.map(\.eventId) == [reply.messageId + "#1"] && owed[0].key == said.customerId && owed[0].kind == "DeliverReply")
        // The inbox row shows the reply and nothing unread.
        let conversation = try await h.owner.getConversation(GetConversationRequest(shopId: Self.shop, conversationId: said.conversationId))
        #expect(conversation.lastMessageText == "Dạ còn chị ơi" && conversation.unreadCount == 0)

        // Read at delivery: the recipient and the customer's last inbox message (the window's start).
        let delivery = try #require(try await h.store.replyDelivery(shop: Self.shop, messageId: reply.messageId, attempt: 1))
        #expect(delivery.recipient == "24681357" && delivery.platform == .facebook && delivery.target == .inbox && delivery.text == "Dạ còn chị ơi")
        #expect(delivery.lastCustomerMessageAtMs == saidAt && delivery.deliveryKey == reply.messageId + "#1")
        #expect(try await h.store.replyDelivery(shop: Self.shop, messageId: reply.messageId, attempt: 2) == nil)

        // FAILED, then retried as attempt 2; a late answer for attempt 1 changes nothing.
        #expect(try await h.store.settleReply(shop: Self.shop, messageId: reply.messageId, attempt: 1, .failed(reason: "rate limited"), nowMs: h.now))
        await #expect(throws: RPCError.self) { try await h.owner.retryReply(RetryReplyRequest(shopId: Self.shop, messageId: said.messageId)) }
        let retried = try await h.owner.retryReply(RetryReplyRequest(shopId: Self.shop, messageId: reply.messageId, staffId: "agent-1"))
        #expect(retried.delivery == .pending && retried.failureReason.isEmpty)
        #expect(try await pendingReplies(h).map(\.eventId) == [reply.messageId + "#1", reply.messageId + "#2"])
        #expect(try await h.store.replyDelivery(shop: Self.shop, messageId: reply.messageId, attempt: 1) == nil)
        #expect(try await !h.store.settleReply(shop: Self.shop, messageId: reply.messageId, attempt: 1, .sent(platformMessageId: "old"), nowMs: h.now))
        #expect(try await h.store.settleReply(shop: Self.shop, messageId: reply.messageId, attempt: 2, .sent(platformMessageId: "m_42"), nowMs: h.now))
        let listed = try await h.owner.listMessages(ListMessagesRequest(shopId: Self.shop, conversationId: said.conversationId)).messages
        #expect(listed.map(\.delivery) == [.deliveryUnspecified, .sent] && listed[1].platformMessageId == "m_42")
        // Another shop sees none of it.
        await #expect(throws: RPCError.self) {
            try await h.client(shop: ServiceHarness.otherShop).retryReply(RetryReplyRequest(shopId: ServiceHarness.otherShop, messageId: reply.messageId))
        }
        try await h.close()
    }

    @Test func commentRepliesNeedTheCommentAndOnePrivateReplyEach() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let commentAt = h.now
        let comment = try await h.owner.ingestMessage(IngestMessageRequest(
            shopId: Self.shop, pageId: "page-1", customerExternalId: "24681357", customerName: "Hoa", kind: .comment, sender: .customer,
            text: "giá sao shop", postId: "post-1", sentAtMs: h.now, platformMessageId: "111_222"
        ))
        let bare = try await h.customerSays("còn không", from: "24681357", kind: .comment)
        func send(_ target: ChatMessage.Target, _ comment: String) async throws -> ChatMessage {
            try await h.owner.sendReply(SendReplyRequest(
                shopId: Self.shop, conversationId: bare.conversationId, staffId: "agent-1", text: "Inbox chị nhé", target: target, commentMessageId: comment
            ))
        }
        let publicReply = try await send(.commentPublic, comment.messageId)
        #expect(publicReply.kind == .comment && publicReply.replyToMessageId == comment.messageId && publicReply.postId == "post-1")
        let privateReply = try await send(.commentPrivate, comment.messageId)
        #expect(privateReply.target == .commentPrivate)
        let delivery = try #require(try await h.store.replyDelivery(shop: Self.shop, messageId: privateReply.messageId, attempt: 1))
        #expect(delivery.commentId == "111_222" && delivery.commentAtMs == commentAt && delivery.lastCustomerMessageAtMs == 0)
        do {
            _ = try await send(.commentPrivate, comment.messageId)
            Issue.record("a second private reply to one comment")
        } catch let error as RPCError {
            #expect(error.code == .failedPrecondition && error.message.hasPrefix("comment_message_id"))
        }
        // A failed private reply frees the comment for another.
        try await h.store.settleReply(shop: Self.shop, messageId: privateReply.messageId, attempt: 1, .failed(reason: "x"), nowMs: h.now)
        _ = try await send(.commentPrivate, comment.messageId)
        for (target, id) in [(ChatMessage.Target.commentPublic, bare.messageId), (.commentPublic, "msg_nope"), (.inbox, comment.messageId)] {
            await #expect(throws: RPCError.self) { _ = try await send(target, id) }
        }
        try await h.close()
    }

    @Test func onlySentRepliesCountInTheStaffReport() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let said = try await h.customerSays("shop ơi", from: "1357")
        h.advance(ms: 120_000)
        let reply = try await h.owner.sendReply(SendReplyRequest(shopId: Self.shop, conversationId: said.conversationId, staffId: "agent-1", text: "Dạ"))
        func replied() async throws -> Int32 {
            let stats = try await h.owner.getStaffConversationStats(GetStaffConversationStatsRequest(
                shopId: Self.shop, pageId: "page-1", fromMs: ServiceHarness.start - 1, toMs: h.now + 1
            ))
            return stats.staff.first { $0.staffId == "agent-1" }?.messagesReplied ?? 0
        }
        #expect(try await replied() == 0)
        try await h.store.settleReply(shop: Self.shop, messageId: reply.messageId, attempt: 1, .sent(platformMessageId: "m"), nowMs: h.now)
        #expect(try await replied() == 1)
        try await h.close()
    }

    @Test func anEmailIsCapturedAndTypedLikeAPhone() async throws {
        #expect(ContactCapture.email(in: "gửi hoá đơn về Lan.Nguyen@Gmail.com nha.") == "lan.nguyen@gmail.com")
        #expect(ContactCapture.email(in: "giá 150k @shop") == nil)
        #expect(ContactCapture.email(in: "a@b") == nil && ContactCapture.email(in: "x@y.c0m") == nil && EmailAddress.normalize("a..b@x.vn") == nil)
        let h = try await ServiceHarness.make()
        try await h.connect()
        let said = try await h.customerSays("mail mình: hoa.tran@yahoo.com.vn", from: "1357")
        #expect(said.capturedEmail == "hoa.tran@yahoo.com.vn")
        var customer = try await h.owner.getCustomer(GetCustomerRequest(shopId: Self.shop, customerId: said.customerId))
        #expect(customer.email == "hoa.tran@yahoo.com.vn" && customer.emailCaptured)
        customer = try await h.owner.updateCustomer(UpdateCustomerRequest(
            shopId: Self.shop, customerId: said.customerId, updateFields: ["email"], email: " Hoa@Shop.VN "
        ))
        #expect(customer.email == "hoa@shop.vn" && !customer.emailCaptured)
        // What staff typed stands over a later capture, and goes to loyalty-svc with the profile.
        let later = try await h.customerSays("hoặc gửi khac@gmail.com", from: "1357")
        #expect(later.capturedEmail.isEmpty)
        let profile = try #require(try await h.store.profileForDelivery(shop: Self.shop, customerId: said.customerId, eventId: "e"))
        #expect(profile.email == "hoa@shop.vn")
        await #expect(throws: RPCError.self) {
            try await h.owner.updateCustomer(UpdateCustomerRequest(shopId: Self.shop, customerId: said.customerId, updateFields: ["email"], email: "not-an-address"))
        }
        try await h.close()
    }
}
