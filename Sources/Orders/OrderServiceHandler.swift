import ChatMeshAPI
import Foundation
import MeshChanges
import MeshRPC
import MeshStore
import VietnamCommerce

/// chatmesh.v1.OrderService: decodes, checks (statuses name the field), calls
/// the store, `OrderPlacement` or messaging-svc.
public struct OrderServiceHandler: OrderService.Handler, DrainingService {
    let store: OrderStore
    /// The change feed (WatchChanges); nil where nothing watches (unit tests).
    let changes: ChangeFeed?
    let stallLimit: Duration
    let comments: CommentBatcher
    let placement: OrderPlacement
    let messenger: (any OrderMessenger)?
    let rates: ShippingRateTable
    let links: PaymentLinks
    let now: @Sendable () -> Int64

    /// Where payment and cart pages live: `base` + "o/<order>" and + "c/<cart>".
    public struct PaymentLinks: Sendable {
        public var base: String
        public init(base: String = "https://pay.chatmesh.vn/") {
            self.base = base.hasSuffix("/") ? base : base + "/"
        }
    }

    public init(
        store: OrderStore, loyalty: any LoyaltyCheckout, messenger: (any OrderMessenger)?, rates: ShippingRateTable = .standard,
        links: PaymentLinks = PaymentLinks(), changes: ChangeFeed? = nil, stallLimit: Duration = .seconds(60), now: @escaping @Sendable () -> Int64 = { WallClock.nowMs() }
    ) {
        self.store = store
        self.changes = changes
        self.stallLimit = stallLimit
        comments = CommentBatcher(store: store, now: now)
        placement = OrderPlacement(store: store, loyalty: loyalty)
        self.messenger = messenger
        self.rates = rates
        self.links = links
        self.now = now
    }

    public func beginDraining() async {
        changes?.log.drain()
    }

    /// R-PANEL-4.
    public func watchChanges(_ request: WatchChangesRequest, responses: RPCWriter<WatchChangesResponse>, context: ServerContext) async throws {
        guard let changes else { throw RPCError.unimplemented("this order-svc keeps no change log") }
        try await changes.serve(request, responses: responses, stallLimit: stallLimit)
    }

    static func id(_ value: String, _ field: String) throws(RPCError) -> String { try FieldCheck.id(value, field) }
    static func optionalId(_ value: String, _ field: String) throws(RPCError) -> String { try FieldCheck.optionalId(value, field) }
    static func text(_ value: String, _ field: String, max: Int, required: Bool = true) throws(RPCError) -> String {
        try FieldCheck.text(value, field, max: max, required: required)
    }

    /// The staff member acting (MeshRPC's one rule: agents act as themselves).
    func staff(_ given: String, _ context: ServerContext) throws(RPCError) -> String {
        try context.actingStaff(given)
    }

    // MARK: Catalog and warehouses

    public func upsertProduct(_ request: UpsertProductRequest, context: ServerContext) async throws -> Product {
        _ = try Self.optionalId(request.productId, "product_id")
        let name = try Self.text(request.name, "name", max: 200)
        if request.productId.isEmpty && request.variants.isEmpty { throw RPCError.invalidArgument("variants: a new product needs at least one variant") }
        if request.variants.count > 100 { throw RPCError.invalidArgument("variants: at most 100") }
        var seen: Set<String> = []
        var variants: [Variant] = []
        for (index, v) in request.variants.enumerated() {
            let field = "variants[\(index)]"
            _ = try Self.optionalId(v.variantId, "\(field).variant_id")
            if !v.variantId.isEmpty && !seen.insert(v.variantId).inserted { throw RPCError.invalidArgument("\(field).variant_id: \(v.variantId) is listed twice") }
            var variant = v
            variant.title = try Self.text(v.title, "\(field).title", max: 100, required: false)
            variant.sku = try Self.text(v.sku, "\(field).sku", max: 64, required: false)
            guard (0...10_000_000_000).contains(v.priceVnd) else { throw RPCError.invalidArgument("\(field).price_vnd must be 0 to 10,000,000,000") }
            guard (0...10_000_000).contains(v.stock) else { throw RPCError.invalidArgument("\(field).stock must be 0 to 10,000,000") }
            guard (0...100_000).contains(v.weightG) else { throw RPCError.invalidArgument("\(field).weight_g must be 0 to 100,000") }
            variants.append(variant)
        }
        return try await store.upsertProduct(shop: request.shopId, Product(productId: request.productId, name: name, variants: variants), nowMs: now())
    }

