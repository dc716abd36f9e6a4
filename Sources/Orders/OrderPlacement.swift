import ChatMeshAPI
import Crypto
import Foundation
import MeshRPC
import MeshStore

/// What order-svc asks loyalty-svc at checkout (R-LOY-4, R-PTS-3): the mesh's
/// LoyaltyService over the wire, a scripted fake in tests.
public protocol LoyaltyCheckout: Sendable {
    func preview(_ request: PreviewOrderRequest) async throws(RPCError) -> PreviewOrderResponse
    func redeem(_ request: RedeemPointsRequest) async throws(RPCError)
    /// R-ORD-7: the voucher used by the order, once (another order racing for it: one wins).
    func redeemVoucher(_ request: RedeemVoucherRequest) async throws(RPCError)
    /// Gives back what `redeem` and `redeemVoucher` took for an order that could not be written.
    func void(shop: String, customerId: String, orderId: String) async throws(RPCError)
}

/// loyalty-svc over the wire, with the caller's token and a deadline inside the caller's.
public struct LoyaltyServiceCheckout: LoyaltyCheckout {
    let client: LoyaltyService.Client

    public init(channel: any RPCChannel) {
        client = LoyaltyService.Client(channel: channel, defaultOptions: CallOptions(timeout: .seconds(3)))
    }

    public func preview(_ request: PreviewOrderRequest) async throws(RPCError) -> PreviewOrderResponse {
        try await client.previewOrder(request)
    }

    public func redeem(_ request: RedeemPointsRequest) async throws(RPCError) {
        _ = try await client.redeemPoints(request)
    }

    public func redeemVoucher(_ request: RedeemVoucherRequest) async throws(RPCError) {
        _ = try await client.redeemVoucher(request)
    }

    public func void(shop: String, customerId: String, orderId: String) async throws(RPCError) {
        _ = try await client.recordOrderEvent(RecordOrderEventRequest(
            shopId: shop, eventId: "\(orderId):void", orderId: orderId, customerId: customerId, kind: .cancelled
        ))
    }
}

/// CreateOrder (R-ORD-6, R-CART-3, R-LOY-4, R-PTS-3, R-SEG-4, R-ORD-7): drafted from the
/// store, priced by loyalty-svc (promotion, voucher, tier, points), the voucher and points
/// taken under an order id the idempotency key fixes, then written in one transaction. loyalty-svc unreachable: UNAVAILABLE and nothing
/// written, never an order without its discount. The write refused after points were
/// redeemed (the last unit sold meanwhile): the redemption is voided.
public struct OrderPlacement: Sendable {
    let store: OrderStore
    let loyalty: any LoyaltyCheckout

    public init(store: OrderStore, loyalty: any LoyaltyCheckout) {
        self.store = store
        self.loyalty = loyalty
    }

    /// The same key gives the same id, so a retried call after a crash redeems under the same order.
    public static func orderId(shop: String, idempotencyKey: String, nowMs: Int64) -> String {
        guard !idempotencyKey.isEmpty else { return SortableID.make("ord_", nowMs: nowMs) }
        let digest = SHA256.hash(data: Data("\(shop)\u{0}\(idempotencyKey)".utf8))
        return "ord_" + digest.prefix(12).map { String(format: "%02x", $0) }.joined()
    }

    /// CreateOrder: the order placed once per idempotency key, or refused with nothing written.
    public func place(shop: String, _ request: CreateOrderRequest, staffId: String, nowMs: Int64) async throws -> Order {
        if let existing = try await store.order(shop: shop, idempotencyKey: request.idempotencyKey) { return existing }
        let items = request.items.map { OrderLifecycle.StockLine(variantId: $0.variantId, quantity: Int64($0.quantity)) }
        let draft = try await store.draft(
            shop: shop, customerId: request.customerId, items: items, cartIds: request.cartIds, quoteId: request.shippingQuoteId, nowMs: nowMs
        )
        let orderId = Self.orderId(shop: shop, idempotencyKey: request.idempotencyKey, nowMs: nowMs)
        let quote: PreviewOrderResponse
        do {
            quote = try await loyalty.preview(PreviewOrderRequest(
                shopId: shop, customerId: request.customerId, subtotalVnd: draft.subtotalVnd, hasPromotion: request.hasPromotion,
                redeemPoints: request.redeemPoints,
                items: draft.lines.map { PreviewItem(variantId: $0.variantId, quantity: Int32($0.quantity), priceVnd: $0.priceVnd) },
                voucherCode: request.voucherCode, orderId: orderId
            ))
        } catch {
            throw Self.loyaltyRefusal(error)
        }
        if !request.voucherCode.isEmpty {
            do {
                try await loyalty.redeemVoucher(RedeemVoucherRequest(shopId: shop, code: quote.voucherCode.isEmpty ? request.voucherCode : quote.voucherCode, orderId: orderId))
            } catch {
                throw Self.voucherRefusal(Self.loyaltyRefusal(error))
            }
        }
        if quote.pointsRedeemed > 0 {
            do {
                try await loyalty.redeem(RedeemPointsRequest(
                    shopId: shop, customerId: request.customerId, points: quote.pointsRedeemed, reason: "order \(orderId)", staffId: staffId, orderId: orderId
                ))
            } catch {
                if !request.voucherCode.isEmpty { try? await loyalty.void(shop: shop, customerId: request.customerId, orderId: orderId) }
                throw Self.loyaltyRefusal(error)
            }
        }
        var placement = OrderStore.Placement(
            orderId: orderId, draft: draft, tierDiscountVnd: quote.tierDiscountVnd, pointsDiscountVnd: quote.pointsDiscountVnd,
            redeemedPoints: quote.pointsRedeemed, pointsToEarn: quote.pointsToEarn, shipping: request.shipping ?? ShippingInfo(),
            paymentMethod: request.paymentMethod, channel: request.channel, hasPromotion: request.hasPromotion, staffId: staffId,
            idempotencyKey: request.idempotencyKey, pageId: request.pageId.isEmpty ? draft.pageId : request.pageId
        )
        placement.promotionId = quote.promotionId
        placement.promotionDiscountVnd = quote.promotionDiscountVnd
        placement.voucherCode = request.voucherCode.isEmpty ? "" : quote.voucherCode
        placement.voucherDiscountVnd = quote.voucherDiscountVnd
        do {
            return try await store.place(shop: shop, placement, nowMs: nowMs)
        } catch {
            if quote.pointsRedeemed > 0 || !request.voucherCode.isEmpty {
                // Best effort now; a failed void leaves the points with an order id no order has,
                // which the same key's retry reuses rather than redeeming again.
                try? await loyalty.void(shop: shop, customerId: request.customerId, orderId: orderId)
            }
            throw error
        }
    }

    /// A voucher RedeemVoucher refused names its field as CreateOrder knows it.
    static func voucherRefusal(_ error: RPCError) -> RPCError {
        guard error.message.hasPrefix("code:") else { return error }
        return RPCError(error.code, "voucher_code:" + error.message.dropFirst("code:".count))
    }

    /// loyalty-svc's own refusals (too many points) pass through; being unreachable is UNAVAILABLE.
    static func loyaltyRefusal(_ error: RPCError) -> RPCError {
        switch error.code {
        case .unavailable, .deadlineExceeded, .cancelled, .unknown, .internal:
            .unavailable("loyalty-svc could not price the order (\(error.code.name): \(error.message)); nothing was created, try again")
        default:
            error
        }
    }
}
