import ChatMeshAPI
import Conversations
import Foundation
@testable import Gateway
import Loyalty
import MeshRPC
import MeshStore
import MeshTestSupport
import NIOCore
import Orders
import Synchronization
import Testing

/// A channel a test can slow down or cut, in front of a real in-process service.
final class ControllableChannel: RPCChannel {
    enum Mode: Sendable {
        case normal, slow(Duration), down
        /// A server built before `method` existed.
        case without(MethodDescriptor)
    }
    let inner: any RPCChannel
    let mode = Mutex<Mode>(.normal)
    /// The methods called through it, in order.
    let called = Mutex<[String]>([])

    init(_ inner: any RPCChannel) {
        self.inner = inner
    }

    /// Slow as a late server is: the caller's deadline still ends the wait when it comes first.
    func unary(_ request: ClientRequest) async throws(RPCError) -> ByteBuffer {
        called.withLock { $0.append(request.method.method) }
        switch mode.withLock({ $0 }) {
        case .normal: break
        case .without(let method):
            if request.method == method { throw RPCError.unimplemented("method \(method.path) not found") }
        case .slow(let delay):
            let left = request.deadline.map { Duration.nanoseconds(($0 - .now()).nanoseconds) }
            if let left, left < delay {
                try? await Task.sleep(for: left)
                throw RPCError.deadlineExceeded("no answer before the deadline")
            }
            try? await Task.sleep(for: delay)
        case .down: throw RPCError.unavailable("connection refused")
        }
        return try await inner.unary(request)
    }
}

/// conversation-, order- and loyalty-svc as their real handlers on SQLite, each
/// behind a router checking tokens, and the gateway in front of them.
struct PanelMesh {
    static let shop = "shop-g"
    static let key = "gateway-tests-key"
    let databases: [any SQLStore]
    /// What the gateway reaches conversation-svc through (the seed's client goes around it).
    let conversationChannel: ControllableChannel
    let loyaltyChannel: ControllableChannel
    let orderChannel: ControllableChannel
    let gateway: PanelService.Client
    let conversation: ConversationService.Client
    let order: OrderService.Client
    let loyalty: LoyaltyService.Client

    /// - Parameter sectionTimeout: how long the gateway waits for a section; a test that wants whole panels
    ///   gives a long one, so that a loaded machine (CI, a busy loop per core) does not drop a section.
    static func run(sectionTimeout: Duration = .seconds(10), _ body: (PanelMesh) async throws -> Void) async throws {
        let conversationDB = try await TestDatabase.open("conversation")
        let orderDB = try await TestDatabase.open("order")
        let loyaltyDB = try await TestDatabase.open("loyalty")
        let verifier = TokenVerifier(key: key)
        let conversationChannel = InProcessChannel(router: RPCRouter(
            services: [ConversationServiceHandler(store: try await SQLConversationStore.open(conversationDB))], verifier: verifier
        ))
        let loyaltyStore = try await LoyaltyStore.open(loyaltyDB)
        let loyaltyChannel = ControllableChannel(InProcessChannel(router: RPCRouter(
            services: [LoyaltyServiceHandler(store: loyaltyStore, vouchers: nil)], verifier: verifier
        )))
        let orderServer = InProcessChannel(router: RPCRouter(
            services: [OrderServiceHandler(store: try await OrderStore.open(orderDB), loyalty: LoyaltyServiceCheckout(channel: loyaltyChannel), messenger: nil)],
            verifier: verifier
        ))
        let gatewaysConversationChannel = ControllableChannel(conversationChannel)
        let gatewaysOrderChannel = ControllableChannel(orderServer)
        let composer = PanelComposer(
            clients: .init(conversation: gatewaysConversationChannel, order: gatewaysOrderChannel, loyalty: loyaltyChannel), sectionTimeout: sectionTimeout
        )
        let gatewayChannel = InProcessChannel(router: RPCRouter(services: [PanelServiceHandler(composer: composer)], verifier: verifier))
        let options = CallOptions.bearer(token(shop))
        let mesh = PanelMesh(
            databases: [conversationDB, orderDB, loyaltyDB], conversationChannel: gatewaysConversationChannel, loyaltyChannel: loyaltyChannel,
            orderChannel: gatewaysOrderChannel,
            gateway: PanelService.Client(channel: gatewayChannel, defaultOptions: options),
            conversation: ConversationService.Client(channel: conversationChannel, defaultOptions: options),
            order: OrderService.Client(channel: orderServer, defaultOptions: options),
            loyalty: LoyaltyService.Client(channel: loyaltyChannel, defaultOptions: options)
        )
        do {
            try await body(mesh)
        } catch {
            for db in mesh.databases { try? await db.close() }
            throw error
        }
        for db in mesh.databases { try await db.close() }
    }