    public func listProducts(_ request: ListProductsRequest, context: ServerContext) async throws -> ListProductsResponse {
        let size = try FieldCheck.pageSize(request.pageSize, default: 50, max: 200)
        let after = try Self.optionalId(request.pageToken, "page_token")
        let query = try Self.text(request.query, "query", max: 200, required: false)
        let products = try await store.products(shop: request.shopId, query: query, after: after, limit: size)
        return ListProductsResponse(products: products, nextPageToken: products.count == size ? products.last!.productId : "")
    }

    public func upsertWarehouse(_ request: UpsertWarehouseRequest, context: ServerContext) async throws -> Warehouse {
        _ = try Self.optionalId(request.warehouseId, "warehouse_id")
        let name = try Self.text(request.name, "name", max: 200)
        let address = try Self.address(request.address, "address")
        return try await store.upsertWarehouse(shop: request.shopId, Warehouse(warehouseId: request.warehouseId, name: name, address: address), nowMs: now())
    }

    static func address(_ given: Address?, _ field: String, street required: Bool = true) throws(RPCError) -> Address {
        guard let given else { throw .invalidArgument("\(field) is required") }
        var a = Address()
        a.street = try text(given.street, "\(field).street", max: 200, required: required)
        a.ward = try text(given.ward, "\(field).ward", max: 100, required: false)
        a.district = try text(given.district, "\(field).district", max: 100)
        a.province = try text(given.province, "\(field).province", max: 100)
        if VietnamRegion(province: a.province) == nil { throw .invalidArgument("\(field).province: \"\(a.province)\" is not a Vietnamese province") }
        return a
    }

    public func listWarehouses(_ request: ListWarehousesRequest, context: ServerContext) async throws -> ListWarehousesResponse {
        let page = try ListPage.of(try await store.warehouses(shop: request.shopId), size: request.pageSize, token: request.pageToken)
        return ListWarehousesResponse(warehouses: page.items, nextPageToken: page.next)
    }

    // MARK: Campaigns and comments (R-CAMP-1..3)

    public func createCampaign(_ request: CreateCampaignRequest, context: ServerContext) async throws -> Campaign {
        let page = try Self.id(request.pageId, "page_id")
        guard [.livestream, .salesPost, .messengerShopping].contains(request.kind) else {
            throw RPCError.invalidArgument("kind must be LIVESTREAM, SALES_POST or MESSENGER_SHOPPING")
        }
        let name = try Self.text(request.name, "name", max: 200)
        let post = try Self.optionalId(request.postId, "post_id")
        if request.items.isEmpty { throw RPCError.invalidArgument("items: a campaign sells at least one item") }
        if request.items.count > 500 { throw RPCError.invalidArgument("items: at most 500") }
        var variants: Set<String> = []
        for (index, item) in request.items.enumerated() {
            let field = "items[\(index)]"
            let key = CommentParser.codeKey(item.code)
            if key.isEmpty || key.count > 16 || key.count != item.code.trimmingCharacters(in: .whitespaces).count {
                throw RPCError.invalidArgument("\(field).code must be 1 to 16 letters and digits, like A12")
            }
            _ = try Self.id(item.variantId, "\(field).variant_id")
            if !variants.insert(item.variantId).inserted { throw RPCError.invalidArgument("\(field).variant_id: \(item.variantId) is listed twice") }
            guard (0...10_000_000_000).contains(item.priceVnd) else { throw RPCError.invalidArgument("\(field).price_vnd must be 0 (catalog price) to 10,000,000,000") }
        }
        return try await store.createCampaign(
            shop: request.shopId,
            Campaign(pageId: page, kind: request.kind, name: name, postId: post, live: request.live, items: request.items),
            nowMs: now()
        )
    }

