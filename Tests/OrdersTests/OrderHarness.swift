import ChatMeshAPI
import Foundation
@testable import Orders
import MeshRPC
import MeshStore
import MeshTestSupport
import SQLKit
import Synchronization
import VietnamCommerce

/// loyalty-svc as a script: a tier discount for everyone, a points balance per
/// customer (1,000đ a point), redemptions once per order, and a switch that makes
/// it unreachable.
final class ScriptedLoyalty: LoyaltyCheckout {
    struct State {
        var discountPercent: Int64 = 0
        var combinable = true
        var balances: [String: Int64] = [:]
        var redeemed: [String: Int64] = [:]
        var voided: [String] = []
        /// R-ORD-7: voucher code → (amount off, the order that used it).
        var vouchers: [String: (discountVnd: Int64, usedBy: String)] = [:]
        var down = false
        var previews = 0
    }
    let state = Mutex(State())
    /// Runs after a redemption is taken, before order-svc writes the order.
    let onRedeem = Mutex<(@Sendable () async -> Void)?>(nil)

    func preview(_ request: PreviewOrderRequest) async throws(RPCError) -> PreviewOrderResponse {
        try state.withLock { s throws(RPCError) in
            if s.down { throw RPCError.unavailable("connection refused") }
            s.previews += 1
            var voucher: Int64 = 0
            if !request.voucherCode.isEmpty {
                guard let known = s.vouchers[request.voucherCode] else { throw RPCError.failedPrecondition("voucher_code: no such voucher") }
                if !known.usedBy.isEmpty && known.usedBy != request.orderId { throw RPCError.failedPrecondition("voucher_code: already used") }
                voucher = min(known.discountVnd, request.subtotalVnd)
            }
            let promoted = request.hasPromotion || voucher > 0
            let tier = !promoted || s.combinable ? (request.subtotalVnd - voucher) * s.discountPercent / 100 : 0
            let points = min(request.redeemPoints, s.balances[request.customerId] ?? 0, (request.subtotalVnd - voucher - tier) / 1_000)
            let paid = request.subtotalVnd - voucher - tier - points * 1_000
            return PreviewOrderResponse(
                tierDiscountVnd: tier, pointsDiscountVnd: points * 1_000, pointsToEarn: paid / 10_000, pointsRedeemed: points,
                voucherDiscountVnd: voucher, voucherCode: request.voucherCode
            )
        }
    }

    func redeem(_ request: RedeemPointsRequest) async throws(RPCError) {
        try state.withLock { s throws(RPCError) in
            if s.down { throw RPCError.unavailable("connection refused") }
            if s.redeemed[request.orderId] != nil { return }
            guard (s.balances[request.customerId] ?? 0) >= request.points else { throw RPCError.failedPrecondition("points: not enough") }
            s.balances[request.customerId, default: 0] -= request.points
            s.redeemed[request.orderId] = request.points
        }
        if let hook = onRedeem.withLock({ $0 }) { await hook() }
    }

    func redeemVoucher(_ request: RedeemVoucherRequest) async throws(RPCError) {
        try state.withLock { s throws(RPCError) in
            if s.down { throw RPCError.unavailable("connection refused") }
            guard let known = s.vouchers[request.code] else { throw RPCError.notFound("code: no voucher") }
            if known.usedBy == request.orderId { return }
            guard known.usedBy.isEmpty else { throw RPCError.failedPrecondition("code: voucher \(request.code) was already redeemed by order \(known.usedBy)") }
            s.vouchers[request.code]!.usedBy = request.orderId
        }
    }

    func void(shop: String, customerId: String, orderId: String) async throws(RPCError) {
        state.withLock { s in
            if let points = s.redeemed.removeValue(forKey: orderId) { s.balances[customerId, default: 0] += points }
            for (code, known) in s.vouchers where known.usedBy == orderId { s.vouchers[code]!.usedBy = "" }
            s.voided.append(orderId)
        }
    }
}

/// messaging-svc's SendMessage as a script: records every request, answers by key.
final class ScriptedMessenger: OrderMessenger {
    let requests = Mutex<[SendMessageRequest]>([])
    /// The shop's default templates, as messaging-svc keeps them.
    let defaults = Mutex<[MessageDefault.Use: MessageDefault]>([:])

