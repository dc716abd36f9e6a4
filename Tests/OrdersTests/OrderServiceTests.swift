import ChatMeshAPI
import Foundation
@testable import Orders
import MeshRPC
import MeshStore
import MeshTestSupport
import Testing

/// OrderService through its router (tokens, shop scope) on SQLite, with loyalty-svc
/// and messaging-svc scripted.
@Suite struct OrderServiceTests {
    static let shop = OrderHarness.shop

    /// A livestream selling A12 (M and L at 199,000đ) and B3 (the bag at its catalog 480,000đ).
    static func livestream(_ h: OrderHarness, _ s: OrderHarness.Shop) async throws -> Campaign {
        try await h.client.createCampaign(CreateCampaignRequest(
            shopId: shop, pageId: "page-1", kind: .livestream, name: "Live tối 25/11", postId: "live-123", live: true,
            items: [
                CampaignItem(code: "A12", variantId: s.shirtM, priceVnd: 199_000), CampaignItem(code: "A12", variantId: s.shirtL, priceVnd: 199_000),
                CampaignItem(code: "B3", variantId: s.bag),
            ]
        ))
    }

    static func comment(_ h: OrderHarness, _ campaign: String, _ customer: String, _ text: String) async throws -> IngestCommentResponse {
        try await h.client.ingestComment(IngestCommentRequest(shopId: shop, campaignId: campaign, customerId: customer, text: text))
    }

    @Test func aScriptedLivestreamFillsCartsAndStatsMatchHandComputedFigures() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            let live = try await Self.livestream(h, s)
            #expect(live.items.map(\.priceVnd) == [199_000, 199_000, 480_000])
            let script: [(String, String, Int)] = [
                ("cu1", "A12 x2", 1), ("cu1", "B3", 1), ("cu2", "a12 size L 2c sđt 0987654321", 1), ("cu3", "A12 giá bao nhiêu?", 0),
                ("cu3", "ok chốt A12 L", 1), ("cu4", "shop ơi đẹp quá 0903111222", 0), ("cu2", "thêm A12 x1", 1), ("cu5", "Z9 x3", 0),
            ]
            for (customer, text, intents) in script {
                let answer = try await Self.comment(h, live.campaignId, customer, text)
                #expect(answer.intents.count == intents, "\(text)")
                #expect(answer.cartId.isEmpty == (intents == 0))
            }
            #expect(try await Self.comment(h, live.campaignId, "cu2", "A12 L x1 nha").capturedPhone == "")
            // cu1: 2 × 199,000 + 480,000 = 878,000; cu2: 3 × 199,000 (L×3 then M×1: 2 L + 1 L + 1 M = 4) — counted below.
            let cu2 = try await h.client.listCarts(ListCartsRequest(shopId: Self.shop, customerId: "cu2")).carts
            #expect(cu2.count == 1 && cu2[0].campaignName == "Live tối 25/11")
            #expect(Dictionary(uniqueKeysWithValues: cu2[0].items.map { ($0.variantId, $0.quantity) }) == [s.shirtL: 3, s.shirtM: 1])
            // Revenue: cu1 878,000 + cu2 4 × 199,000 = 796,000 + cu3 199,000 = 1,873,000.
            var stats = try await h.client.getCampaign(GetCampaignRequest(shopId: Self.shop, campaignId: live.campaignId)).stats!
            #expect(stats.estimatedRevenueVnd == 1_873_000)
            #expect(stats.draftOrders == 3 && stats.customers == 5 && stats.customersWithPhone == 2)