    public func getCampaign(_ request: GetCampaignRequest, context: ServerContext) async throws -> Campaign {
        try await store.campaign(shop: request.shopId, id: try Self.id(request.campaignId, "campaign_id"))
    }

    public func listCampaigns(_ request: ListCampaignsRequest, context: ServerContext) async throws -> ListCampaignsResponse {
        let size = try FieldCheck.pageSize(request.pageSize, default: 20, max: 100)
        let campaigns = try await store.campaigns(
            shop: request.shopId, pageId: try Self.optionalId(request.pageId, "page_id"), after: try Self.optionalId(request.pageToken, "page_token"), limit: size
        )
        return ListCampaignsResponse(campaigns: campaigns, nextPageToken: campaigns.count == size ? campaigns.last!.campaignId : "")
    }

    public func updateCampaignItemPrice(_ request: UpdateCampaignItemPriceRequest, context: ServerContext) async throws -> Campaign {
        let campaign = try Self.id(request.campaignId, "campaign_id")
        if CommentParser.codeKey(request.code).isEmpty { throw RPCError.invalidArgument("code is required") }
        guard (1...10_000_000_000).contains(request.priceVnd) else { throw RPCError.invalidArgument("price_vnd must be 1 to 10,000,000,000") }
        return try await store.updateCampaignItemPrice(
            shop: request.shopId, campaign: campaign, code: request.code, priceVnd: request.priceVnd, staffId: try staff(request.staffId, context), nowMs: now()
        )
    }

    public func ingestComment(_ request: IngestCommentRequest, context: ServerContext) async throws -> IngestCommentResponse {
        let campaign = try Self.id(request.campaignId, "campaign_id")
        let customer = try Self.id(request.customerId, "customer_id")
        if request.text.count > 2_000 { throw RPCError.invalidArgument("text is longer than 2,000 characters") }
        if request.commentedAtMs < 0 { throw RPCError.invalidArgument("commented_at_ms must not be negative") }
        let nowMs = now()
        let comment = OrderStore.Comment(campaignId: campaign, customerId: customer, text: request.text, atMs: request.commentedAtMs == 0 ? nowMs : request.commentedAtMs)
        let result = try await comments.ingest(shop: request.shopId, comment)
        return IngestCommentResponse(
            intents: result.intents.map { PurchaseIntent(code: $0.code, variantId: $0.variantId, quantity: Int32($0.quantity)) },
            capturedPhone: result.phone ?? "", cartId: result.cartId
        )
    }

    // MARK: Carts (R-CART-1..3)

    public func setCampaignLive(_ request: SetCampaignLiveRequest, context: ServerContext) async throws -> Campaign {
        try await store.setCampaignLive(shop: request.shopId, id: try Self.id(request.campaignId, "campaign_id"), live: request.live)
    }

    public func combineCarts(_ request: CombineCartsRequest, context: ServerContext) async throws -> Cart {
        guard request.cartIds.count >= 2 else { throw RPCError.invalidArgument("cart_ids: at least two carts to combine (R-CART-3)") }
        if request.cartIds.count > 20 { throw RPCError.invalidArgument("cart_ids: at most 20") }
        for (index, cart) in request.cartIds.enumerated() { _ = try Self.id(cart, "cart_ids[\(index)]") }
        if Set(request.cartIds).count != request.cartIds.count { throw RPCError.invalidArgument("cart_ids: a cart is listed twice") }
        let staffId = try staff(request.staffId, context)
        if staffId.isEmpty { throw RPCError.invalidArgument("staff_id is required (R-CART-3: the new cart is named after its staff member)") }
        _ = try Self.optionalId(request.idempotencyKey, "idempotency_key")
        let cart = try await store.combineCarts(
            shop: request.shopId, ids: request.cartIds, name: Self.staffCartName(staffId), staffId: staffId, idempotencyKey: request.idempotencyKey, nowMs: now()
        )
        return withLink(cart)
    }

