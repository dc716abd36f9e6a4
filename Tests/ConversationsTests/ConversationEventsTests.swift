import ChatMeshAPI
@testable import Conversations
import Foundation
import MeshRPC
import MeshStore
import MeshTestSupport
import SQLKit
import Testing

/// What conversation-svc writes to its outbox, read back as the subscribers will get it.
@Suite struct ConversationEventsTests {
    static let shop = ServiceHarness.shop

    func pending(_ h: ServiceHarness, _ subscriber: String, shop: String = ServiceHarness.shop) async throws -> [Outbox.Delivery] {
        try await h.database.read { db in try await Outbox.pending(db, shop: shop, subscriber: subscriber) }
    }

    func clear(_ h: ServiceHarness) async throws {
        try await h.database.write { db in try await db.raw("DELETE FROM outbox").run() }
    }

    @Test func aCustomerMessageAndANewCustomerAreTold() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let first = try await h.customerSays("chào shop, sđt mình 0912 345 678", from: "24681357")
        try await h.staffReplies("dạ chào chị", to: "24681357")
        // A new customer and a captured phone: one profile row; two customer messages, none for the staff reply.
        let profiles = try await pending(h, ConversationEvents.profileSubscriber)
        #expect(profiles.map(\.key) == [first.customerId])
        #expect(profiles.allSatisfy { $0.kind == "UpsertCustomerProfile" && $0.payload.isEmpty })
        _ = try await h.customerSays("còn size M không?", from: "24681357")
        let messages = try await pending(h, ConversationEvents.messagingSubscriber)
        #expect(messages.map(\.kind) == ["OnCustomerMessage", "OnCustomerMessage"])
        let told = try OnCustomerMessageRequest(serializedBytes: messages[0].payload)
        #expect(told.shopId == Self.shop && told.customerId == first.customerId && told.pageId == "page-1")
        #expect(told.recipient == "24681357")  // the page-scoped id on a Facebook page
        #expect(told.eventId == "msg:" + first.messageId && !told.comment)
        // R-MSG-5: a comment tells messaging-svc too (scenarios stop), as a comment, with no page-scoped id: it opens no window.
        let comment = try await h.customerSays("A12 size M còn không", from: "24681357", kind: .comment)
        let all = try await pending(h, ConversationEvents.messagingSubscriber)
        let commented = try OnCustomerMessageRequest(serializedBytes: try #require(all.first { $0.eventId == "msg:" + comment.messageId }).payload)
        #expect(commented.comment && commented.recipient.isEmpty && commented.customerId == first.customerId)
        // The profile as loyalty-svc will get it: phone normalised, read at delivery.
        let profile = try #require(try await h.store.profileForDelivery(shop: Self.shop, customerId: first.customerId, eventId: profiles[0].eventId))
        #expect(profile.phone == "0912345678" && profile.name == "Nguyễn Thị Hoa" && profile.tags.isEmpty && profile.eventId == profiles[0].eventId)
        try await h.close()
    }

    @Test func attachingAndDetachingATagTellsLoyaltyAndMessaging() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let said = try await h.customerSays("shop ơi", from: "1357")
        let tag = try await h.tag(named: "Đã chốt đơn")
        try await clear(h)
        _ = try await h.owner.attachTag(AttachTagRequest(shopId: Self.shop, conversationId: said.conversationId, tagId: tag.tagId, staffId: "agent-1"))
        // Attaching it again changes nothing and owes nothing.
        _ = try await h.owner.attachTag(AttachTagRequest(shopId: Self.shop, conversationId: said.conversationId, tagId: tag.tagId, staffId: "agent-1"))
        var messaging = try await pending(h, ConversationEvents.messagingSubscriber)
        #expect(messaging.map(\.kind) == ["OnTagAttached"])
        let attached = try OnTagAttachedRequest(serializedBytes: messaging[0].payload)
        #expect(attached.tagName == "Đã chốt đơn" && attached.customerId == said.customerId && attached.recipient == "1357" && attached.eventId == messaging[0].eventId)
        #expect(try await pending(h, ConversationEvents.profileSubscriber).count == 1)
        let profile = try #require(try await h.store.profileForDelivery(shop: Self.shop, customerId: said.customerId, eventId: "e"))
        #expect(profile.tags == ["Đã chốt đơn"])

        _ = try await h.owner.detachTag(DetachTagRequest(shopId: Self.shop, conversationId: said.conversationId, tagId: tag.tagId, staffId: "agent-1"))
        messaging = try await pending(h, ConversationEvents.messagingSubscriber)
        #expect(messaging.map(\.kind) == ["OnTagAttached", "OnTagDetached"])
        #expect(try OnTagDetachedRequest(serializedBytes: messaging[1].payload).tagName == "Đã chốt đơn")
        #expect(try await pending(h, ConversationEvents.profileSubscriber).count == 2)
        #expect(try await h.store.profileForDelivery(shop: Self.shop, customerId: said.customerId, eventId: "e")?.tags == [])
        // Another shop's outbox view holds none of it.
        #expect(try await pending(h, ConversationEvents.messagingSubscriber, shop: ServiceHarness.otherShop).isEmpty)
        try await h.close()
    }

    @Test func aRefusedAttachWritesNoEvent() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let conversation = try await h.customerSays("shop ơi").conversationId
        let all = try await h.attachFiftyTags(to: conversation)
        let before = try await pending(h, ConversationEvents.messagingSubscriber).count
        await expectStatus(.failedPrecondition, naming: "50") {
            _ = try await h.owner.attachTag(AttachTagRequest(shopId: Self.shop, conversationId: conversation, tagId: all[50].tagId, staffId: "agent-1"))
        }
        #expect(try await pending(h, ConversationEvents.messagingSubscriber).count == before)
        try await h.close()
    }

    @Test func renamingOrDeletingATagTellsEveryCarrier() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let tag = try await h.tag(named: "Khách quen")
        var customers: [String] = []
        for n in 0..<3 {
            let said = try await h.customerSays("xin chào", from: "900\(n)")
            customers.append(said.customerId)
            _ = try await h.owner.attachTag(AttachTagRequest(shopId: Self.shop, conversationId: said.conversationId, tagId: tag.tagId, staffId: "a"))
        }
        _ = try await h.customerSays("không có nhãn", from: "9999")
        try await clear(h)
        _ = try await h.owner.updateTag(UpdateTagRequest(
            shopId: Self.shop, pageId: "page-1", tagId: tag.tagId, folderId: tag.folderId, name: "Khách thân thiết", color: tag.color, visible: true
        ))
        #expect(Set(try await pending(h, ConversationEvents.profileSubscriber).map(\.key)) == Set(customers))
        #expect(try await h.store.profileForDelivery(shop: Self.shop, customerId: customers[0], eventId: "e")?.tags == ["Khách thân thiết"])
        try await clear(h)
        _ = try await h.owner.deleteTag(DeleteTagRequest(shopId: Self.shop, pageId: "page-1", tagId: tag.tagId))
        #expect(Set(try await pending(h, ConversationEvents.profileSubscriber).map(\.key)) == Set(customers))
        let detached = try await pending(h, ConversationEvents.messagingSubscriber)
        #expect(detached.count == 3 && detached.allSatisfy { $0.kind == "OnTagDetached" })
        #expect(Set(detached.map(\.key)) == Set(customers))
        try await h.close()
    }
}
