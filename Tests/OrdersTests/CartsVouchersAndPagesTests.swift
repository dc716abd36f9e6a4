import ChatMeshAPI
import Foundation
@testable import Orders
import MeshRPC
import MeshStore
import MeshTestSupport
import Testing

/// R-CART-3 CombineCarts, R-CAMP-3 SetCampaignLive, R-ORD-7 vouchers at checkout and
/// R-REP-2 sales per page, through order-svc's router with loyalty-svc scripted.
@Suite struct CartsVouchersAndPagesTests {
    static let shop = OrderHarness.shop

    /// R-PANEL-1: the panel's one call answers what ListCarts and GetOrderSummary answer, one customer's only.
    @Test func theCustomerOrderContextIsListCartsAndTheSummaryTogether() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            let live = try await OrderServiceTests.livestream(h, s)
            _ = try await OrderServiceTests.comment(h, live.campaignId, "cu1", "A12 x2 size M")
            _ = try await OrderServiceTests.comment(h, live.campaignId, "cu2", "B3")
            _ = try await h.client.createOrder(CreateOrderRequest(
                shopId: Self.shop, customerId: "cu1", items: [OrderItemRequest(variantId: s.bag, quantity: 1)], shipping: OrderHarness.shipping,
                paymentMethod: .cod, idempotencyKey: "ctx-1"
            ))
            let context = try await h.client.getCustomerOrderContext(GetCustomerOrderContextRequest(shopId: Self.shop, customerId: "cu1", recentLimit: 3))
            let carts = try await h.client.listCarts(ListCartsRequest(shopId: Self.shop, customerId: "cu1")).carts
            let summary = try await h.client.getOrderSummary(GetOrderSummaryRequest(shopId: Self.shop, customerId: "cu1", recentLimit: 3))
            #expect(context.carts == carts && context.summary == summary)
            #expect(carts.count == 1 && carts[0].cartLink.hasSuffix("c/" + carts[0].cartId) && summary.stats?.orderCount == 1)
            let empty = try await h.client.getCustomerOrderContext(GetCustomerOrderContextRequest(shopId: Self.shop, customerId: "cu9"))
            #expect(empty.carts.isEmpty && empty.summary?.stats?.orderCount == 0)
            await expectStatus(.invalidArgument, naming: "recent_limit") {
                _ = try await h.client.getCustomerOrderContext(GetCustomerOrderContextRequest(shopId: Self.shop, customerId: "cu1", recentLimit: -1))
            }
            await expectStatus(.invalidArgument, naming: "customer_id") {
                _ = try await h.client.getCustomerOrderContext(GetCustomerOrderContextRequest(shopId: Self.shop))
            }
        }
    }

    @Test func cartsCombineIntoOneStaffCartThatBecomesAnOrder() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            let live = try await OrderServiceTests.livestream(h, s)
            let post = try await h.client.createCampaign(CreateCampaignRequest(
                shopId: Self.shop, pageId: "page-2", kind: .salesPost, name: "Tin bán hàng", items: [CampaignItem(code: "T1", variantId: s.bag, priceVnd: 450_000)]
            ))
            _ = try await OrderServiceTests.comment(h, live.campaignId, "cu1", "A12 x2 size M")
            _ = try await OrderServiceTests.comment(h, post.campaignId, "cu1", "chốt T1")
            _ = try await OrderServiceTests.comment(h, live.campaignId, "cu2", "B3")
            let carts = try await h.client.listCarts(ListCartsRequest(shopId: Self.shop, customerId: "cu1")).carts
            let other = try await h.client.listCarts(ListCartsRequest(shopId: Self.shop, customerId: "cu2")).carts[0]
            #expect(carts.count == 2 && carts.allSatisfy { $0.cartLink.hasSuffix("c/" + $0.cartId) })

            let before = try await h.rowCounts()
            await expectStatus(.invalidArgument, naming: "cart_ids[1]") {   // another customer's cart
                _ = try await h.client.combineCarts(CombineCartsRequest(shopId: Self.shop, cartIds: [carts[0].cartId, other.cartId]))
            }
            await expectStatus(.invalidArgument, naming: "cart_ids") {
                _ = try await h.client.combineCarts(CombineCartsRequest(shopId: Self.shop, cartIds: [carts[0].cartId]))
            }
            #expect(try await h.rowCounts() == before)

            // Agents act as themselves: Lan's token cannot combine as Minh.
            await expectStatus(.permissionDenied, naming: "staff_id") {
                _ = try await h.client.combineCarts(CombineCartsRequest(shopId: Self.shop, cartIds: carts.map(\.cartId), staffId: "minh"))
            }
            let request = CombineCartsRequest(shopId: Self.shop, cartIds: carts.map(\.cartId), idempotencyKey: "combine-cu1")
            let combined = try await h.client(staff: "minh").combineCarts(request)
            #expect(combined.name == "Giỏ hàng của minh" && combined.campaignId.isEmpty && combined.updatedByStaffId == "minh")
            #expect(combined.totalVnd == 2 * 199_000 + 450_000 && combined.items.count == 2)   // each cart's own prices
            #expect(combined.cartLink.hasSuffix("c/" + combined.cartId))
            // The same key: the same cart, nothing more written.
            let after = try await h.rowCounts()
            #expect(try await h.client(staff: "minh").combineCarts(request).cartId == combined.cartId)
            #expect(try await h.rowCounts() == after)
            // The carts combined are closed; the customer sees the one new cart.
            let now = try await h.client.listCarts(ListCartsRequest(shopId: Self.shop, customerId: "cu1")).carts
            #expect(now.map(\.cartId) == [combined.cartId])
            await expectStatus(.failedPrecondition, naming: "cart_id") {
                _ = try await h.client.updateCart(UpdateCartRequest(shopId: Self.shop, cartId: carts[0].cartId, items: [], staffId: "lan"))
            }
            // An order from it, as from any cart; the cart's page follows the campaigns it came from.
            let order = try await h.client.createOrder(CreateOrderRequest(
                shopId: Self.shop, customerId: "cu1", cartIds: [combined.cartId], shipping: OrderHarness.shipping, paymentMethod: .cod
            ))
            #expect(order.subtotalVnd == combined.totalVnd)
            #expect(try await h.client.listCarts(ListCartsRequest(shopId: Self.shop, customerId: "cu1")).carts.isEmpty)
        }
    }

    @Test func warehousesAreListedPagedAndOnlyTheShopsOwn() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            let second = try await h.client.upsertWarehouse(UpsertWarehouseRequest(
                shopId: Self.shop, name: "Kho Thủ Đức", address: Address(street: "5 Võ Văn Ngân", ward: "Linh Chiểu", district: "Thủ Đức", province: "Hồ Chí Minh")
            ))
            let all = try await h.client.listWarehouses(ListWarehousesRequest(shopId: Self.shop))
            #expect(Set(all.warehouses.map(\.warehouseId)) == [s.warehouse, second.warehouseId] && all.nextPageToken.isEmpty)
            #expect(all.warehouses.first { $0.warehouseId == second.warehouseId }?.address?.district == "Thủ Đức")
            let first = try await h.client.listWarehouses(ListWarehousesRequest(shopId: Self.shop, pageSize: 1))
            let rest = try await h.client.listWarehouses(ListWarehousesRequest(shopId: Self.shop, pageSize: 1, pageToken: first.nextPageToken))
            #expect(first.warehouses.count == 1 && rest.warehouses.count == 1 && first.warehouses[0] != rest.warehouses[0] && rest.nextPageToken.isEmpty)
            #expect(try await h.client(shop: "shop-else", staff: "x").listWarehouses(ListWarehousesRequest(shopId: "shop-else")).warehouses.isEmpty)
        }
    }

    @Test func aLivestreamGoesLiveAndStopsAndOnlyALivestream() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            let live = try await OrderServiceTests.livestream(h, s)
            #expect(live.live)
            let ended = try await h.client.setCampaignLive(SetCampaignLiveRequest(shopId: Self.shop, campaignId: live.campaignId, live: false))
            let read = try await h.client.getCampaign(GetCampaignRequest(shopId: Self.shop, campaignId: live.campaignId))
            #expect(!ended.live && !read.live)
            #expect(try await h.client.listCampaigns(ListCampaignsRequest(shopId: Self.shop)).campaigns.map(\.live) == [false])
            #expect(try await h.client.setCampaignLive(SetCampaignLiveRequest(shopId: Self.shop, campaignId: live.campaignId, live: true)).live)
            let post = try await h.client.createCampaign(CreateCampaignRequest(
                shopId: Self.shop, pageId: "page-1", kind: .salesPost, name: "Tin", items: [CampaignItem(code: "T1", variantId: s.bag)]
            ))
            await expectStatus(.failedPrecondition, naming: "campaign_id") {
                _ = try await h.client.setCampaignLive(SetCampaignLiveRequest(shopId: Self.shop, campaignId: post.campaignId, live: true))
            }
            await expectStatus(.notFound, naming: "campaign_id") {
                _ = try await h.client(shop: "shop-else", staff: "x").setCampaignLive(SetCampaignLiveRequest(shopId: "shop-else", campaignId: live.campaignId, live: false))
            }
        }
    }

    @Test func aVoucherIsUsedOnceByTheOrderAndGivenBackWhenTheWriteFails() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            h.loyalty.state.withLock { $0.vouchers["GTABCDEFGH"] = (50_000, "") }
            func order(_ key: String, _ variant: String) async throws -> Order {
                try await h.client.createOrder(CreateOrderRequest(
                    shopId: Self.shop, customerId: "cu1", items: [OrderItemRequest(variantId: variant, quantity: 1)], shipping: OrderHarness.shipping,
                    paymentMethod: .cod, idempotencyKey: key, voucherCode: " gtabcdefgh "
                ))
            }
            let first = try await order("k1", s.shirtM)
            #expect(first.voucherCode == "GTABCDEFGH" && first.voucherDiscountVnd == 50_000 && first.totalVnd == 200_000)
            #expect(try await h.client.getOrder(GetOrderRequest(shopId: Self.shop, orderId: first.orderId)).voucherDiscountVnd == 50_000)
            // A retry of the same order is that order; another order is refused, naming the field, with nothing written.
            #expect(try await order("k1", s.shirtM).orderId == first.orderId)
            let before = try await h.rowCounts()
            await expectStatus(.failedPrecondition, naming: "voucher_code") { _ = try await order("k2", s.shirtL) }
            #expect(try await h.rowCounts() == before)
            // The paid event tells loyalty-svc an offer was used.
            _ = try await h.client.markOrderPaid(MarkOrderPaidRequest(shopId: Self.shop, orderId: first.orderId))
            let events = try await h.store.pendingEvents(shop: Self.shop, order: first.orderId)
            #expect(events.last?.kind == .paid && events.last?.usedOffer == true && events.last?.phone == "0912345678")
            // R-MSG-2: messaging-svc hears of it too, for the broadcasts' profit.
            let told = try await h.database.read { db in try await Outbox.pending(db, shop: Self.shop, subscriber: OrderEvents.messagingQueue) }
            let paid = try told.map { try OnOrderEventRequest(serializedBytes: $0.payload) }.filter { $0.orderId == first.orderId }
            #expect(paid.map(\.kind) == [.paid] && paid[0].amountVnd == 200_000 && paid[0].customerId == "cu1")

            // A write refused after the voucher was taken (the last bag sold meanwhile) gives it back.
            h.loyalty.state.withLock { $0.vouchers["GTSECOND"] = (10_000, "") }
            try await h.database.write { db in try await db.raw("UPDATE variants SET stock = 0 WHERE variant_id = \(bind: s.bag)").run() }
            await expectStatus(.failedPrecondition, naming: "items[0]") {
                _ = try await h.client.createOrder(CreateOrderRequest(
                    shopId: Self.shop, customerId: "cu1", items: [OrderItemRequest(variantId: s.bag, quantity: 1)], shipping: OrderHarness.shipping,
                    paymentMethod: .cod, voucherCode: "GTSECOND"
                ))
            }
            #expect(h.loyalty.state.withLock { $0.vouchers["GTSECOND"]?.usedBy } == "")
        }
    }

    @Test func salesStatsArePerPageWhenAPageIsGiven() async throws {
        try await OrderHarness.run { h in
            let s = try await h.stockShop()
            let live = try await OrderServiceTests.livestream(h, s)   // page-1
            _ = try await OrderServiceTests.comment(h, live.campaignId, "cu1", "A12 x1 size M")
            let cart = try await h.client.listCarts(ListCartsRequest(shopId: Self.shop, customerId: "cu1")).carts[0]
            let fromCart = try await h.client.createOrder(CreateOrderRequest(
                shopId: Self.shop, customerId: "cu1", cartIds: [cart.cartId], shipping: OrderHarness.shipping, paymentMethod: .cod
            ))
            #expect(fromCart.pageId == "page-1")
            _ = try await h.client.createOrder(CreateOrderRequest(
                shopId: Self.shop, customerId: "cu2", items: [OrderItemRequest(variantId: s.bag, quantity: 1)], shipping: OrderHarness.shipping,
                paymentMethod: .cod, pageId: "page-2"
            ))
            func stats(_ page: String) async throws -> [StaffSalesStats] {
                try await h.client.getStaffSalesStats(GetStaffSalesStatsRequest(shopId: Self.shop, fromMs: h.clock.now - 60_000, toMs: h.clock.now + 1, pageId: page)).staff
            }
            let all = try await stats(""), one = try await stats("page-1"), two = try await stats("page-2"), three = try await stats("page-3")
            #expect(all.first?.orders == 2)
            #expect(one.count == 1 && one[0].orders == 1 && one[0].revenueVnd == 199_000 && one[0].customers == 1)
            #expect(two.count == 1 && two[0].orders == 1 && two[0].revenueVnd == 480_000)
            #expect(three.isEmpty)
        }
    }
}