    /// R-CART-3: what a cart staff put together is called.
    static func staffCartName(_ staffId: String) -> String { "Giỏ hàng của \(staffId)" }

    /// A cart with the link its reminder sends.
    func withLink(_ cart: Cart) -> Cart {
        var cart = cart
        cart.cartLink = links.base + "c/" + cart.cartId
        return cart
    }

    public func listCarts(_ request: ListCartsRequest, context: ServerContext) async throws -> ListCartsResponse {
        let carts = try await store.carts(shop: request.shopId, customer: try Self.id(request.customerId, "customer_id")).map(withLink)
        let page = try ListPage.of(carts, size: request.pageSize, token: request.pageToken)
        return ListCartsResponse(carts: page.items, nextPageToken: page.next)
    }

    public func updateCart(_ request: UpdateCartRequest, context: ServerContext) async throws -> Cart {
        let cart = try Self.id(request.cartId, "cart_id")
        if request.items.count > 100 { throw RPCError.invalidArgument("items: at most 100") }
        var seen: Set<String> = []
        for (index, item) in request.items.enumerated() {
            _ = try Self.id(item.variantId, "items[\(index)].variant_id")
            if !seen.insert(item.variantId).inserted {
                throw RPCError.invalidArgument("items[\(index)].variant_id: \(item.variantId) is already in the cart; change its quantity instead")
            }
            guard (1...999).contains(item.quantity) else { throw RPCError.invalidArgument("items[\(index)].quantity must be 1 to 999") }
        }
        let staffId = try staff(request.staffId, context)
        if staffId.isEmpty { throw RPCError.invalidArgument("staff_id is required (R-CART-1 records who changed a cart)") }
        return withLink(try await store.updateCart(shop: request.shopId, id: cart, items: request.items, staffId: staffId, nowMs: now()))
    }

    public func sendCartReminder(_ request: SendCartReminderRequest, context: ServerContext) async throws -> SendResult {
        let cart = try await store.cart(shop: request.shopId, id: try Self.id(request.cartId, "cart_id"))
        if cart.items.isEmpty { throw RPCError.failedPrecondition("cart_id: cart \(cart.cartId) is empty") }
        try FieldCheck.optionalId(request.idempotencyKey, "idempotency_key")
        let (channel, template) = try await chosenTemplate(request.shopId, channel: request.channel, templateId: request.templateId, use: .cartReminder)
        var recipient = try Self.optionalId(request.recipient, "recipient")
        if recipient.isEmpty && channel != .messenger {
            guard let phone = try await store.commentPhone(shop: request.shopId, customer: cart.customerId) else {
                throw RPCError.failedPrecondition("recipient: the customer left no phone in a comment; give one")
            }
            recipient = phone
        }
        let names = try await store.variantNames(shop: request.shopId, ids: cart.items.map(\.variantId))
        let key = request.idempotencyKey.isEmpty ? "cart:\(cart.cartId):reminder:\(cart.updatedAtMs)" : "cart:\(cart.cartId):" + request.idempotencyKey
        return try await send(
            request.shopId, channel: channel, templateId: template, recipient: recipient, customer: cart.customerId,
            params: OrderMessageParams.cart(cart, names: names, link: withLink(cart).cartLink), key: key
        )
    }

    /// The channel and template a message goes by: the caller's, else the shop's default for
    /// `use` (API.md: a field the service can choose is optional), refused naming template_id
    /// when there is none.
    func chosenTemplate(_ shop: String, channel: Template.Channel, templateId: String, use: MessageDefault.Use) async throws -> (Template.Channel, String) {
        guard templateId.isEmpty else { return (channel, templateId) }
        guard let messenger else { throw RPCError.unavailable("messaging-svc is not configured for this order-svc") }
        let fallback = try await messenger.messageDefault(shop: shop, use: use)
        if channel != .channelUnspecified && channel != fallback.channel {
            throw RPCError.failedPrecondition(
                "template_id: none given, and the shop's default for \(use.protoName) is a \(fallback.channel.protoName) template, not \(channel.protoName)"
            )
        }
        return (fallback.channel, fallback.templateId)
    }