            // A12 down to 179,000: the open carts follow. 878,000 − 40,000 + 4 × −20,000 + −20,000 = 1,733,000.
            _ = try await h.client.updateCampaignItemPrice(UpdateCampaignItemPriceRequest(shopId: Self.shop, campaignId: live.campaignId, code: "a12", priceVnd: 179_000))
            stats = try await h.client.getCampaign(GetCampaignRequest(shopId: Self.shop, campaignId: live.campaignId)).stats!
            #expect(stats.estimatedRevenueVnd == 1_733_000)
            let listed = try await h.client.listCampaigns(ListCampaignsRequest(shopId: Self.shop, pageId: "page-1")).campaigns
            #expect(listed.map(\.campaignId) == [live.campaignId] && listed[0].stats?.draftOrders == 3)
            await expectStatus(.notFound, naming: "code") {
                _ = try await h.client.updateCampaignItemPrice(UpdateCampaignItemPriceRequest(shopId: Self.shop, campaignId: live.campaignId, code: "C9", priceVnd: 1))
            }
        }
    }

    @Test func aBurstOfConcurrentCommentsLosesNothingAndAWrongOneFailsAlone() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            let live = try await Self.livestream(h, s)
            let client = h.client
            let failures = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<300 {
                    group.addTask {
                        let campaign = i == 150 ? "cmp_gone" : live.campaignId
                        do {
                            _ = try await client.ingestComment(IngestCommentRequest(shopId: Self.shop, campaignId: campaign, customerId: "cu\(i % 60)", text: "A12 x1"))
                            return false
                        } catch let error as RPCError where error.code == .notFound {
                            return true
                        }
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(failures == 1)
            // 299 comments: customer 30 (i = 150 failed) has 4 shirts, everyone else 5.
            for customer in ["cu0", "cu30", "cu59"] {
                let carts = try await h.client.listCarts(ListCartsRequest(shopId: Self.shop, customerId: customer)).carts
                #expect(carts.count == 1 && carts[0].items.map(\.quantity) == [customer == "cu30" ? 4 : 5], "\(customer)")
            }
            let stats = try await h.client.getCampaign(GetCampaignRequest(shopId: Self.shop, campaignId: live.campaignId)).stats!
            #expect(stats.draftOrders == 60 && stats.customers == 60 && stats.estimatedRevenueVnd == 299 * 199_000)
        }
    }

    @Test func cartsGatherAcrossCampaignsRecordStaffAndCombineIntoOneOrder() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            let live = try await Self.livestream(h, s)
            let post = try await h.client.createCampaign(CreateCampaignRequest(
                shopId: Self.shop, pageId: "page-1", kind: .salesPost, name: "Tin bán hàng túi da", items: [CampaignItem(code: "T1", variantId: s.bag, priceVnd: 450_000)]
            ))
            _ = try await Self.comment(h, live.campaignId, "cu1", "A12 x2 + B3")
            _ = try await Self.comment(h, post.campaignId, "cu1", "chốt T1")
            var carts = try await h.client.listCarts(ListCartsRequest(shopId: Self.shop, customerId: "cu1")).carts
            #expect(Set(carts.map(\.campaignName)) == ["Live tối 25/11", "Tin bán hàng túi da"])
            let liveCart = carts.first { $0.campaignId == live.campaignId }!
            let postCart = carts.first { $0.campaignId == post.campaignId }!
            #expect(liveCart.totalVnd == 2 * 199_000 + 480_000 && postCart.totalVnd == 450_000 && liveCart.updatedByStaffId == "")

            // The bag in both carts: one order may not hold it twice (R-CART-3).
            let before = try await h.rowCounts()
            await expectStatus(.invalidArgument, naming: "cart_ids[1]") {
                _ = try await h.client.createOrder(CreateOrderRequest(
                    shopId: Self.shop, customerId: "cu1", cartIds: [liveCart.cartId, postCart.cartId], shipping: OrderHarness.shipping, paymentMethod: .cod
                ))
            }
            #expect(try await h.rowCounts() == before)
            // Minh swaps the post's bag for a shirt L; the cart says who changed it and takes the catalog price.
            let edited = try await h.client(staff: "minh").updateCart(UpdateCartRequest(
                shopId: Self.shop, cartId: postCart.cartId, items: [CartItem(variantId: s.shirtL, quantity: 1)]
            ))
            #expect(edited.updatedByStaffId == "minh" && edited.totalVnd == 250_000)
            await expectStatus(.invalidArgument, naming: "items[1].variant_id") {
                _ = try await h.client.updateCart(UpdateCartRequest(
                    shopId: Self.shop, cartId: postCart.cartId, items: [CartItem(variantId: s.shirtL, quantity: 1), CartItem(variantId: s.shirtL, quantity: 2)]
                ))
            }
            let order = try await h.client.createOrder(CreateOrderRequest(
                shopId: Self.shop, customerId: "cu1", cartIds: [liveCart.cartId, postCart.cartId], shipping: OrderHarness.shipping, paymentMethod: .cod,
                channel: .livestream, idempotencyKey: "combine-1"
            ))
            #expect(order.subtotalVnd == 2 * 199_000 + 480_000 + 250_000)
            #expect(order.items.count == 3 && order.createdByStaffId == "lan" && order.status == .pending)
            carts = try await h.client.listCarts(ListCartsRequest(shopId: Self.shop, customerId: "cu1")).carts
            #expect(carts.isEmpty)
            await expectStatus(.failedPrecondition, naming: "cart_id") {
                _ = try await h.client.updateCart(UpdateCartRequest(shopId: Self.shop, cartId: liveCart.cartId, items: []))
            }
        }
    }

    @Test func createOrderPricesWithLoyaltyReservesStockUsesAQuoteOnceAndIsIdempotent() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            h.loyalty.state.withLock { $0.discountPercent = 5; $0.balances["cu1"] = 100 }
            // 1,320 g from Quận 1 to Quận 5 (same province): GHN Chuẩn 20,500 + 2 steps × 2,500 = 25,500.
            let quotes = try await h.client.estimateShipping(EstimateShippingRequest(
                shopId: Self.shop, warehouseId: s.warehouse, to: OrderHarness.shipping.address, weightG: 1_320
            )).quotes
            let ghn = try #require(quotes.first { $0.carrier == "GHN" && $0.service == "Chuẩn" })
            #expect(ghn.feeVnd == 25_500 && ghn.etaDays == 1)
            #expect(Set(quotes.map(\.carrier)).count == Carrier.allCases.count)

            let request = CreateOrderRequest(
                shopId: Self.shop, customerId: "cu1",
                items: [OrderItemRequest(variantId: s.shirtM, quantity: 2), OrderItemRequest(variantId: s.bag, quantity: 1)],
                shipping: OrderHarness.shipping, paymentMethod: .online, shippingQuoteId: ghn.quoteId, redeemPoints: 100, idempotencyKey: "chat-42"
            )
            let order = try await h.client.createOrder(request)
            // 2 × 250,000 + 480,000 = 980,000; 5% = 49,000; 100 points = 100,000; + 25,500.
            #expect(order.subtotalVnd == 980_000 && order.tierDiscountVnd == 49_000 && order.pointsDiscountVnd == 100_000)
            #expect(order.shippingFeeVnd == 25_500 && order.totalVnd == 856_500 && order.redeemedPoints == 100)
            #expect(order.shipping?.phone == "0912345678" && order.channel == .social)
            // The same key: the same order, no second redemption, no more stock taken.
            let again = try await h.client.createOrder(request)
            #expect(again.orderId == order.orderId)
            #expect(h.loyalty.state.withLock { $0.balances["cu1"] } == 0)
            let products = try await h.client.listProducts(ListProductsRequest(shopId: Self.shop)).products
            let stock = Dictionary(uniqueKeysWithValues: products.flatMap(\.variants).map { ($0.variantId, $0.stock) })
            #expect(stock[s.shirtM] == 8 && stock[s.bag] == 2 && stock[s.shirtL] == 10)

            // The quote is spent; more than the stock is refused; both write nothing.
            let before = try await h.rowCounts()
            await expectStatus(.failedPrecondition, naming: "shipping_quote_id") {
                _ = try await h.client.createOrder(CreateOrderRequest(
                    shopId: Self.shop, customerId: "cu2", items: [OrderItemRequest(variantId: s.shirtL, quantity: 1)], shipping: OrderHarness.shipping,
                    paymentMethod: .cod, shippingQuoteId: ghn.quoteId
                ))
            }
            await expectStatus(.failedPrecondition, naming: "items[0]") {
                _ = try await h.client.createOrder(CreateOrderRequest(
                    shopId: Self.shop, customerId: "cu2", items: [OrderItemRequest(variantId: s.bag, quantity: 3)], shipping: OrderHarness.shipping, paymentMethod: .cod
                ))
            }
            await expectStatus(.invalidArgument, naming: "items[1]") {
                _ = try await h.client.createOrder(CreateOrderRequest(
                    shopId: Self.shop, customerId: "cu2",
                    items: [OrderItemRequest(variantId: s.bag, quantity: 1), OrderItemRequest(variantId: s.bag, quantity: 1)],
                    shipping: OrderHarness.shipping, paymentMethod: .cod
                ))
            }
            await expectStatus(.invalidArgument, naming: "shipping.phone") {
                var bad = OrderHarness.shipping
                bad.phone = "12345"
                _ = try await h.client.createOrder(CreateOrderRequest(
                    shopId: Self.shop, customerId: "cu2", items: [OrderItemRequest(variantId: s.bag, quantity: 1)], shipping: bad, paymentMethod: .cod
                ))
            }
            // loyalty-svc unreachable: UNAVAILABLE, and no half-discounted order.
            h.loyalty.state.withLock { $0.down = true }
            await expectStatus(.unavailable, naming: "loyalty-svc") {
                _ = try await h.client.createOrder(CreateOrderRequest(
                    shopId: Self.shop, customerId: "cu2", items: [OrderItemRequest(variantId: s.shirtL, quantity: 1)], shipping: OrderHarness.shipping,
                    paymentMethod: .cod, idempotencyKey: "chat-43"
                ))
            }
            #expect(try await h.rowCounts() == before)
            // Back up: the same key now makes the order.
            h.loyalty.state.withLock { $0.down = false }
            let later = try await h.client.createOrder(CreateOrderRequest(
                shopId: Self.shop, customerId: "cu2", items: [OrderItemRequest(variantId: s.shirtL, quantity: 1)], shipping: OrderHarness.shipping,
                paymentMethod: .cod, idempotencyKey: "chat-43"
            ))
            #expect(later.totalVnd == 250_000 - 12_500)
        }
    }

    @Test func aRefusedWriteAfterRedeemingVoidsTheRedemption() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            h.loyalty.state.withLock { $0.balances["cu9"] = 50 }
            // While loyalty-svc redeems cu9's points, someone else buys the last three bags.
            let client = h.client
            h.loyalty.onRedeem.withLock {
                $0 = {
                    _ = try? await client.createOrder(CreateOrderRequest(
                        shopId: Self.shop, customerId: "cu8", items: [OrderItemRequest(variantId: s.bag, quantity: 3)], shipping: OrderHarness.shipping,
                        paymentMethod: .cod
                    ))
                }
            }
            await expectStatus(.failedPrecondition, naming: "items[0]") {
                _ = try await h.client.createOrder(CreateOrderRequest(
                    shopId: Self.shop, customerId: "cu9", items: [OrderItemRequest(variantId: s.bag, quantity: 1)], shipping: OrderHarness.shipping,
                    paymentMethod: .cod, redeemPoints: 50, idempotencyKey: "late-bag"
                ))
            }
            // The redemption was voided: cu9 has the 50 points again, and no order of cu9 exists.
            let orderId = OrderPlacement.orderId(shop: Self.shop, idempotencyKey: "late-bag", nowMs: 0)
            #expect(h.loyalty.state.withLock { ($0.balances["cu9"], $0.voided) } == (50, [orderId]))
            #expect(try await h.client.getOrderSummary(GetOrderSummaryRequest(shopId: Self.shop, customerId: "cu9")).stats?.orderCount == 0)
        }
    }

    @Test func orderLifeShipCancelPayAndEvents() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            func order(_ key: String, _ method: Order.PaymentMethod, customer: String = "cu1") async throws -> Order {
                try await h.client.createOrder(CreateOrderRequest(
                    shopId: Self.shop, customerId: customer, items: [OrderItemRequest(variantId: s.shirtM, quantity: 1)], shipping: OrderHarness.shipping,
                    paymentMethod: method, idempotencyKey: key
                ))
            }
            // Shipped: cancelling is for the back office.
            let shipped = try await order("o-ship", .cod)
            let shipment = try await h.client.shipOrder(ShipOrderRequest(
                shopId: Self.shop, orderId: shipped.orderId, carrier: "GHN", warehouseId: s.warehouse, trackingCode: "GY7K2Q9X"
            ))
            #expect(shipment.trackingUrl == "https://donhang.ghn.vn/?order_code=GY7K2Q9X" && shipment.carrier == "GHN")
            await expectStatus(.failedPrecondition, naming: "back office") {
                _ = try await h.client.cancelOrder(CancelOrderRequest(shopId: Self.shop, orderId: shipped.orderId, reason: "khách đổi ý"))
            }
            // Viettel Post: the bare page; a code is issued when none is given.
            let viettel = try await h.client.shipOrder(ShipOrderRequest(
                shopId: Self.shop, orderId: try await order("o-vtp", .cod).orderId, carrier: "Viettel Post", warehouseId: s.warehouse
            ))
            #expect(viettel.trackingUrl == "https://viettelpost.com.vn/tra-cuu-hanh-trinh-don/" && viettel.trackingCode.hasPrefix("VTP"))
            await expectStatus(.invalidArgument, naming: "carrier") {
                _ = try await h.client.shipOrder(ShipOrderRequest(shopId: Self.shop, orderId: shipped.orderId, carrier: "Grab", warehouseId: s.warehouse))
            }
            // COD completed: paid on delivery, one PAID event.
            let done = try await h.client.completeOrder(CompleteOrderRequest(shopId: Self.shop, orderId: shipped.orderId))
            #expect(done.status == .completed)
            _ = try await h.client.completeOrder(CompleteOrderRequest(shopId: Self.shop, orderId: shipped.orderId))
            #expect(try await h.store.pendingEvents(shop: Self.shop, order: shipped.orderId).map(\.kind) == [.paid])

            // Not shipped: cancelled with who and why; the stock comes back.
            let pending = try await order("o-cancel", .online)
            let cancelled = try await h.client(staff: "minh").cancelOrder(CancelOrderRequest(shopId: Self.shop, orderId: pending.orderId, reason: "hết hàng"))
            #expect(cancelled.status == .cancelled && cancelled.cancelledByStaffId == "minh" && cancelled.cancelReason == "hết hàng")
            #expect(try await h.store.pendingEvents(shop: Self.shop, order: pending.orderId).isEmpty)   // never paid, no points redeemed
            let stock = try await h.client.listProducts(ListProductsRequest(shopId: Self.shop)).products.flatMap(\.variants).first { $0.variantId == s.shirtM }!.stock
            #expect(stock == 8)   // 10 − 3 orders + 1 back

            // Paid online, then cancelled: PAID and CANCELLED events for loyalty-svc.
            let paid = try await order("o-paid", .online, customer: "cu2")
            #expect(try await h.client.markOrderPaid(MarkOrderPaidRequest(shopId: Self.shop, orderId: paid.orderId)).status == .paid)
            _ = try await h.client.cancelOrder(CancelOrderRequest(shopId: Self.shop, orderId: paid.orderId))
            let events = try await h.store.pendingEvents(shop: Self.shop, order: paid.orderId)
            #expect(events.map(\.kind) == [.paid, .cancelled] && events[0].amountVnd == 250_000 && events[0].customerId == "cu2")
        }
    }

    @Test func paymentLinksConfirmationsAndRemindersGoThroughMessaging() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            for method in [Order.PaymentMethod.cod, .bankTransfer, .other] {
                let order = try await h.client.createOrder(CreateOrderRequest(
                    shopId: Self.shop, customerId: "cu1", items: [OrderItemRequest(variantId: s.shirtM, quantity: 1)], shipping: OrderHarness.shipping,
                    paymentMethod: method
                ))
                await expectStatus(.failedPrecondition, naming: "R-ORD-5") {
                    _ = try await h.client.resendPaymentLink(ResendPaymentLinkRequest(shopId: Self.shop, orderId: order.orderId, channel: .sms, templateId: "tpl-pay"))
                }
            }
            #expect(h.messenger.requests.withLock { $0.isEmpty })
            let online = try await h.client.createOrder(CreateOrderRequest(
                shopId: Self.shop, customerId: "cu1", items: [OrderItemRequest(variantId: s.shirtL, quantity: 2)], shipping: OrderHarness.shipping,
                paymentMethod: .online
            ))
            let link = try await h.client.resendPaymentLink(ResendPaymentLinkRequest(shopId: Self.shop, orderId: online.orderId, channel: .sms, templateId: "tpl-pay"))
            _ = try await h.client.resendPaymentLink(ResendPaymentLinkRequest(shopId: Self.shop, orderId: online.orderId, channel: .sms, templateId: "tpl-pay"))
            let confirmation = try await h.client.sendOrderConfirmation(SendOrderConfirmationRequest(
                shopId: Self.shop, orderId: online.orderId, channel: .zns, templateId: "tpl-confirm"
            ))
            let sent = h.messenger.requests.withLock { $0 }
            #expect(sent.count == 3)
            #expect(sent[0].idempotencyKey == sent[1].idempotencyKey && link.messageId == "msg-" + sent[0].idempotencyKey)
            #expect(sent[0].recipient == "0912345678" && sent[0].params["link"] == "https://pay.chatmesh.vn/o/" + online.orderId)
            #expect(sent[2].idempotencyKey == "order:\(online.orderId):confirmation" && confirmation.status == "SENT")
            #expect(sent[2].params["items"] == "2 × Áo sơ mi trắng (Size L)" && sent[2].params["total"] == "500.000đ")

            let live = try await Self.livestream(h, s)
            let cart = try await Self.comment(h, live.campaignId, "cu7", "A12 x2 sđt 0977 111 222").cartId
            _ = try await h.client.sendCartReminder(SendCartReminderRequest(shopId: Self.shop, cartId: cart, channel: .sms, templateId: "tpl-cart"))
            let reminder = h.messenger.requests.withLock { $0.last! }
            #expect(reminder.recipient == "0977111222" && reminder.params["items"] == "2 × Áo sơ mi trắng (Size M)")
            #expect(reminder.params["total"] == "398.000đ" && reminder.params["link"] == "https://pay.chatmesh.vn/c/" + cart)

            // No template named: refused naming it while the shop has no default, the default's template and channel once it has.
            await expectStatus(.failedPrecondition, naming: "template_id") {
                _ = try await h.client.sendOrderConfirmation(SendOrderConfirmationRequest(shopId: Self.shop, orderId: online.orderId))
            }
            h.messenger.defaults.withLock {
                $0[.orderConfirmation] = MessageDefault(use: .orderConfirmation, channel: .zns, templateId: "tpl-default-confirm")
                $0[.paymentLink] = MessageDefault(use: .paymentLink, channel: .sms, templateId: "tpl-default-pay")
                $0[.cartReminder] = MessageDefault(use: .cartReminder, channel: .sms, templateId: "tpl-default-cart")
            }
            _ = try await h.client.sendOrderConfirmation(SendOrderConfirmationRequest(shopId: Self.shop, orderId: online.orderId, idempotencyKey: "again"))
            _ = try await h.client.resendPaymentLink(ResendPaymentLinkRequest(shopId: Self.shop, orderId: online.orderId, idempotencyKey: "k-default"))
            _ = try await h.client.sendCartReminder(SendCartReminderRequest(shopId: Self.shop, cartId: cart, idempotencyKey: "k-default"))
            let defaulted = h.messenger.requests.withLock { Array($0.suffix(3)) }
            #expect(defaulted.map(\.templateId) == ["tpl-default-confirm", "tpl-default-pay", "tpl-default-cart"])
            #expect(defaulted.map(\.channel) == [.zns, .sms, .sms] && defaulted.map(\.recipient) == ["0912345678", "0912345678", "0977111222"])
            // A channel that is not the default's, with no template: refused naming the field.
            await expectStatus(.failedPrecondition, naming: "template_id") {
                _ = try await h.client.sendCartReminder(SendCartReminderRequest(shopId: Self.shop, cartId: cart, channel: .email))
            }
        }
    }

    @Test func orderSummaryAndStaffSalesMatchHandComputedFigures() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            func order(_ staff: String, _ customer: String, _ items: [(String, Int32)]) async throws -> Order {
                try await h.client(staff: staff).createOrder(CreateOrderRequest(
                    shopId: Self.shop, customerId: customer, items: items.map { OrderItemRequest(variantId: $0.0, quantity: $0.1) },
                    shipping: OrderHarness.shipping, paymentMethod: .online
                ))
            }
            let o1 = try await order("lan", "cu1", [(s.shirtM, 2)])                  // 500,000
            h.clock.advance(ms: 60_000)
            let o2 = try await order("lan", "cu1", [(s.bag, 1)])                     // 480,000
            h.clock.advance(ms: 60_000)
            _ = try await order("lan", "cu2", [(s.shirtL, 1), (s.shirtM, 1)])      // 500,000
            h.clock.advance(ms: 60_000)
            let o4 = try await order("minh", "cu3", [(s.shirtL, 3)])                // 750,000, then cancelled
            _ = try await h.client.markOrderPaid(MarkOrderPaidRequest(shopId: Self.shop, orderId: o1.orderId))
            _ = try await h.client.cancelOrder(CancelOrderRequest(shopId: Self.shop, orderId: o4.orderId))
            _ = try await order("minh", "cu3", [(s.bag, 1)])                        // 480,000

            let summary = try await h.client.getOrderSummary(GetOrderSummaryRequest(shopId: Self.shop, customerId: "cu1", recentLimit: 1))
            #expect(summary.stats?.orderCount == 2 && summary.stats?.totalSpentVnd == 500_000)   // only o1 is paid
            #expect(summary.stats?.byStatus.map { "\($0.status.protoName)=\($0.count)" } == ["PENDING=1", "PAID=1"])
            #expect(summary.recent.map(\.orderId) == [o2.orderId] && summary.recent[0].items[0].productName == "Túi xách da")

            let stats = try await h.client.getStaffSalesStats(GetStaffSalesStatsRequest(
                shopId: Self.shop, fromMs: h.clock.now - 3_600_000, toMs: h.clock.now + 1
            )).staff
            // lan: 3 orders, 2 + 1 + 2 = 5 products, 1,480,000, 2 customers; minh: 1 order (one cancelled), 1 product, 480,000, 1 customer.
            #expect(stats.map(\.staffId) == ["lan", "minh"])
            #expect(stats[0].orders == 3 && stats[0].products == 5 && stats[0].revenueVnd == 1_480_000 && stats[0].customers == 2)
            #expect(stats[1].orders == 1 && stats[1].products == 1 && stats[1].revenueVnd == 480_000 && stats[1].customers == 1)
        }
    }

    @Test func anotherShopSeesNothingAndBadInputNamesTheField() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            let order = try await h.client.createOrder(CreateOrderRequest(
                shopId: Self.shop, customerId: "cu1", items: [OrderItemRequest(variantId: s.shirtM, quantity: 1)], shipping: OrderHarness.shipping, paymentMethod: .cod
            ))
            let other = h.client(shop: "shop-x", staff: "x")
            await expectStatus(.notFound, naming: "order_id") { _ = try await other.getOrder(GetOrderRequest(shopId: "shop-x", orderId: order.orderId)) }
            #expect(try await other.listProducts(ListProductsRequest(shopId: "shop-x")).products.isEmpty)
            await expectStatus(.notFound, naming: "items[0].variant_id") {
                _ = try await other.createOrder(CreateOrderRequest(
                    shopId: "shop-x", customerId: "c", items: [OrderItemRequest(variantId: s.shirtM, quantity: 1)], shipping: OrderHarness.shipping, paymentMethod: .cod
                ))
            }
            await expectStatus(.permissionDenied, naming: "shop_id") { _ = try await other.getOrder(GetOrderRequest(shopId: Self.shop, orderId: order.orderId)) }
            let before = try await h.rowCounts()
            await expectStatus(.invalidArgument, naming: "items[1].code") {
                _ = try await h.client.createCampaign(CreateCampaignRequest(shopId: Self.shop, pageId: "p", kind: .livestream, name: "Live", items: [
                    CampaignItem(code: "A1", variantId: s.shirtM), CampaignItem(code: "A 1!", variantId: s.shirtL),
                ]))
            }
            await expectStatus(.notFound, naming: "items[1].variant_id") {
                _ = try await h.client.createCampaign(CreateCampaignRequest(shopId: Self.shop, pageId: "p", kind: .livestream, name: "Live", items: [
                    CampaignItem(code: "A1", variantId: s.shirtM), CampaignItem(code: "A2", variantId: "var_nope"),
                ]))
            }
            await expectStatus(.invalidArgument, naming: "address.province") {
                _ = try await h.client.upsertWarehouse(UpsertWarehouseRequest(shopId: Self.shop, name: "Kho", address: Address(street: "1", district: "X", province: "Atlantis")))
            }
            await expectStatus(.invalidArgument, naming: "variants[0].price_vnd") {
                _ = try await h.client.upsertProduct(UpsertProductRequest(shopId: Self.shop, name: "Sai", variants: [Variant(priceVnd: -1)]))
            }
            await expectStatus(.invalidArgument, naming: "weight_g") {
                _ = try await h.client.estimateShipping(EstimateShippingRequest(shopId: Self.shop, warehouseId: s.warehouse, to: OrderHarness.shipping.address))
            }
            await expectStatus(.notFound, naming: "campaign_id") {
                _ = try await h.client.ingestComment(IngestCommentRequest(shopId: Self.shop, campaignId: "cmp_nope", customerId: "c", text: "A12 x2"))
            }
            #expect(try await h.rowCounts() == before)
        }
    }
}
