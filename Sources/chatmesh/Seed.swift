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
/// through messaging-svc; in order-svc a catalog, a livestream whose comments
/// filled carts and orders in every state.
struct Seed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fill a running mesh with a demo shop (idempotent: a page that exists is left as it is)."
    )

    @Option(help: "The demo shop's id.")
    var shop: String = "demo-shop"

    @Option(help: "conversation-svc address (default: CHATMESH_CONVERSATION_ADDRS or \(MeshEnvironment.defaultAddress(of: "conversation"))).")
    var conversation: String?

    @Option(help: "messaging-svc address (default: CHATMESH_MESSAGING_ADDRS or \(MeshEnvironment.defaultAddress(of: "messaging"))); \"none\" to leave it out.")
    var messaging: String?

    @Option(help: "loyalty-svc address (default: CHATMESH_LOYALTY_ADDRS or \(MeshEnvironment.defaultAddress(of: "loyalty"))); \"none\" to leave it out.")
    var loyalty: String?

    @Option(help: "order-svc address (default: CHATMESH_ORDER_ADDRS or \(MeshEnvironment.defaultAddress(of: "order"))); \"none\" to leave it out.")
    var order: String?

    @Flag(help: "The demo shop (what seed always loads; accepted so that scripts can say so).")
    var demo = false

    @Option(help: "Also this many generated customers (deterministic names, phones, orders and comments), for load tests.")
    var customers = 0

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
        let token = TokenSigner(key: env.authKey).mint(shopId: shop, staffId: "owner-lan", role: .owner, validFor: 3600)
        let channel = try HTTP2Channel(addresses: address)
        let client = ConversationService.Client(channel: channel, defaultOptions: .bearer(token, timeout: .seconds(10)))
        let messagingAddress = messaging ?? env.addresses(of: "messaging")
        let messagingChannel = messagingAddress == "none" ? nil : try HTTP2Channel(addresses: messagingAddress)
        let loyaltyAddress = loyalty ?? env.addresses(of: "loyalty")
        let loyaltyChannel = loyaltyAddress == "none" ? nil : try HTTP2Channel(addresses: loyaltyAddress)
        let orderAddress = order ?? env.addresses(of: "order")
        let orderChannel = orderAddress == "none" ? nil : try HTTP2Channel(addresses: orderAddress)
        let closeAll = {
            await channel.close()
            await messagingChannel?.close()
            await loyaltyChannel?.close()
            await orderChannel?.close()
        }
        do {
            let seeded = try await seed(client)
            let messagingClient = messagingChannel.map { MessagingService.Client(channel: $0, defaultOptions: .bearer(token, timeout: .seconds(10))) }
            if let messagingClient {
                try await seedMessaging(messagingClient, seeded)
            }
            let loyaltyClient = loyaltyChannel.map { LoyaltyService.Client(channel: $0, defaultOptions: .bearer(token, timeout: .seconds(10))) }
            var loyaltyFresh = false
            if let loyaltyClient {
                loyaltyFresh = try await seedLoyalty(loyaltyClient, seeded)
            }
            let orderClient = orderChannel.map { OrderService.Client(channel: $0, defaultOptions: .bearer(token, timeout: .seconds(10))) }
            var firstPaid: String?
            if let orderClient {
                firstPaid = try await seedOrders(orderClient, messagingClient, loyaltyClient, seeded)
            }
            if let loyaltyClient, loyaltyFresh {
                try await seedLoyaltyOffers(loyaltyClient, messagingClient, referralOrder: firstPaid)
            }
            if customers > 0 {
                try await seedCustomers(
                    customers, conversation: client,
                    loyalty: loyaltyChannel.map { LoyaltyService.Client(channel: $0, defaultOptions: .bearer(token, timeout: .seconds(10))) },
                    order: orderClient
                )
            }
        } catch {
            await closeAll()
            throw error
        }
        await closeAll()
    }

    /// A catalog, a warehouse, the customers' earlier (web) orders, paid, a livestream whose
    /// comments filled carts, and chat orders in every state (priced by loyalty-svc, confirmed
    /// through messaging-svc). Every order is order-svc's, and loyalty-svc learns of the paid
    /// ones through order-svc's outbox, so the panel's member and order figures agree.
    /// Returns the first paid order (for the referral demo).
    func seedOrders(
        _ client: OrderService.Client, _ messaging: MessagingService.Client?, _ loyalty: LoyaltyService.Client?, _ seeded: Seeded
    ) async throws -> String? {
        if try await !client.listProducts(ListProductsRequest(shopId: shop, pageSize: 1)).products.isEmpty {
            print("\(shop) already has its order demo: nothing to seed")
            return nil
        }
        let shirt = try await client.upsertProduct(UpsertProductRequest(shopId: shop, name: "Áo sơ mi trắng", variants: [
            Variant(sku: "ASM-M", title: "Size M", priceVnd: 350_000, stock: 40, weightG: 300),
            Variant(sku: "ASM-L", title: "Size L", priceVnd: 350_000, stock: 35, weightG: 320),
        ]))
        let dress = try await client.upsertProduct(UpsertProductRequest(shopId: shop, name: "Váy maxi hoa nhí", variants: [
            Variant(sku: "VMX-S", title: "Size S", priceVnd: 450_000, stock: 20, weightG: 400),
            Variant(sku: "VMX-M", title: "Size M", priceVnd: 450_000, stock: 25, weightG: 420),
        ]))
        let skirt = try await client.upsertProduct(UpsertProductRequest(shopId: shop, name: "Chân váy đen", variants: [
            Variant(sku: "CVD-F", title: "Freesize", priceVnd: 280_000, stock: 15, weightG: 250),
        ]))
        let warehouse = try await client.upsertWarehouse(UpsertWarehouseRequest(
            shopId: shop, name: "Kho Quận 1", address: Address(street: "12 Lý Tự Trọng", ward: "Bến Nghé", district: "Quận 1", province: "Hồ Chí Minh")
        ))
        let live = try await client.createCampaign(CreateCampaignRequest(
            shopId: shop, pageId: "demo-page", kind: .livestream, name: "Live thứ Sáu 20h", postId: "demo-live-1", live: true, items: [
                CampaignItem(code: "A1", variantId: shirt.variants[0].variantId, priceVnd: 299_000),
                CampaignItem(code: "A1", variantId: shirt.variants[1].variantId, priceVnd: 299_000),
                CampaignItem(code: "V2", variantId: dress.variants[0].variantId, priceVnd: 399_000),
                CampaignItem(code: "V2", variantId: dress.variants[1].variantId, priceVnd: 399_000),
                CampaignItem(code: "C3", variantId: skirt.variants[0].variantId),
            ]
        ))
        let customers = seeded.customers.map(\.customerId)
        guard customers.count >= 5 else { return nil }
        // Their orders on the web shop before the chats: paid one after the other, each priced
        // at the tier the ones before it earned (so loyalty-svc must have seen each before the next).
        let (shirtM, dressS, dressM) = (shirt.variants[0].variantId, dress.variants[0].variantId, dress.variants[1].variantId)
        let earlier: [(customer: Int, items: [(String, Int32)])] = [
            (0, [(shirtM, 2)]), (0, [(dressM, 2), (shirtM, 1)]), (0, [(shirtM, 2)]),
            (1, [(shirtM, 1)]),
            (3, [(dressS, 3), (shirtM, 3)]), (3, [(dressM, 8)]), (3, [(dressS, 10)]),
        ]
        var firstPaid: String?
        var paidSoFar: [String: Int32] = [:]
        for (n, order) in earlier.enumerated() {
            let customer = customers[order.customer]
            let profile = Self.profiles[seeded.customers[order.customer].chat.psid]
            let placed = try await client.createOrder(CreateOrderRequest(
                shopId: shop, customerId: customer, items: order.items.map { OrderItemRequest(variantId: $0.0, quantity: $0.1) },
                shipping: ShippingInfo(
                    name: seeded.customers[order.customer].chat.name, phone: profile?.phone ?? "",
                    address: Address(street: "12 Lý Tự Trọng", ward: "Bến Nghé", district: n % 2 == 0 ? "Quận 1" : "Quận 5", province: "Hồ Chí Minh")
                ),
                paymentMethod: .online, channel: .web, idempotencyKey: "demo-web-\(n)"
            ))
            _ = try await client.markOrderPaid(MarkOrderPaidRequest(shopId: shop, orderId: placed.orderId))
            firstPaid = firstPaid ?? placed.orderId
            paidSoFar[customer, default: 0] += 1
            if let loyalty {
                try await waitForLoyalty(loyalty, customer: customer, orders: paidSoFar[customer]!)
            }
        }
        let comments: [(Int, String)] = [
            (0, "A1 size L x2 😍"), (1, "V2 giá bao nhiêu shop?"), (1, "chốt V2 M"), (2, "C3 + A1 nha, sđt 0903 111 222"),
            (3, "lấy 3 cái A1 size M"), (4, "shop ơi đẹp quá"), (4, "V2 S x1"),
        ]
        for (who, text) in comments {
            _ = try await client.ingestComment(IngestCommentRequest(shopId: shop, campaignId: live.campaignId, customerId: customers[who], text: text))
        }
        // Orders in every state, from the carts and by hand.
        let shipping = ShippingInfo(
            name: "Nguyễn Thị Hoa", phone: "0912345678", address: Address(street: "12 Lý Tự Trọng", ward: "Bến Nghé", district: "Quận 1", province: "Hồ Chí Minh")
        )
        let quote = try await client.estimateShipping(EstimateShippingRequest(
            shopId: shop, warehouseId: warehouse.warehouseId, to: shipping.address, weightG: 640
        )).quotes.first { $0.carrier == "GHN" }
        let hoaCart = try await client.listCarts(ListCartsRequest(shopId: shop, customerId: customers[0])).carts.map(\.cartId)
        let pending = try await client.createOrder(CreateOrderRequest(
            shopId: shop, customerId: customers[0], cartIds: hoaCart, shipping: shipping, paymentMethod: .online, shippingQuoteId: quote?.quoteId ?? "",
            staffId: "owner-lan", channel: .livestream, idempotencyKey: "demo-order-1"
        ))
        var anh = shipping
        anh.name = "Phạm Minh Anh"
        anh.phone = "0938222444"
        anh.address = Address(street: "88 Nguyễn Trãi", ward: "Phường 3", district: "Quận 5", province: "Hồ Chí Minh")
        func byHand(_ key: String, _ variant: String, _ quantity: Int32, _ method: Order.PaymentMethod) async throws -> Order {
            try await client.createOrder(CreateOrderRequest(
                shopId: shop, customerId: customers[3], items: [OrderItemRequest(variantId: variant, quantity: quantity)], shipping: anh,
                paymentMethod: method, staffId: "staff-minh", channel: .social, idempotencyKey: key, pageId: "demo-page"
            ))
        }
        let paid = try await byHand("demo-order-2", dress.variants[1].variantId, 1, .bankTransfer)
        _ = try await client.markOrderPaid(MarkOrderPaidRequest(shopId: shop, orderId: paid.orderId))
        let shipped = try await byHand("demo-order-3", shirt.variants[0].variantId, 2, .cod)
        _ = try await client.shipOrder(ShipOrderRequest(shopId: shop, orderId: shipped.orderId, carrier: "GHN", warehouseId: warehouse.warehouseId))
        let completed = try await byHand("demo-order-4", skirt.variants[0].variantId, 1, .cod)
        _ = try await client.shipOrder(ShipOrderRequest(shopId: shop, orderId: completed.orderId, carrier: "J&T Express", warehouseId: warehouse.warehouseId))
        _ = try await client.completeOrder(CompleteOrderRequest(shopId: shop, orderId: completed.orderId))
        let cancelled = try await byHand("demo-order-5", dress.variants[0].variantId, 1, .cod)
        _ = try await client.cancelOrder(CancelOrderRequest(shopId: shop, orderId: cancelled.orderId, staffId: "staff-minh", reason: "Khách đổi ý"))
        var confirmation = "no confirmation (messaging-svc left out)"
        if let messaging {
            let template = try await messaging.createTemplate(CreateTemplateRequest(
                shopId: shop, channel: .sms, name: "Xác nhận đơn (SMS)", body: "Hoa Mai: đơn {{order_id}} của {{name}} ({{items}}) tổng {{total}} đã được xác nhận.",
                purpose: .transactionUpdate
            ))
            let sent = try await client.sendOrderConfirmation(SendOrderConfirmationRequest(
                shopId: shop, orderId: pending.orderId, channel: .sms, templateId: template.templateId
            ))
            confirmation = "confirmation \(sent.messageId) \(sent.status)"
        }
        print(
            "seeded \(shop) orders: 3 products, warehouse, \(earlier.count) earlier web orders (paid), livestream \"\(live.name)\" with \(comments.count) comments, "
                + "5 chat orders (pending, paid, shipped, completed, cancelled), \(confirmation)"
        )
        return firstPaid
    }

    /// Waits (up to 30 s) until loyalty-svc has counted `orders` paid orders for the customer:
    /// order-svc's outbox delivers each PAID event a moment after the order is paid.
    func waitForLoyalty(_ loyalty: LoyaltyService.Client, customer: String, orders: Int32) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let member = try? await loyalty.getMember(GetMemberRequest(shopId: shop, customerId: customer)), member.orderCount >= orders { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ValidationError("loyalty-svc has not seen customer \(customer)'s paid order \(orders) after 30 s: is order-svc's outbox delivering?")
    }

    /// Phones and birthdays the demo customers gave (the phones also appear in their chats).
    static let profiles: [String: (phone: String, birthday: String)] = [
        "24680001001": ("0912345678", "1994-11-28"),
        "24680001002": ("0987111333", "1990-03-15"),
        "24680001003": ("0903111222", "1998-12-02"),
        "24680001004": ("0938222444", "1988-07-09"),
        "24680001005": ("", ""),
    ]

    /// A program, tiers and the customers' profiles. The profiles are sent here too
    /// (conversation-svc's outbox sends the same ones when it runs), so that the segment
    /// counts printed later include them at once. False when the shop had its loyalty demo.
    func seedLoyalty(_ client: LoyaltyService.Client, _ seeded: Seeded) async throws -> Bool {
        if try await !client.listTiers(ListTiersRequest(shopId: shop)).tiers.isEmpty {
            print("\(shop) already has its loyalty demo: nothing to seed")
            return false
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
        for customer in seeded.customers {
            let profile = Self.profiles[customer.chat.psid] ?? ("", "")
            _ = try await client.upsertCustomerProfile(UpsertCustomerProfileRequest(
                shopId: shop, customerId: customer.customerId, phone: profile.phone, name: customer.chat.name, birthday: profile.birthday, tags: customer.chat.tags
            ))
        }
        print("seeded \(shop) loyalty: program, 3 tiers, \(seeded.customers.count) profiles")
        return true
    }

    /// A segment of the customers who bought lately, and a referral from the first paid order.
    func seedLoyaltyOffers(_ client: LoyaltyService.Client, _ messaging: MessagingService.Client?, referralOrder: String?) async throws {
        let now = WallClock.nowMs()
        let day: Int64 = 86_400_000
        let segment = try await client.createSegment(CreateSegmentRequest(shopId: shop, name: "Khách thân thiết", match: .all, conditions: [
            SegmentCondition(kind: .purchasedBetween, fromMs: now - 180 * day, toMs: now),
            SegmentCondition(kind: .pointsAtLeast, points: 100),
        ]))
        var referral = "no referral (messaging-svc or order-svc left out)"
        if let messaging, let referralOrder {
            let template = try await messaging.createTemplate(CreateTemplateRequest(
                shopId: shop, channel: .sms, name: "Quà giới thiệu", body: "{{referrer}} tặng bạn mã {{code}} giảm {{discount}} tại Hoa Mai, hạn {{expires}}.",
                purpose: .marketing
            ))
            _ = try await client.createReferralCampaign(CreateReferralCampaignRequest(
                shopId: shop, name: "Bạn mới giảm 50k", offer: ReferralOffer(discountVnd: 50_000, validDays: 30), channel: .sms, templateId: template.templateId
            ))
            let voucher = try await client.submitReferral(SubmitReferralRequest(shopId: shop, orderId: referralOrder, friendPhone: "0977 123 456"))
            referral = "voucher \(voucher.code) for 0977123456 \(voucher.sent ? "sent" : "waiting for messaging-svc")"
        }
        let members = try await client.countSegment(SegmentRequest(shopId: shop, segmentId: segment.segmentId)).count
        print("seeded \(shop) loyalty offers: segment \"\(segment.name)\" (\(members) member(s)), \(referral)")
    }

    /// What conversation-svc holds after seeding, as messaging-svc needs it.
    struct Seeded {
        var customers: [(chat: Chat, customerId: String, lastCustomerMessageAtMs: Int64)] = []
    }

    /// A balance, templates, one transactional send and a chatbot scenario. The
    /// events conversation-svc's outbox will deliver (issue 8) are sent here by hand:
    /// each customer's last message (opening Messenger's window) and the tags attached.
    func seedMessaging(_ client: MessagingService.Client, _ seeded: Seeded) async throws {
        if try await !client.listScenarios(ListScenariosRequest(shopId: shop)).scenarios.isEmpty {
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
                    atMs: WallClock.nowMs(), recipient: customer.chat.psid
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
        let start = WallClock.nowMs() - 3 * 3_600_000
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
            if let birthday = Self.profiles[chat.psid]?.birthday, !birthday.isEmpty {
                _ = try await client.updateCustomer(UpdateCustomerRequest(shopId: shop, customerId: customerId, birthday: birthday, updateFields: ["birthday"]))
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
