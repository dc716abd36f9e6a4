import ChatMeshAPI
import Foundation
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// What conversation-svc owes other services, written to its outbox in the same
/// transaction as the change (ARCHITECTURE.md, Storage):
/// - `loyalty-profile`: a customer's profile changed (name, phone, birthday, the
///   tags on their conversations) → loyalty-svc UpsertCustomerProfile (R-SEG-1). The
///   row names the customer only; the profile is read when it is delivered, so a
///   burst of changes sends the latest state and a bulk change (a tag deleted or
///   renamed) writes one small row per customer.
/// - `messaging`: a tag attached or detached (R-BOT-1 chatbot scenarios) and a
///   customer's message (R-MSG-5 Messenger window; a reply stops a scenario) →
///   messaging-svc OnTagAttached, OnTagDetached, OnCustomerMessage.
/// - `replies`: a staff reply to deliver (R-CONV-9) → messaging-svc DeliverReply, whose
///   answer (SENT, FAILED, or try again later) is written on the reply. The row names
///   the reply's attempt only; what is sent is read when it is delivered.
public enum ConversationEvents {
    public static let profileSubscriber = "loyalty-profile"
    public static let messagingSubscriber = "messaging"
    public static let replySubscriber = "replies"

    enum Kind: String {
        case profile = "UpsertCustomerProfile"
        case tagAttached = "OnTagAttached"
        case tagDetached = "OnTagDetached"
        case customerMessage = "OnCustomerMessage"
        case deliverReply = "DeliverReply"
    }

    /// Who the customer is to messaging-svc: the page-scoped id on Facebook pages
    /// (what Messenger sends go to), otherwise their phone if known.
    struct Contact {
        var shop: String
        var pageId: String
        var customerId: String
        var facebook: Bool
        var externalId: String
        var phone: String

        var messengerRecipient: String {
            facebook && !externalId.isEmpty && externalId.utf8.count <= 64 && externalId.allSatisfy(\.isNumber) ? externalId : ""
        }

        var scenarioRecipient: String {
            let messenger = messengerRecipient
            return messenger.isEmpty ? (VietnamPhone.normalize(phone) ?? "") : messenger
        }
    }

    static func contacts(_ db: any SQLDatabase, shop: String, customerIds: [String]) async throws -> [String: Contact] {
        var result: [String: Contact] = [:]
        for chunk in customerIds.chunked(400) {
            for row in try await db.raw("""
                SELECT cu.customer_id, cu.page_id, cu.external_id, cu.phone, p.platform FROM customers cu
                JOIN pages p ON p.shop_id = cu.shop_id AND p.page_id = cu.page_id
                WHERE cu.shop_id = \(bind: shop) AND cu.customer_id IN (\(binds: Array(chunk)))
                """).all() {
                let id = try row.string("customer_id")
                result[id] = Contact(
                    shop: shop, pageId: try row.string("page_id"), customerId: id,
                    facebook: try row.int64("platform") == Int64(Page.Platform.facebook.rawValue), externalId: try row.string("external_id"),
                    phone: try row.string("phone")
                )
            }
        }
        return result
    }

    static func profileChanged(shop: String, customerIds: some Sequence<String>, nowMs: Int64) -> [Outbox.Event] {
        Set(customerIds).sorted().map { customer in
            Outbox.Event(
                subscriber: profileSubscriber, shopId: shop, eventId: SortableID.make("prof_", nowMs: nowMs), key: customer, kind: Kind.profile.rawValue
            )
        }
    }

