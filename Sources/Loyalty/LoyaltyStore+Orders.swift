import ChatMeshAPI
import Foundation
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// Order events from order-svc (R-PTS-1, R-LOY-3) and the offer dashboard (R-LOY-5).
extension LoyaltyStore {
    // MARK: Orders (R-PTS-1, R-LOY-3)

    /// An order event from order-svc (R-PTS-1, R-LOY-3), as the store applies it.
    public struct OrderEvent: Sendable {
        public enum Kind: Sendable, Hashable {
            /// Earns points and counts toward the tier.
            case paid
            /// Both reverse what PAID did, and give back points redeemed on the order.
            case cancelled, refunded
        }

        public var eventId: String
        public var orderId: String
        public var customerId: String
        public var kind: Kind
        public var amountVnd: Int64
        public var channel: Order.Channel
        public var district: String
        public var province: String
        public var usedOffer: Bool
        public var atMs: Int64
        /// The order's shipping phone, normalised or empty (R-REF-1).
        public var phone: String = ""
    }

    /// What an order event did: applied (the first time its id was seen), the points it moved, the member after.
    public struct OrderEventOutcome: Sendable {
        public var applied: Bool
        public var pointsDelta: Int64
        public var member: Member
    }

    /// What a checkout asks to be priced (PreviewOrder).
    public struct Checkout: Sendable {
        public var customerId: String
        public var subtotalVnd: Int64
        /// The order's lines (PRICE_LIST promotions need them).
        public var lines: [PromotionOffer.Line] = []
        /// The order carries a promotion from elsewhere.
        public var hasPromotion: Bool = false
        public var redeemPoints: Int64 = 0
        /// R-ORD-7: normalised, or empty.
        public var voucherCode: String = ""
        /// The order being priced: a voucher it already took still prices for it.
        public var orderId: String = ""

        public init(customerId: String, subtotalVnd: Int64, lines: [PromotionOffer.Line] = [], hasPromotion: Bool = false, redeemPoints: Int64 = 0,
                    voucherCode: String = "", orderId: String = "") {
            self.customerId = customerId
            self.subtotalVnd = subtotalVnd
            self.lines = lines
            self.hasPromotion = hasPromotion
            self.redeemPoints = redeemPoints
            self.voucherCode = voucherCode
            self.orderId = orderId
        }
    }

    /// What a checkout would get (PreviewOrder): the quote, at the member's tier.
    public struct CheckoutPreview: Sendable {
        public var quote: CheckoutQuote
        /// The member's tier ("" for none).
        public var tierId: String
        /// R-SEG-4: the promotion applied, and what it takes off.
        public var promotion: PromotionOffer?
        public var promotionDiscountVnd: Int64 = 0
        /// R-ORD-7.
        public var voucherDiscountVnd: Int64 = 0
    }