    static func token(_ shop: String) -> String {
        TokenSigner(key: key).mint(shopId: shop, staffId: "lan", role: .owner)
    }

    /// A page, Hoa's conversation with a tag, a note and a custom field; a product, a
    /// livestream cart and an order; a loyalty program with a tier she reached.
    func seed() async throws -> (conversation: String, customer: String) {
        let shop = Self.shop
        _ = try await conversation.connectPage(ConnectPageRequest(shopId: shop, pageId: "page-1", name: "Hoa Mai", platform: .facebook))
        let message = try await conversation.ingestMessage(IngestMessageRequest(
            shopId: shop, pageId: "page-1", customerExternalId: "psid-1", customerName: "Nguyễn Thị Hoa", kind: .message, sender: .customer,
            text: "Shop ơi áo còn size M không, sđt em 0912 345 678"
        ))
        let tags = try await conversation.listTags(ListTagsRequest(shopId: shop, pageId: "page-1")).folders.flatMap(\.tags)
        _ = try await conversation.attachTag(AttachTagRequest(shopId: shop, conversationId: message.conversationId, tagId: tags[0].tagId))
        _ = try await conversation.addNote(AddNoteRequest(shopId: shop, customerId: message.customerId, text: "Khách quen, thích màu trắng"))
        _ = try await conversation.defineCustomField(DefineCustomFieldRequest(shopId: shop, key: "size_ao", label: "Size áo", type: .text))
        _ = try await conversation.setCustomFieldValue(SetCustomFieldValueRequest(shopId: shop, customerId: message.customerId, key: "size_ao", value: "M"))

        _ = try await loyalty.configureProgram(ConfigureProgramRequest(shopId: shop, earnVndPerPoint: 10_000, redeemVndPerPoint: 1_000))
        _ = try await loyalty.upsertTier(UpsertTierRequest(shopId: shop, name: "Bạc", minSpendVnd: 1_000_000, discountPercent: 5, combinable: true))
        _ = try await loyalty.recordOrderEvent(RecordOrderEventRequest(
            shopId: shop, eventId: "e1", orderId: "old-1", customerId: message.customerId, kind: .paid, amountVnd: 1_500_000
        ))

        let shirt = try await order.upsertProduct(UpsertProductRequest(shopId: shop, name: "Áo sơ mi", variants: [
            Variant(title: "Size M", priceVnd: 300_000, stock: 10, weightG: 300),
        ]))
        let live = try await order.createCampaign(CreateCampaignRequest(
            shopId: shop, pageId: "page-1", kind: .livestream, name: "Live 20h", items: [CampaignItem(code: "A1", variantId: shirt.variants[0].variantId)]
        ))
        _ = try await order.ingestComment(IngestCommentRequest(shopId: shop, campaignId: live.campaignId, customerId: message.customerId, text: "A1 x2"))
        _ = try await order.createOrder(CreateOrderRequest(
            shopId: shop, customerId: message.customerId, items: [OrderItemRequest(variantId: shirt.variants[0].variantId, quantity: 1)],
            shipping: ShippingInfo(name: "Hoa", phone: "0912345678", address: Address(street: "1 Lê Lợi", district: "Quận 1", province: "Hồ Chí Minh")),
            paymentMethod: .cod
        ))
        return (message.conversationId, message.customerId)
    }
}

