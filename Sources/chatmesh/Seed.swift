import ArgumentParser
import ChatMeshAPI
import Foundation
import MeshHTTP2
import MeshRPC

/// Demo data for a local mesh, written through the services' own RPCs (so
/// every rule applies to it): a Facebook page of a small fashion shop, its
/// staff online, a morning of customer messages with phones and addresses to
/// capture, replies, tags, a note and a custom field; in messaging-svc a
/// balance, templates, an order confirmation sent through the sandbox and a
/// chatbot scenario on the "Quan tâm" tag that starts for the customers who carry it;
/// in loyalty-svc a program with three tiers, the customers' profiles and paid
/// orders (points, tiers), a segment, and a referral whose voucher goes out
/// through messaging-svc.
struct Seed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fill a running mesh with a demo shop (idempotent: a page that exists is left as it is)."
    )

    @Option(help: "The demo shop's id.")
    var shop: String = "demo-shop"

    @Option(help: "conversation-svc address (default: CHATMESH_CONVERSATION_ADDRS or 127.0.0.1:50051).")
    var conversation: String?

    @Option(help: "messaging-svc address (default: CHATMESH_MESSAGING_ADDRS or 127.0.0.1:50054); \"none\" to leave it out.")
    var messaging: String?

    @Option(help: "loyalty-svc address (default: CHATMESH_LOYALTY_ADDRS or 127.0.0.1:50053); \"none\" to leave it out.")
    var loyalty: String?

    struct Chat {
        let psid: String
        let name: String
        let lines: [(customer: Bool, text: String)]
        let tags: [String]
    }

    static let chats: [Chat] = [
        Chat(psid: "24680001001", name: "Nguyễn Thị Hoa", lines: [
            (true, "Shop ơi áo sơ mi trắng còn size M không ạ?"),
            (false, "Dạ còn chị ơi, chị lấy mấy cái ạ?"),
            (true, "Em lấy 2 cái, giao về 12 Lý Tự Trọng, P. Bến Nghé, Q.1, TP.HCM, sđt 0912 345 678 nha"),
        ], tags: ["Quan tâm", "Chờ chuyển khoản"]),
        Chat(psid: "24680001002", name: "Trần Văn Đức", lines: [
            (true, "Giá váy maxi hoa nhí bao nhiêu vậy shop"),
            (false, "Dạ 350.000đ anh ạ"),
            (true, "Hơi cao, có giảm không shop?"),
        ], tags: ["Giá cao", "Thích ưu đãi"]),
        Chat(psid: "24680001003", name: "Lê Thu Trang", lines: [
            (true, "Chân váy đen hết hàng rồi hả shop? Có thì báo em qua số +84 903 111 222"),
        ], tags: ["Hết hàng"]),
        Chat(psid: "24680001004", name: "Phạm Minh Anh", lines: [
            (true, "Mình đặt 10 cái áo thun để bán lại được giá sỉ không?"),
            (false, "Dạ từ 10 cái shop giảm 15% ạ"),
            (true, "Ok chốt nha, ship gấp giúp mình về 88 Nguyễn Trãi, Phường 3, Quận 5, TP.HCM"),
        ], tags: ["Mua sỉ", "Giao gấp", "Đã chốt đơn"]),
        Chat(psid: "24680001005", name: "Võ Ngọc Bích", lines: [
            (true, "Lần đầu mua ở shop, có đổi size được không ạ"),
        ], tags: ["Mua lần đầu"]),
    ]

    func run() async throws {
        let env = MeshEnvironment()
        let address = conversation ?? env.addresses(of: "conversation")
        let token = TokenSigner(key: env.authKey).mint(shopId: shop, staffId: "owner-lan", role: .owner, validFor: 600)
        let channel = try HTTP2Channel(addresses: address)
        let client = ConversationService.Client(channel: channel, defaultOptions: .bearer(token, timeout: .seconds(10)))
        let messagingAddress = messaging ?? env.addresses(of: "messaging")
        let messagingChannel = messagingAddress == "none" ? nil : try HTTP2Channel(addresses: messagingAddress)
        let loyaltyAddress = loyalty ?? env.addresses(of: "loyalty")
        let loyaltyChannel = loyaltyAddress == "none" ? nil : try HTTP2Channel(addresses: loyaltyAddress)
        let closeAll = {
            await channel.close()
            await messagingChannel?.close()
            await loyaltyChannel?.close()
        }
        do {
            let seeded = try await seed(client)
            let messagingClient = messagingChannel.map { MessagingService.Client(channel: $0, defaultOptions: .bearer(token, timeout: .seconds(10))) }
            if let messagingClient {
                try await seedMessaging(messagingClient, seeded)
            }
            if let loyaltyChannel {
                try await seedLoyalty(LoyaltyService.Client(channel: loyaltyChannel, defaultOptions: .bearer(token, timeout: .seconds(10))), messagingClient, seeded)
            }
        } catch {
            await closeAll()
            throw error
        }
        await closeAll()
    }

    /// Phones and birthdays the demo customers gave (the phones also appear in their chats).
    static let profiles: [String: (phone: String, birthday: String)] = [
        "24680001001": ("0912345678", "1994-11-28"),
        "24680001002": ("0987111333", "1990-03-15"),
        "24680001003": ("0903111222", "1998-12-02"),
        "24680001004": ("0938222444", "1988-07-09"),
        "24680001005": ("", ""),
    ]

    /// A program, tiers, profiles, paid orders, a segment and a referral. The order
    /// events order-svc's outbox will deliver (issue 8) are sent here by hand.
    func seedLoyalty(_ client: LoyaltyService.Client, _ messaging: MessagingService.Client?, _ seeded: Seeded) async throws {
        if try await !client.listTiers(ShopRequest(shopId: shop)).tiers.isEmpty {
            print("\(shop) already has its loyalty demo: nothing to seed")
            return
        }
        _ = try await client.configureProgram(ConfigureProgramRequest(
            shopId: shop, earnVndPerPoint: 10_000, redeemVndPerPoint: 1_000, expiry: PointsExpiry(kind: .afterMonths, months: 12), cycle: .rolling12Months
        ))
        for (name, spend, discount, multiplier, combinable) in [
            ("Bạc", Int64(1_000_000), Int32(2), 1.0, true), ("Vàng", 3_000_000, 5, 1.5, true), ("Kim cương", 10_000_000, 10, 2.0, false),
        ] {
            _ = try await client.upsertTier(UpsertTierRequest(
                shopId: shop, name: name, minSpendVnd: spend, discountPercent: discount, pointsMultiplier: multiplier, combinable: combinable
            ))
        }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let day: Int64 = 86_400_000
        // Paid orders over the last months: (days ago, VND, used an offer).
        let history: [String: [(Int64, Int64, Bool)]] = [
            "24680001001": [(120, 700_000, false), (45, 1_250_000, true), (3, 700_000, false)],
            "24680001002": [(200, 350_000, false)],
            "24680001004": [(90, 2_400_000, true), (30, 3_600_000, false), (1, 4_500_000, true)],
        ]
        var orders = 0
        for customer in seeded.customers {
            let profile = Self.profiles[customer.chat.psid] ?? ("", "")
            _ = try await client.upsertCustomerProfile(UpsertCustomerProfileRequest(
                shopId: shop, customerId: customer.customerId, phone: profile.phone, name: customer.chat.name, birthday: profile.birthday, tags: customer.chat.tags
            ))
            for (n, order) in (history[customer.chat.psid] ?? []).enumerated() {
                _ = try await client.recordOrderEvent(RecordOrderEventRequest(
                    shopId: shop, eventId: "demo-paid-\(customer.chat.psid)-\(n)", orderId: "DH\(customer.chat.psid.suffix(2))\(n)", customerId: customer.customerId,
                    kind: .paid, amountVnd: order.1, channel: n % 2 == 0 ? .social : .livestream, district: n % 2 == 0 ? "Quận 1" : "Quận 5",
                    province: "Hồ Chí Minh", usedOffer: order.2, atMs: now - order.0 * day
                ))
                orders += 1
            }
        }
        let segment = try await client.createSegment(CreateSegmentRequest(shopId: shop, name: "Khách thân thiết", match: .all, conditions: [
            SegmentCondition(kind: .purchasedBetween, fromMs: now - 180 * day, toMs: now),
            SegmentCondition(kind: .pointsAtLeast, points: 100),
        ]))
        var referral = "no referral (messaging-svc left out)"
        if let messaging {
            let template = try await messaging.createTemplate(CreateTemplateRequest(
                shopId: shop, channel: .sms, name: "Quà giới thiệu", body: "{{referrer}} tặng bạn mã {{code}} giảm {{discount}} tại Hoa Mai, hạn {{expires}}.",
                purpose: .marketing
            ))
            _ = try await client.createReferralCampaign(CreateReferralCampaignRequest(
                shopId: shop, name: "Bạn mới giảm 50k", offer: ReferralOffer(discountVnd: 50_000, validDays: 30), channel: .sms, templateId: template.templateId
            ))
            let voucher = try await client.submitReferral(SubmitReferralRequest(shopId: shop, orderId: "DH012", friendPhone: "0977 123 456"))
            referral = "voucher \(voucher.code) for 0977123456 \(voucher.sent ? "sent" : "waiting for messaging-svc")"
        }
        let members = try await client.countSegment(SegmentRequest(shopId: shop, segmentId: segment.segmentId)).count
        print("seeded \(shop) loyalty: 3 tiers, \(seeded.customers.count) profiles, \(orders) paid orders, segment \"\(segment.name)\" (\(members) member(s)), \(referral)")
    }

    /// What conversation-svc holds after seeding, as messaging-svc needs it.
    struct Seeded {
        var customers: [(chat: Chat, customerId: String, lastCustomerMessageAtMs: Int64)] = []
    }

    /// A balance, templates, one transactional send and a chatbot scenario. The
    /// events conversation-svc's outbox will deliver (issue 8) are sent here by hand:
    /// each customer's last message (opening Messenger's window) and the tags attached.
    func seedMessaging(_ client: MessagingService.Client, _ seeded: Seeded) async throws {
        if try await !client.listScenarios(ShopRequest(shopId: shop)).scenarios.isEmpty {
            print("\(shop) already has its messaging demo: nothing to seed")
            return
        }
        _ = try await client.topUp(TopUpRequest(shopId: shop, amountVnd: 500_000, paymentRef: "demo-napas-0001"))
        _ = try await client.setAutoTopUp(SetAutoTopUpRequest(shopId: shop, enabled: true, thresholdVnd: 50_000, amountVnd: 200_000))
        let confirmation = try await client.createTemplate(CreateTemplateRequest(
            shopId: shop, channel: .zns, name: "Xác nhận đơn hàng", body: "Chào {{name}}, đơn {{code}} trị giá {{total}} đã được xác nhận.",
            purpose: .transactionUpdate, providerTemplateId: "demo-zns-229"
        ))
        let nudge = try await client.createTemplate(CreateTemplateRequest(
            shopId: shop, channel: .messenger, name: "Nhắc khách quan tâm",
            body: "Dạ shop vẫn giữ mẫu bạn quan tâm, bạn cần tư vấn thêm size không ạ?", purpose: .marketing
        ))
        let lastCall = try await client.createTemplate(CreateTemplateRequest(
            shopId: shop, channel: .messenger, name: "Ưu đãi chốt đơn", body: "Hôm nay shop giảm 10% nếu bạn chốt đơn trước 20h nhé!", purpose: .marketing
        ))
        _ = try await client.createTemplate(CreateTemplateRequest(
            shopId: shop, channel: .sms, name: "Khuyến mãi cuối tuần", body: "{{shop}}: chào {{name}}, cuối tuần giảm 20% toàn bộ váy.", purpose: .marketing
        ))
        let scenario = try await client.createScenario(CreateScenarioRequest(
            shopId: shop, triggerTagName: "Quan tâm",
            steps: [ScenarioStep(delayMs: 0, templateId: nudge.templateId), ScenarioStep(delayMs: 20 * 3_600_000, templateId: lastCall.templateId)],
            channel: .messenger
        ))
        var started = 0
        for customer in seeded.customers {
            _ = try await client.onCustomerMessage(OnCustomerMessageRequest(
                shopId: shop, eventId: "demo-last-message-\(customer.chat.psid)", pageId: "demo-page", customerId: customer.customerId,
                recipient: customer.chat.psid, atMs: customer.lastCustomerMessageAtMs
            ))
            for tag in customer.chat.tags {
                let answer = try await client.onTagAttached(OnTagAttachedRequest(
                    shopId: shop, eventId: "demo-tag-\(customer.chat.psid)-\(tag)", pageId: "demo-page", customerId: customer.customerId, tagName: tag,
                    atMs: Int64(Date().timeIntervalSince1970 * 1000), recipient: customer.chat.psid
                ))
                started += answer.scenarioIds.count
            }
        }
        let sent = try await client.sendMessage(SendMessageRequest(
            shopId: shop, channel: .zns, recipient: "0912345678", templateId: confirmation.templateId,
            params: ["name": "Hoa", "code": "DH1001", "total": "700.000đ"], idempotencyKey: "demo-order-DH1001-confirmed",
            customerId: seeded.customers.first?.customerId ?? ""
        ))
        print("seeded \(shop) messaging: 500,000 VND balance (auto top-up on), 4 templates, order confirmation \(sent.messageId) \(sent.status), scenario \(scenario.scenarioId) started for \(started) customer(s)")
    }

    func seed(_ client: ConversationService.Client) async throws -> Seeded {

        let page = try await client.connectPage(ConnectPageRequest(shopId: shop, pageId: "demo-page", name: "Thời trang Hoa Mai", platform: .facebook))
        guard page.firstConnect else {
            print("\(shop) already has demo-page: nothing to seed")
            return Seeded()
        }
        var seeded = Seeded()
        for staff in ["agent-an", "agent-binh"] {
            _ = try await client.setStaffPresence(SetStaffPresenceRequest(shopId: shop, pageId: "demo-page", staffId: staff, online: true))
        }
        let tags = try await client.listTags(ListTagsRequest(shopId: shop, pageId: "demo-page", includeHidden: true)).folders.flatMap(\.tags)
        let start = Int64(Date().timeIntervalSince1970 * 1000) - 3 * 3_600_000
        var conversations = 0
        for (c, chat) in Self.chats.enumerated() {
            var conversationId = ""
            var customerId = ""
            var assigned = ""
            var lastCustomerMessageAtMs: Int64 = 0
            for (l, line) in chat.lines.enumerated() {
                let at = start + Int64(c * 1_800_000 + l * 240_000)
                let answer = try await client.ingestMessage(IngestMessageRequest(
                    shopId: shop, pageId: "demo-page", customerExternalId: chat.psid, customerName: line.customer ? chat.name : "",
                    kind: .message, sender: line.customer ? .customer : .staff, staffId: line.customer ? "" : (assigned.isEmpty ? "agent-an" : assigned),
                    text: line.text, sentAtMs: at
                ))
                conversationId = answer.conversationId
                customerId = answer.customerId
                if line.customer { lastCustomerMessageAtMs = at }
                if !answer.assignedStaffId.isEmpty { assigned = answer.assignedStaffId }
            }
            for name in chat.tags {
                guard let tag = tags.first(where: { $0.name == name }) else { continue }
                _ = try await client.attachTag(AttachTagRequest(shopId: shop, conversationId: conversationId, tagId: tag.tagId, staffId: assigned))
            }
            if c == 0 {
                _ = try await client.addNote(AddNoteRequest(shopId: shop, customerId: customerId, text: "Khách quen, thích màu trắng, hay mua vào cuối tuần", staffId: assigned))
            }
            conversations += 1
            seeded.customers.append((chat, customerId, lastCustomerMessageAtMs))
        }
        _ = try await client.defineCustomField(DefineCustomFieldRequest(shopId: shop, key: "size", label: "Size thường mặc", type: .select, options: ["S", "M", "L", "XL"]))
        print("seeded \(shop): page demo-page, \(conversations) conversations, tags, a note and a custom field")
        return seeded
    }
}