    /// Applies an order event once by its id: PAID earns points (at the member's tier
    /// before this order) and counts toward the tier; CANCELLED or REFUNDED reverses
    /// both. The same channel rules for every channel (R-LOY-3).
    public func recordOrderEvent(shop: String, _ event: OrderEvent, nowMs: Int64) async throws -> OrderEventOutcome {
        return try await write { db in
            let first = try await db.raw("""
                INSERT INTO seen_events (shop_id, event_id, at_ms) VALUES (\(bind: shop), \(bind: event.eventId), \(bind: nowMs))
                ON CONFLICT (shop_id, event_id) DO NOTHING RETURNING event_id
                """).all()
            guard !first.isEmpty else {
                return OrderEventOutcome(applied: false, pointsDelta: 0, member: try await Self.member(db, shop: shop, customerId: event.customerId) ?? Member())
            }
            let program = try await Self.program(db, shop: shop)
            let existing = try await db.raw("""
                SELECT customer_id, amount_vnd, reversed FROM orders WHERE shop_id = \(bind: shop) AND order_id = \(bind: event.orderId)
                """).first()
            if let existing, try existing.string("customer_id") != event.customerId {
                throw LoyaltyError.orderOfAnotherCustomer(event.orderId)
            }
            var delta: Int64 = 0
            switch event.kind {
            case .paid:
                guard existing == nil else { break }  // paid once; a second PAID changes nothing
                try await Self.ensureMember(db, shop: shop, customerId: event.customerId, atMs: event.atMs)
                let tierId = try await db.raw("SELECT tier_id FROM members WHERE shop_id = \(bind: shop) AND customer_id = \(bind: event.customerId)")
                    .first()!.string("tier_id")
                let multiplier = Self.rules(try await Self.tiers(db, shop: shop)).first { $0.tierId == tierId }?.pointsMultiplier ?? 1
                try await db.raw("""
                    INSERT INTO orders (shop_id, order_id, customer_id, amount_vnd, channel, district, province, province_key, used_offer, paid_at_ms, phone)
                    VALUES (\(bind: shop), \(bind: event.orderId), \(bind: event.customerId), \(bind: event.amountVnd), \(bind: Int64(event.channel.rawValue)),
                            \(bind: event.district), \(bind: event.province), \(bind: TagName.key(event.province)), \(bind: event.usedOffer ? 1 : 0 as Int64),
                            \(bind: event.atMs), \(bind: event.phone))
                    """).run()
                try await db.raw("""
                    UPDATE members SET order_count = order_count + 1, total_spent_vnd = total_spent_vnd + \(bind: event.amountVnd)
                    WHERE shop_id = \(bind: shop) AND customer_id = \(bind: event.customerId)
                    """).run()
                let earned = program.pointsToEarn(paidVnd: event.amountVnd, multiplier: multiplier)
                if earned > 0 {
                    try await Self.withAccount(db, shop: shop, customerId: event.customerId, nowMs: nowMs, order: event.orderId) { account in
                        try? account.add(earned, atMs: event.atMs, expiresAtMs: program.expiresAt(earnedAtMs: event.atMs), orderId: event.orderId, reason: "order paid")
                    }
                    delta = earned
                }
                try await Self.rerank(db, shop: shop, customerId: event.customerId, program: program, nowMs: nowMs)
            case .cancelled, .refunded:
                guard let existing else {
                    // R-ORD-7: an order cancelled before it was paid gives its voucher back.
                    try await db.raw("""
                        UPDATE vouchers SET redeemed_order_id = '', redeemed_at_ms = 0
                        WHERE shop_id = \(bind: shop) AND redeemed_order_id = \(bind: event.orderId)
                        """).run()
                    // An order that was never paid (order-svc voids one it could not create) still
                    // gives back the points redeemed on it.
                    if try await Self.member(db, shop: shop, customerId: event.customerId) != nil {
                        let reason = event.kind == .cancelled ? "order cancelled" : "order refunded"
                        delta = try await Self.withAccount(db, shop: shop, customerId: event.customerId, nowMs: nowMs, order: event.orderId) { account in
                            account.reverseOrder(event.orderId, atMs: event.atMs, reason: reason)
                        }
                    }
                    break
                }
                guard try existing.int64("reversed") == 0 else { break }
                let amount = try existing.int64("amount_vnd")
                try await db.raw("""
                    UPDATE orders SET reversed = 1, reversed_at_ms = \(bind: event.atMs) WHERE shop_id = \(bind: shop) AND order_id = \(bind: event.orderId)
                    """).run()
                try await db.raw("""
                    UPDATE members SET order_count = order_count - 1, total_spent_vnd = total_spent_vnd - \(bind: amount)
                    WHERE shop_id = \(bind: shop) AND customer_id = \(bind: event.customerId)
                    """).run()
                let reason = event.kind == .cancelled ? "order cancelled" : "order refunded"
                delta = try await Self.withAccount(db, shop: shop, customerId: event.customerId, nowMs: nowMs, order: event.orderId) { account in
                    account.reverseOrder(event.orderId, atMs: event.atMs, reason: reason)
                }
                try await Self.rerank(db, shop: shop, customerId: event.customerId, program: program, nowMs: nowMs)
            }
            return OrderEventOutcome(
                applied: true, pointsDelta: delta, member: try await Self.member(db, shop: shop, customerId: event.customerId) ?? Member()
            )
        }
    }