@Suite struct PanelComposerTests {
    @Test func aWholePanelFromTheThreeServices() async throws {
        try await PanelMesh.run { mesh in
            let (conversation, customer) = try await mesh.seed()
            let panel = try await mesh.gateway.getPanel(GetPanelRequest(shopId: PanelMesh.shop, pageId: "page-1", conversationId: conversation))
            #expect(panel.unavailableSections.isEmpty)
            #expect(panel.conversation?.conversationId == conversation)
            #expect(panel.customer?.name == "Nguyễn Thị Hoa" && panel.customer?.phone == "0912345678")
            #expect(panel.tags?.attached.count == 1)
            #expect(panel.tags.map { Set($0.available.map(\.tagId)).isDisjoint(with: $0.attached.map(\.tagId)) } == true)
            #expect((panel.tags?.available.count ?? 0) > 10)
            #expect(panel.carts.count == 1 && panel.carts[0].campaignName == "Live 20h" && panel.carts[0].totalVnd == 600_000)
            #expect(panel.orderSummary?.stats?.orderCount == 1 && panel.orderSummary?.recent.first?.tierDiscountVnd == 15_000)
            #expect(panel.notes.map(\.text) == ["Khách quen, thích màu trắng"])
            #expect(panel.customFields.map(\.value) == ["M"])
            #expect(panel.activity.count == 1)
            #expect(panel.member?.customerId == customer && panel.member?.tierName == "Bạc" && panel.member?.points == 150)
        }
    }

    /// order-svc's two sections come from one call; an order-svc that predates it (a rolling upgrade)
    /// gets the two calls it knows, and the panel is the same; order-svc down costs both its sections.
    @Test func orderServicesSectionsComeFromOneCallOrTwoOnAnOlderServer() async throws {
        try await PanelMesh.run(sectionTimeout: .seconds(5)) { mesh in
            let (conversation, customer) = try await mesh.seed()
            let request = GetPanelRequest(shopId: PanelMesh.shop, conversationId: conversation)
            let panel = try await mesh.gateway.getPanel(request)
            #expect(mesh.orderChannel.called.withLock { $0 } == ["GetCustomerOrderContext"])
            #expect(panel.unavailableSections.isEmpty && panel.carts.count == 1 && panel.orderSummary?.stats?.orderCount == 1)
            // The same sections as order-svc's own two RPCs answer.
            let carts = try await mesh.order.listCarts(ListCartsRequest(shopId: PanelMesh.shop, customerId: customer)).carts
            let summary = try await mesh.order.getOrderSummary(GetOrderSummaryRequest(shopId: PanelMesh.shop, customerId: customer, recentLimit: 5))
            #expect(panel.carts == carts && panel.orderSummary == summary)

            mesh.orderChannel.called.withLock { $0 = [] }
            mesh.orderChannel.mode.withLock { $0 = .without(OrderService.Method.getCustomerOrderContext) }
            let older = try await mesh.gateway.getPanel(request)
            #expect(mesh.orderChannel.called.withLock { $0.sorted() } == ["GetCustomerOrderContext", "GetOrderSummary", "ListCarts"])
            #expect(older.unavailableSections.isEmpty && older.carts == carts && older.orderSummary == summary)

            mesh.orderChannel.mode.withLock { $0 = .down }
            let without = try await mesh.gateway.getPanel(request)
            #expect(without.unavailableSections.map { "\($0.section) \($0.code)" } == ["carts UNAVAILABLE", "order_summary UNAVAILABLE"])
            #expect(without.carts.isEmpty && without.orderSummary == nil && without.member != nil && without.customer != nil)
        }
    }