    func send(
        _ shop: String, channel: Template.Channel, templateId: String, recipient: String, customer: String, params: [String: String], key: String
    ) async throws -> SendResult {
        guard [.zns, .sms, .email, .messenger].contains(channel) else { throw RPCError.invalidArgument("channel must be ZNS, SMS, EMAIL or MESSENGER") }
        let template = try Self.id(templateId, "template_id")
        if recipient.isEmpty { throw RPCError.invalidArgument("recipient is required for \(channel.protoName)") }
        guard let messenger else { throw RPCError.unavailable("messaging-svc is not configured for this order-svc") }
        let response = try await messenger.send(SendMessageRequest(
            shopId: shop, channel: channel, recipient: recipient, templateId: template, params: params, idempotencyKey: key, customerId: customer
        ))
        return SendResult(messageId: response.messageId, status: response.status)
    }

    // MARK: Orders (R-ORD-1..6)

    public func createOrder(_ request: CreateOrderRequest, context: ServerContext) async throws -> Order {
        var request = request
        request.customerId = try Self.id(request.customerId, "customer_id")
        if request.items.isEmpty && request.cartIds.isEmpty { throw RPCError.invalidArgument("items or cart_ids: an order needs at least one item") }
        if request.items.count > 200 { throw RPCError.invalidArgument("items: at most 200") }
        if request.cartIds.count > 20 { throw RPCError.invalidArgument("cart_ids: at most 20") }
        for (index, item) in request.items.enumerated() {
            _ = try Self.id(item.variantId, "items[\(index)].variant_id")
            guard (1...999).contains(item.quantity) else { throw RPCError.invalidArgument("items[\(index)].quantity must be 1 to 999") }
        }
        for (index, cart) in request.cartIds.enumerated() { _ = try Self.id(cart, "cart_ids[\(index)]") }
        if Set(request.cartIds).count != request.cartIds.count { throw RPCError.invalidArgument("cart_ids: a cart is listed twice") }
        guard let shipping = request.shipping else { throw RPCError.invalidArgument("shipping is required (R-ORD-6)") }
        var checked = ShippingInfo()
        checked.name = try Self.text(shipping.name, "shipping.name", max: 200)
        guard let phone = VietnamPhone.normalize(shipping.phone) else {
            throw RPCError.invalidArgument("shipping.phone must be a Vietnamese mobile number, not \"\(shipping.phone)\"")
        }
        checked.phone = phone
        checked.address = try Self.address(shipping.address, "shipping.address")
        request.shipping = checked
        guard [.cod, .bankTransfer, .other, .online].contains(request.paymentMethod) else {
            throw RPCError.invalidArgument("payment_method must be COD, BANK_TRANSFER, OTHER or ONLINE")
        }
        if request.channel == .channelUnspecified { request.channel = .social }
        guard [.social, .livestream, .salesPost, .web, .pos].contains(request.channel) else {
            throw RPCError.invalidArgument("channel must be SOCIAL, LIVESTREAM, SALES_POST, WEB or POS")
        }
        if request.redeemPoints < 0 { throw RPCError.invalidArgument("redeem_points must not be negative") }
        _ = try Self.optionalId(request.shippingQuoteId, "shipping_quote_id")
        _ = try Self.optionalId(request.idempotencyKey, "idempotency_key")
        _ = try Self.optionalId(request.pageId, "page_id")
        if !request.voucherCode.isEmpty {
            request.voucherCode = try Self.id(request.voucherCode.trimmingCharacters(in: .whitespaces).uppercased(), "voucher_code")
        }
        return try await placement.place(shop: request.shopId, request, staffId: try staff(request.staffId, context), nowMs: now())
    }