    func messageDefault(shop: String, use: MessageDefault.Use) async throws(RPCError) -> MessageDefault {
        guard let found = defaults.withLock({ $0[use] }) else { throw RPCError.failedPrecondition("template_id: none given, and no default for \(use.protoName)") }
        return found
    }

    func send(_ request: SendMessageRequest) async throws(RPCError) -> SendMessageResponse {
        requests.withLock { $0.append(request) }
        return SendMessageResponse(messageId: "msg-" + request.idempotencyKey, status: "SENT", costVnd: 0)
    }
}

/// order-svc's handler behind a router that checks tokens, on a fresh SQLite file.
struct OrderHarness {
    static let shop = "shop-o"
    static let key = "orders-tests-key"
    let database: any SQLStore
    let store: OrderStore
    let loyalty = ScriptedLoyalty()
    let messenger = ScriptedMessenger()
    let router: RPCRouter
    let client: OrderService.Client
    /// 2026-11-25 10:00 Vietnam time.
    let clock = TestClock(VietnamTime.ms(year: 2026, month: 11, day: 25, hour: 10))

    init() async throws {
        database = try await TestDatabase.open("orders")
        store = try await OrderStore.open(database)
        let clock = self.clock
        router = RPCRouter(
            services: [OrderServiceHandler(store: store, loyalty: loyalty, messenger: messenger, now: { clock.now })], verifier: TokenVerifier(key: Self.key)
        )
        client = Self.client(router, shop: Self.shop, staff: "lan")
    }

    static func run(_ body: (OrderHarness) async throws -> Void) async throws {
        let h = try await OrderHarness()
        try await h.database.closing { try await body(h) }
    }

    func client(shop: String = Self.shop, staff: String) -> OrderService.Client {
        Self.client(router, shop: shop, staff: staff)
    }

    static func client(_ router: RPCRouter, shop: String, staff: String) -> OrderService.Client {
        let token = TokenSigner(key: key).mint(shopId: shop, staffId: staff, role: .agent)
        return OrderService.Client(channel: InProcessChannel(router: router), defaultOptions: .bearer(token))
    }

    /// A shirt (A12: M and L at 250,000đ, 10 each), a bag (B3, 480,000đ, 3) and a warehouse in Quận 1.
    struct Shop {
        var shirtM: String
        var shirtL: String
        var bag: String
        var warehouse: String
    }

    func stockShop() async throws -> Shop {
        let shirt = try await client.upsertProduct(UpsertProductRequest(shopId: Self.shop, name: "Áo sơ mi trắng", variants: [
            Variant(sku: "ASM-M", title: "Size M", priceVnd: 250_000, stock: 10, weightG: 300),
            Variant(sku: "ASM-L", title: "Size L", priceVnd: 250_000, stock: 10, weightG: 320),
        ]))
        let bag = try await client.upsertProduct(UpsertProductRequest(shopId: Self.shop, name: "Túi xách da", variants: [
            Variant(sku: "TX-DO", title: "Đỏ", priceVnd: 480_000, stock: 3, weightG: 700),
        ]))
        let warehouse = try await client.upsertWarehouse(UpsertWarehouseRequest(
            shopId: Self.shop, name: "Kho Quận 1", address: Address(street: "12 Lý Tự Trọng", ward: "Bến Nghé", district: "Quận 1", province: "Hồ Chí Minh")
        ))
        return Shop(shirtM: shirt.variants[0].variantId, shirtL: shirt.variants[1].variantId, bag: bag.variants[0].variantId, warehouse: warehouse.warehouseId)
    }

    static let shipping = ShippingInfo(
        name: "Nguyễn Thị Hoa", phone: "0912 345 678", address: Address(street: "88 Nguyễn Trãi", ward: "Phường 3", district: "Quận 5", province: "TP.HCM")
    )

    func rowCounts() async throws -> [String: Int] {
        try await database.read { db in
            var counts: [String: Int] = [:]
            for table in ["products", "variants", "warehouses", "campaigns", "campaign_items", "comments", "carts", "cart_items", "orders", "order_items",
                          "shipping_quotes", "outbox"] {
                counts[table] = try await db.raw("SELECT COUNT(*) AS n FROM \(unsafeRaw: table)").first()!.int("n")
            }
            counts["stock"] = try await db.raw("SELECT COALESCE(SUM(stock), 0) AS n FROM variants").first()!.int("n")
            return counts
        }
    }
}