    @Test func aSlowOrDownLoyaltyCostsOnlyTheMemberSection() async throws {
        // Sections get 2 s: long enough for the answering services on a loaded machine, far shorter than
        // the slow loyalty-svc's 60 s.
        try await PanelMesh.run(sectionTimeout: .seconds(2)) { mesh in
            let (conversation, _) = try await mesh.seed()
            mesh.loyaltyChannel.mode.withLock { $0 = .slow(.seconds(60)) }
            let started = ContinuousClock.now
            var panel = try await mesh.gateway.getPanel(GetPanelRequest(shopId: PanelMesh.shop, conversationId: conversation))
            #expect(ContinuousClock.now - started < .seconds(30))
            #expect(panel.member == nil && panel.unavailableSections.map(\.section) == ["member"])
            #expect(panel.unavailableSections.first?.code == "DEADLINE_EXCEEDED")
            #expect(panel.customer != nil && panel.carts.count == 1 && panel.orderSummary != nil)

            mesh.loyaltyChannel.mode.withLock { $0 = .down }
            panel = try await mesh.gateway.getPanel(GetPanelRequest(shopId: PanelMesh.shop, conversationId: conversation))
            #expect(panel.unavailableSections.map { "\($0.section) \($0.code)" } == ["member UNAVAILABLE"])
            mesh.loyaltyChannel.mode.withLock { $0 = .normal }
            panel = try await mesh.gateway.getPanel(GetPanelRequest(shopId: PanelMesh.shop, conversationId: conversation))
            #expect(panel.unavailableSections.isEmpty && panel.member != nil)
        }
    }

    /// Without conversation-svc there is no panel, so a late answer from it is waited for (up to ten
    /// section deadlines: 10 s here) and served whole; past that the panel is DEADLINE_EXCEEDED, not hung.
    @Test func aLateConversationServiceIsWaitedForUpToItsOwnDeadline() async throws {
        try await PanelMesh.run(sectionTimeout: .seconds(1)) { mesh in
            let (conversation, _) = try await mesh.seed()
            mesh.conversationChannel.mode.withLock { $0 = .slow(.seconds(3)) }
            let panel = try await mesh.gateway.getPanel(GetPanelRequest(shopId: PanelMesh.shop, conversationId: conversation))
            #expect(panel.unavailableSections.isEmpty)
            #expect(panel.conversation?.conversationId == conversation && panel.customer != nil && panel.notes.count == 1)
            #expect(panel.carts.count == 1 && panel.member != nil)

            mesh.conversationChannel.mode.withLock { $0 = .slow(.seconds(120)) }
            let started = ContinuousClock.now
            await expectStatus(.deadlineExceeded, naming: "deadline") {
                _ = try await mesh.gateway.getPanel(GetPanelRequest(shopId: PanelMesh.shop, conversationId: conversation))
            }
            let waited = ContinuousClock.now - started
            #expect(waited >= .seconds(10) && waited < .seconds(60), "\(waited)")
        }
    }

    @Test func anotherShopsConversationIsRefused() async throws {
        try await PanelMesh.run { mesh in
            let (conversation, _) = try await mesh.seed()
            let stranger = PanelService.Client(channel: mesh.gateway.channel, defaultOptions: .bearer(PanelMesh.token("shop-x")))
            await expectStatus(.permissionDenied, naming: "shop_id") {
                _ = try await stranger.getPanel(GetPanelRequest(shopId: PanelMesh.shop, conversationId: conversation))
            }
            await expectStatus(.notFound, naming: "conversation") {
                _ = try await stranger.getPanel(GetPanelRequest(shopId: "shop-x", conversationId: conversation))
            }
            await expectStatus(.notFound, naming: "conversation_id") {
                _ = try await mesh.gateway.getPanel(GetPanelRequest(shopId: PanelMesh.shop, pageId: "page-other", conversationId: conversation))
            }
        }
    }