    public func getOrderSummary(_ request: GetOrderSummaryRequest, context: ServerContext) async throws -> OrderSummary {
        let customer = try Self.id(request.customerId, "customer_id")
        return try await store.summary(shop: request.shopId, customer: customer, recent: try Self.recentLimit(request.recentLimit))
    }

    public func getCustomerOrderContext(_ request: GetCustomerOrderContextRequest, context: ServerContext) async throws -> CustomerOrderContext {
        let customer = try Self.id(request.customerId, "customer_id")
        let read = try await store.customerOrderContext(shop: request.shopId, customer: customer, recent: try Self.recentLimit(request.recentLimit))
        return CustomerOrderContext(carts: read.carts.map(withLink), summary: read.summary)
    }

    /// How many recent orders a summary lists: 5 when unset, at most 50.
    static func recentLimit(_ limit: Int32) throws(RPCError) -> Int {
        if limit < 0 { throw RPCError.invalidArgument("recent_limit must not be negative") }
        return limit == 0 ? 5 : min(Int(limit), 50)
    }

    public func getOrder(_ request: GetOrderRequest, context: ServerContext) async throws -> Order {
        try await store.order(shop: request.shopId, id: try Self.id(request.orderId, "order_id"))
    }

    public func markOrderPaid(_ request: MarkOrderPaidRequest, context: ServerContext) async throws -> Order {
        try await store.markPaid(shop: request.shopId, id: try Self.id(request.orderId, "order_id"), nowMs: now())
    }

    public func completeOrder(_ request: CompleteOrderRequest, context: ServerContext) async throws -> Order {
        try await store.complete(shop: request.shopId, id: try Self.id(request.orderId, "order_id"), nowMs: now())
    }

    public func shipOrder(_ request: ShipOrderRequest, context: ServerContext) async throws -> Shipment {
        let order = try Self.id(request.orderId, "order_id")
        guard let carrier = Carrier(named: request.carrier) else {
            throw RPCError.invalidArgument("carrier must be one of \(Carrier.allCases.map(\.rawValue).joined(separator: ", ")), not \"\(request.carrier)\"")
        }
        let warehouse = try Self.id(request.warehouseId, "warehouse_id")
        var code = request.trackingCode.trimmingCharacters(in: .whitespaces)
        if code.isEmpty {
            code = Self.issueTrackingCode(carrier)
        } else if !Carrier.validTrackingCode(code) {
            throw RPCError.invalidArgument("tracking_code must be 6 to 40 letters, digits, dots, dashes or underscores")
        }
        let shipped = try await store.ship(shop: request.shopId, id: order, carrier: carrier, warehouseId: warehouse, trackingCode: code, nowMs: now())
        return shipped.shipment ?? Shipment()
    }

    /// A code in the carrier's usual shape, for shops that ship without one from the carrier yet.
    static func issueTrackingCode(_ carrier: Carrier) -> String {
        var random = SystemRandomNumberGenerator()
        let digits = (0..<10).map { _ in String(Int.random(in: 0...9, using: &random)) }.joined()
        return switch carrier {
        case .ghn: "GY" + digits
        case .ghtk: "S" + digits
        case .viettelPost: "VTP" + digits
        case .jtExpress: "85" + digits
        case .ninjaVan: "NVVN" + digits
        case .vnpost: "EP" + digits.prefix(9) + "VN"
        case .bestExpress: "66" + digits
        }
    }

    public func sendOrderConfirmation(_ request: SendOrderConfirmationRequest, context: ServerContext) async throws -> SendResult {
        let order = try await store.order(shop: request.shopId, id: try Self.id(request.orderId, "order_id"))
        if order.status == .cancelled { throw RPCError.failedPrecondition("order_id: order \(order.orderId) was cancelled") }
        try FieldCheck.optionalId(request.idempotencyKey, "idempotency_key")
        let recipient = try Self.optionalId(request.recipient, "recipient")
        let key = "order:\(order.orderId):confirmation" + (request.idempotencyKey.isEmpty ? "" : ":" + request.idempotencyKey)
        let (channel, template) = try await chosenTemplate(request.shopId, channel: request.channel, templateId: request.templateId, use: .orderConfirmation)
        return try await send(
            request.shopId, channel: channel, templateId: template,
            recipient: recipient.isEmpty && channel != .messenger ? order.shipping?.phone ?? "" : recipient, customer: order.customerId,
            params: OrderMessageParams.order(order), key: key
        )
    }