    /// R-LOY-4, R-PTS-1, R-PTS-3, R-SEG-4, R-ORD-7: what an order would get; writes nothing.
    public func preview(shop: String, _ checkout: Checkout, nowMs: Int64) async throws -> CheckoutPreview {
        let customerId = checkout.customerId
        let subtotalVnd = checkout.subtotalVnd
        return try await db.read { db in
            let program = try await Self.program(db, shop: shop)
            let member = try await db.raw("SELECT tier_id FROM members WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)").first()
            let tierId = try member?.string("tier_id") ?? ""
            let tier = tierId.isEmpty ? nil : Self.rules(try await Self.tiers(db, shop: shop)).first { $0.tierId == tierId }
            // Only points not past their expiry can be spent.
            let balance = try await db.raw("""
                SELECT COALESCE(SUM(remaining), 0) AS n FROM points_lots WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
                  AND remaining > 0 AND (expires_at_ms = 0 OR expires_at_ms > \(bind: nowMs))
                """).first()!.int64("n")
            let offers = try await Self.applicablePromotions(db, shop: shop, customerId: customerId, tierId: tierId, nowMs: nowMs)
            let best = PromotionOffer.best(of: offers, subtotalVnd: subtotalVnd, lines: checkout.lines)
            let promotionDiscount = best?.discountVnd ?? 0
            var voucherDiscount: Int64 = 0
            if !checkout.voucherCode.isEmpty {
                voucherDiscount = try await Self.voucherDiscount(
                    db, shop: shop, code: checkout.voucherCode, orderId: checkout.orderId, baseVnd: subtotalVnd - promotionDiscount, nowMs: nowMs
                )
            }
            let quote = program.quote(
                subtotalVnd: subtotalVnd, hasPromotion: checkout.hasPromotion || !checkout.voucherCode.isEmpty, tier: tier, balance: balance,
                redeemPoints: checkout.redeemPoints, promotionsVnd: promotionDiscount + voucherDiscount
            )
            return CheckoutPreview(
                quote: quote, tierId: tier?.tierId ?? "", promotion: best?.offer, promotionDiscountVnd: promotionDiscount, voucherDiscountVnd: voucherDiscount
            )
        }
    }

    /// R-ORD-7: what the voucher takes off `baseVnd`, or why the order cannot use it.
    static func voucherDiscount(_ db: any SQLDatabase, shop: String, code: String, orderId: String, baseVnd: Int64, nowMs: Int64) async throws -> Int64 {
        guard let row = try await db.raw("SELECT * FROM vouchers WHERE shop_id = \(bind: shop) AND code = \(bind: code)").first() else {
            throw LoyaltyError.voucherAtCheckout(code: code, problem: "is not one of this shop's vouchers")
        }
        let voucher = try pending(row, shop: shop).voucher
        if voucher.redeemed && (orderId.isEmpty || voucher.redeemedOrderId != orderId) {
            throw LoyaltyError.voucherAtCheckout(code: code, problem: "was already used by order \(voucher.redeemedOrderId)")
        }
        if nowMs > voucher.expiresAtMs {
            throw LoyaltyError.voucherAtCheckout(code: code, problem: "expired on \(VietnamTime.dateString(atMs: voucher.expiresAtMs))")
        }
        return PromotionOffer.voucherDiscount(percent: Int(voucher.discountPercent), amountVnd: voucher.discountVnd, ofVnd: baseVnd)
    }

    // MARK: Offer dashboard (R-LOY-5)

    /// The value and number of paid, not reversed orders that used an offer, by
    /// district of `province` (matched without accents or case), largest first.
    public func offerRevenueByDistrict(shop: String, province: String, range: DayRange) async throws -> [DistrictRevenue] {
        let ms = range.msRange
        return try await db.read { db in
            var totals: [String: (name: String, revenue: Int64, orders: Int32)] = [:]
            for row in try await db.raw("""
                SELECT district, SUM(amount_vnd) AS revenue, COUNT(*) AS n FROM orders
                WHERE shop_id = \(bind: shop) AND province_key = \(bind: TagName.key(province)) AND used_offer = 1 AND reversed = 0
                  AND paid_at_ms >= \(bind: ms.lowerBound) AND paid_at_ms < \(bind: ms.upperBound)
                GROUP BY district
                """).all() {
                // "Quận 1" and "quan 1" are one district.
                let name = try row.string("district")
                let key = TagName.key(name)
                var total = totals[key] ?? (name, 0, 0)
                total.revenue += try row.int64("revenue")
                total.orders += Int32(try row.int64("n"))
                totals[key] = total
            }
            return totals.values.map { DistrictRevenue(district: $0.name, revenueVnd: $0.revenue, orders: $0.orders) }
                .sorted { ($0.revenueVnd, $1.district) > ($1.revenueVnd, $0.district) }
        }
    }
}