    /// GetStaffReport through the gateway's handler: one page's conversation figures joined
    /// with the sales of orders made from that page's chats (R-REP-2).
    @Test func theStaffReportOfAPageThroughTheGateway() async throws {
        try await PanelMesh.run { mesh in
            let seeded = try await mesh.seed()
            let shop = PanelMesh.shop
            // Lan replies to Hoa on page-1 and makes an order from that chat; the seed's order belongs to no page.
            _ = try await mesh.conversation.ingestMessage(IngestMessageRequest(
                shopId: shop, pageId: "page-1", customerExternalId: "psid-1", kind: .message, sender: .staff, staffId: "lan", text: "Dạ còn ạ"
            ))
            let products = try await mesh.order.listProducts(ListProductsRequest(shopId: shop)).products
            let made = try await mesh.order.createOrder(CreateOrderRequest(
                shopId: shop, customerId: seeded.customer, items: [OrderItemRequest(variantId: products[0].variants[0].variantId, quantity: 2)],
                shipping: ShippingInfo(name: "Hoa", phone: "0912345678", address: Address(street: "1 Lê Lợi", district: "Quận 1", province: "Hồ Chí Minh")),
                paymentMethod: .cod, pageId: "page-1"
            ))
            let now = WallClock.nowMs()
            let report = try await mesh.gateway.getStaffReport(GetStaffReportRequest(shopId: shop, pageId: "page-1", fromMs: now - 3_600_000, toMs: now + 60_000))
            #expect(report.unavailableSections.isEmpty)
            let lan = try #require(report.rows.first { $0.staffId == "lan" })
            #expect(lan.orders == 1 && lan.products == 2 && lan.revenueVnd == made.totalVnd && lan.customersReplied == 1 && lan.closingEfficiency == 1)
            // Another page: neither the reply nor the order.
            let other = try await mesh.gateway.getStaffReport(GetStaffReportRequest(shopId: shop, pageId: "page-2", fromMs: now - 3_600_000, toMs: now + 60_000))
            #expect(other.rows.allSatisfy { $0.orders == 0 && $0.customersReplied == 0 })
            await expectStatus(.invalidArgument, naming: "page_id") {
                _ = try await mesh.gateway.getStaffReport(GetStaffReportRequest(shopId: shop, fromMs: 1, toMs: 2))
            }
            await expectStatus(.invalidArgument, naming: "to_ms") {
                _ = try await mesh.gateway.getStaffReport(GetStaffReportRequest(shopId: shop, pageId: "page-1", fromMs: 5, toMs: 2))
            }
        }
    }

    @Test func theStaffReportJoinsConversationAndSalesFigures() {
        let rows = StaffReport.rows(
            conversation: [
                StaffConversationStats(staffId: "lan", avgResponseMs: 42_000, assignedAuto: 3, assignedManual: 2, closed: 4, commentsReplied: 6,
                                       messagesReplied: 20, customersReplied: 8),
                StaffConversationStats(staffId: "minh", avgResponseMs: 90_000, assignedAuto: 1, closed: 1, messagesReplied: 3, customersReplied: 0),
            ],
            sales: [
                StaffSalesStats(staffId: "lan", orders: 6, products: 9, revenueVnd: 2_400_000, customers: 5),
                StaffSalesStats(staffId: "tu", orders: 1, products: 1, revenueVnd: 300_000, customers: 1),
            ]
        )
        #expect(rows.map(\.staffId) == ["lan", "tu", "minh"])
        #expect(rows[0].assigned == 5 && rows[0].closingEfficiency == 0.75 && rows[0].revenueVnd == 2_400_000 && rows[0].avgResponseMs == 42_000)
        #expect(rows[1].closingEfficiency == 0 && rows[1].customersReplied == 0)
        #expect(rows[2].orders == 0 && rows[2].closingEfficiency == 0)
        #expect(StaffReport.rows(conversation: nil, sales: [StaffSalesStats(staffId: "a", orders: 2)]).map(\.orders) == [2])
    }
}
