import ChatMeshAPI

/// R-SEG-4: a promotion as the rule needs it, and which one an order gets. The store
/// loads the promotions that are running and whose audience holds the customer; this
/// decides, in plain Swift, what each takes off and which is best (one per order).
public struct PromotionOffer: Sendable, Hashable {
    public enum Benefit: Sendable, Hashable {
        /// Percent off the subtotal.
        case percent(Int)
        /// An amount off, never more than the subtotal.
        case amount(Int64)
        /// Per-variant prices; a list price above the order's price is ignored.
        case priceList([String: Int64])
    }

    public var promotionId: String
    public var name: String
    public var benefit: Benefit

    public init(promotionId: String, name: String, benefit: Benefit) {
        self.promotionId = promotionId
        self.name = name
        self.benefit = benefit
    }

    /// A line of the order being priced.
    public struct Line: Sendable, Hashable {
        public var variantId: String
        public var quantity: Int64
        public var priceVnd: Int64

        public init(variantId: String, quantity: Int64, priceVnd: Int64) {
            self.variantId = variantId
            self.quantity = quantity
            self.priceVnd = priceVnd
        }
    }

    /// What this promotion takes off an order of `lines` summing to `subtotalVnd`.
    public func discount(subtotalVnd: Int64, lines: [Line]) -> Int64 {
        let off: Int64 = switch benefit {
        case .percent(let percent): subtotalVnd * Int64(percent) / 100
        case .amount(let amount): amount
        case .priceList(let prices):
            lines.reduce(0) { total, line in
                guard let price = prices[line.variantId], price < line.priceVnd else { return total }
                return total + (line.priceVnd - price) * line.quantity
            }
        }
        return max(0, min(off, subtotalVnd))
    }

    /// The best of `offers` for the order: the largest discount, a tie going to the lower
    /// promotion id so that the answer never depends on the order they were loaded in.
    /// nil when none takes anything off.
    public static func best(of offers: [PromotionOffer], subtotalVnd: Int64, lines: [Line]) -> (offer: PromotionOffer, discountVnd: Int64)? {
        var best: (offer: PromotionOffer, discountVnd: Int64)?
        for offer in offers {
            let off = offer.discount(subtotalVnd: subtotalVnd, lines: lines)
            guard off > 0 else { continue }
            if let current = best, current.discountVnd > off || (current.discountVnd == off && current.offer.promotionId < offer.promotionId) { continue }
            best = (offer, off)
        }
        return best
    }

    /// R-ORD-7: what a voucher takes off what is left after the promotion.
    public static func voucherDiscount(percent: Int, amountVnd: Int64, ofVnd base: Int64) -> Int64 {
        let off = percent > 0 ? base * Int64(percent) / 100 : amountVnd
        return max(0, min(off, base))
    }
}