    public func cancelOrder(_ request: CancelOrderRequest, context: ServerContext) async throws -> Order {
        let order = try Self.id(request.orderId, "order_id")
        let reason = try Self.text(request.reason, "reason", max: 500, required: false)
        let staffId = try staff(request.staffId, context)
        if staffId.isEmpty { throw RPCError.invalidArgument("staff_id is required (R-ORD-3 records who cancelled)") }
        return try await store.cancel(shop: request.shopId, id: order, staffId: staffId, reason: reason, nowMs: now())
    }

    public func resendPaymentLink(_ request: ResendPaymentLinkRequest, context: ServerContext) async throws -> SendResult {
        let order = try await store.order(shop: request.shopId, id: try Self.id(request.orderId, "order_id"))
        switch order.paymentMethod {
        case .cod, .bankTransfer, .other:
            throw RPCError.failedPrecondition("order_id: order \(order.orderId) is paid by \(order.paymentMethod.protoName); a payment link is only for ONLINE (R-ORD-5)")
        default: break
        }
        if order.status == .cancelled || order.status == .refunded { throw RPCError.failedPrecondition("order_id: order \(order.orderId) was cancelled") }
        if order.status != .pending { throw RPCError.failedPrecondition("order_id: order \(order.orderId) is already paid") }
        try FieldCheck.optionalId(request.idempotencyKey, "idempotency_key")
        let recipient = try Self.optionalId(request.recipient, "recipient")
        var params = OrderMessageParams.order(order)
        params["link"] = links.base + "o/" + order.orderId
        let minute = now() / 60_000
        let key = "order:\(order.orderId):payment-link:" + (request.idempotencyKey.isEmpty ? "\(minute)" : request.idempotencyKey)
        let (channel, template) = try await chosenTemplate(request.shopId, channel: request.channel, templateId: request.templateId, use: .paymentLink)
        return try await send(
            request.shopId, channel: channel, templateId: template,
            recipient: recipient.isEmpty && channel != .messenger ? order.shipping?.phone ?? "" : recipient, customer: order.customerId,
            params: params, key: key
        )
    }

    // MARK: Shipping and reports

    public func estimateShipping(_ request: EstimateShippingRequest, context: ServerContext) async throws -> EstimateShippingResponse {
        let warehouse = try Self.id(request.warehouseId, "warehouse_id")
        let to = try Self.address(request.to, "to", street: false)
        guard (1...100_000).contains(request.weightG) else { throw RPCError.invalidArgument("weight_g must be 1 to 100,000") }
        guard (0...1_000_000_000).contains(request.codVnd) else { throw RPCError.invalidArgument("cod_vnd must be 0 to 1,000,000,000") }
        let quotes = try await store.estimate(
            shop: request.shopId, warehouseId: warehouse, to: to, weightG: Int(request.weightG), codVnd: request.codVnd, rates: rates, nowMs: now()
        )
        return EstimateShippingResponse(quotes: quotes)
    }

    public func getStaffSalesStats(_ request: GetStaffSalesStatsRequest, context: ServerContext) async throws -> GetStaffSalesStatsResponse {
        guard request.fromMs >= 0, request.toMs > request.fromMs else { throw RPCError.invalidArgument("to_ms must be after from_ms") }
        if request.toMs - request.fromMs > 366 * 86_400_000 { throw RPCError.invalidArgument("to_ms: at most 366 days at a time") }
        try FieldCheck.optionalId(request.pageId, "page_id")
        return GetStaffSalesStatsResponse(
            staff: try await store.staffSales(shop: request.shopId, pageId: request.pageId, fromMs: request.fromMs, toMs: request.toMs)
        )
    }
}