    static func tagChanged(_ contact: Contact, tagName: String, attached: Bool, nowMs: Int64) throws -> Outbox.Event {
        let eventId = SortableID.make(attached ? "tagon_" : "tagoff_", nowMs: nowMs)
        let payload = attached
            ? try OnTagAttachedRequest(
                shopId: contact.shop, eventId: eventId, pageId: contact.pageId, customerId: contact.customerId, tagName: tagName, atMs: nowMs,
                recipient: contact.scenarioRecipient
            ).serializedBytes()
            : try OnTagDetachedRequest(
                shopId: contact.shop, eventId: eventId, pageId: contact.pageId, customerId: contact.customerId, tagName: tagName, atMs: nowMs
            ).serializedBytes()
        return Outbox.Event(
            subscriber: messagingSubscriber, shopId: contact.shop, eventId: eventId, key: contact.customerId,
            kind: (attached ? Kind.tagAttached : .tagDetached).rawValue, payload: payload
        )
    }

    /// R-MSG-5: only an inbox message opens Messenger's window; a comment's sender id is
    /// not a page-scoped id either, so it carries none.
    static func customerMessage(_ contact: Contact, messageId: String, atMs: Int64, comment: Bool) throws -> Outbox.Event {
        let eventId = "msg:" + messageId
        let payload = try OnCustomerMessageRequest(
            shopId: contact.shop, eventId: eventId, pageId: contact.pageId, customerId: contact.customerId,
            recipient: comment ? "" : contact.messengerRecipient, atMs: atMs, comment: comment
        ).serializedBytes()
        return Outbox.Event(
            subscriber: messagingSubscriber, shopId: contact.shop, eventId: eventId, key: contact.customerId, kind: Kind.customerMessage.rawValue,
            payload: payload
        )
    }

    static func replyToDeliver(shop: String, messageId: String, attempt: Int64, customerId: String) -> Outbox.Event {
        Outbox.Event(
            subscriber: replySubscriber, shopId: shop, eventId: StaffReply.deliveryKey(messageId: messageId, attempt: attempt), key: customerId,
            kind: Kind.deliverReply.rawValue
        )
    }

    // MARK: Delivery

    /// loyalty-svc's copy of a customer's profile, read now. Values loyalty-svc
    /// would refuse (a phone that is not a Vietnamese mobile, a malformed birthday)
    /// are left out rather than let one customer's profile fail for ever.
    static func profile(_ db: any SQLDatabase, shop: String, customerId: String, eventId: String, nowMs: Int64) async throws -> UpsertCustomerProfileRequest? {
        guard let row = try await db.raw("""
            SELECT name, phone, email, birthday FROM customers WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
            """).first() else { return nil }
        let tags = try await db.raw("""
            SELECT DISTINCT t.name FROM conversations c
            JOIN conversation_tags ct ON ct.shop_id = c.shop_id AND ct.conversation_id = c.conversation_id
            JOIN tags t ON t.shop_id = ct.shop_id AND t.tag_id = ct.tag_id
            WHERE c.shop_id = \(bind: shop) AND c.customer_id = \(bind: customerId)
            ORDER BY t.name
            """).all().map { try $0.string("name") }.filter { TagName.validate($0) == nil }
        let birthday = try row.string("birthday")
        return UpsertCustomerProfileRequest(
            shopId: shop, customerId: customerId, phone: VietnamPhone.normalize(try row.string("phone")) ?? "",
            name: String(try row.string("name").trimmingCharacters(in: .whitespacesAndNewlines).prefix(200)),
            birthday: VietnamTime.parseDate(birthday) != nil ? birthday : "", tags: Array(tags.prefix(200)),
            email: EmailAddress.normalize(try row.string("email")) ?? "", eventId: eventId, atMs: nowMs
        )
    }

    /// The `loyalty-profile` subscriber: each row's customer profile as it is now, to
    /// loyalty-svc with a service token for the row's shop.
    public static func profileSubscriber(
        store: SQLConversationStore, loyalty: any RPCChannel, token: @escaping @Sendable (_ shop: String) -> String
    ) -> Outbox.Subscriber {
        let client = LoyaltyService.Client(channel: loyalty)
        return Outbox.Subscriber(name: profileSubscriber) { delivery in
            guard let profile = try await store.profileForDelivery(shop: delivery.shopId, customerId: delivery.key, eventId: delivery.eventId) else {
                return  // no such customer: nothing to tell
            }
            _ = try await client.upsertCustomerProfile(profile, options: .bearer(token(delivery.shopId), timeout: .seconds(10)))
        }
    }

    /// The `messaging` subscriber: tag and customer-message events to messaging-svc.
    public static func messagingSubscriber(messaging: any RPCChannel, token: @escaping @Sendable (_ shop: String) -> String) -> Outbox.Subscriber {
        let client = MessagingService.Client(channel: messaging)
        return Outbox.Subscriber(name: messagingSubscriber) { delivery in
            let options = CallOptions.bearer(token(delivery.shopId), timeout: .seconds(10))
            switch Kind(rawValue: delivery.kind) {
            case .tagAttached:
                _ = try await client.onTagAttached(try OnTagAttachedRequest(serializedBytes: delivery.payload), options: options)
            case .tagDetached:
                _ = try await client.onTagDetached(try OnTagDetachedRequest(serializedBytes: delivery.payload), options: options)
            case .customerMessage:
                _ = try await client.onCustomerMessage(try OnCustomerMessageRequest(serializedBytes: delivery.payload), options: options)
            default:
                throw RPCError.internal("no messaging event of kind \(delivery.kind)")
            }
        }
    }

    /// The `replies` subscriber: each reply attempt to messaging-svc, and its answer onto the reply.
    /// A platform that keeps asking for time (rate limit, outage) is tried again with back-off and
    /// the reply turns FAILED with the platform's last reason at `giveUpAfterAttempts`, before the
    /// outbox would give the row up as dead and leave the reply PENDING.
    public static func replySubscriber(
        store: SQLConversationStore, messaging: any RPCChannel, token: @escaping @Sendable (_ shop: String) -> String, giveUpAfterAttempts: Int64
    ) -> Outbox.Subscriber {
        let client = MessagingService.Client(channel: messaging)
        return Outbox.Subscriber(name: replySubscriber) { delivery in
            guard let (messageId, attempt) = StaffReply.parseDeliveryKey(delivery.eventId) else {
                throw RPCError.internal("reply event \(delivery.eventId) does not name a reply attempt")
            }
            guard let request = try await store.replyDelivery(shop: delivery.shopId, messageId: messageId, attempt: attempt) else {
                return  // settled already, or retried since under a newer attempt
            }
            // The platform call has its own time-out (10 s); this one covers messaging-svc's bookkeeping too.
            let answer = try await client.deliverReply(request, options: .bearer(token(delivery.shopId), timeout: .seconds(30)))
            let nowMs = WallClock.nowMs()
            switch answer.outcome {
            case .sent:
                try await store.settleReply(shop: delivery.shopId, messageId: messageId, attempt: attempt, .sent(platformMessageId: answer.platformMessageId), nowMs: nowMs)
            case .failed:
                try await store.settleReply(shop: delivery.shopId, messageId: messageId, attempt: attempt, .failed(reason: answer.reason), nowMs: nowMs)
            case .retry where delivery.attempts + 1 >= giveUpAfterAttempts:
                let reason = "\(answer.reason) (gave up after \(delivery.attempts + 1) attempts; retry the reply later)"
                try await store.settleReply(shop: delivery.shopId, messageId: messageId, attempt: attempt, .failed(reason: reason), nowMs: nowMs)
            case .retry:
                throw OutboxAttempt.RetryLater(reason: answer.reason, afterMs: answer.retryAfterMs)
            default:
                throw RPCError.internal("messaging-svc answered DeliverReply with no outcome")
            }
        }
    }
}

extension SQLConversationStore {
    /// The profile a `loyalty-profile` row carries, read when it is delivered.
    public func profileForDelivery(shop: String, customerId: String, eventId: String) async throws -> UpsertCustomerProfileRequest? {
        try await db.read { db in
            try await ConversationEvents.profile(db, shop: shop, customerId: customerId, eventId: eventId, nowMs: WallClock.nowMs())
        }
    }
}
