import MeshRPC
import VietnamCommerce

/// A shop's loyalty program as the rules need it (R-LOY-2, R-PTS-1..3).
public struct ProgramRules: Sendable, Hashable {
    /// R-PTS-2: when earned points expire.
    public enum Expiry: Sendable, Hashable {
        case never
        /// Points expire at the end of this Vietnam day of the year: each point at the first
        /// such day end after it was earned, from `year` on (points earned after this year's
        /// date live until next year's, rather than expiring as they are earned).
        case fixedDate(year: Int, month: Int, day: Int)
        /// A point expires at the end of the Vietnam day `months` calendar months after the day it was earned.
        case afterMonths(Int)
    }

    /// R-LOY-2: which spend counts toward a tier.
    public enum Cycle: Sendable, Hashable {
        case lifetime
        case rolling12Months
        case calendarYear
    }

    public var earnVndPerPoint: Int64
    public var redeemVndPerPoint: Int64
    public var expiry: Expiry
    public var cycle: Cycle
    /// Spend before this does not count toward a tier (0: from the beginning).
    public var cycleStartMs: Int64

    public init(earnVndPerPoint: Int64 = 10_000, redeemVndPerPoint: Int64 = 1_000, expiry: Expiry = .never, cycle: Cycle = .lifetime, cycleStartMs: Int64 = 0) {
        self.earnVndPerPoint = earnVndPerPoint
        self.redeemVndPerPoint = redeemVndPerPoint
        self.expiry = expiry
        self.cycle = cycle
        self.cycleStartMs = cycleStartMs
    }

    /// R-PTS-1: floor(paid value ÷ earn rate) × the tier's multiplier, rounded down.
    /// The multiplier counts in hundredths so that 1.13 × 1,000 is 1,130, not 1,129.
    public func pointsToEarn(paidVnd: Int64, multiplier: Double) -> Int64 {
        guard earnVndPerPoint > 0, paidVnd > 0 else { return 0 }
        let hundredths = Int64((max(0, multiplier) * 100).rounded())
        return (paidVnd / earnVndPerPoint) * hundredths / 100
    }

    /// R-PTS-2: when points earned at `earnedAtMs` expire (nil: never).
    public func expiresAt(earnedAtMs: Int64) -> Int64? {
        switch expiry {
        case .never:
            return nil
        case .fixedDate(let year, let month, let day):
            var y = max(year, VietnamTime.civil(dayNumber: VietnamTime.dayNumber(atMs: earnedAtMs)).year)
            while true {
                // 29 February stands for 28 February in a year without it.
                let end = VietnamTime.day(year: y, month: month, day: min(day, VietnamTime.daysInMonth(year: y, month: month))).upperBound
                if end > earnedAtMs { return end }
                y += 1
            }
        case .afterMonths(let months):
            let (year, month, day) = VietnamTime.civil(dayNumber: VietnamTime.dayNumber(atMs: earnedAtMs))
            let total = year * 12 + (month - 1) + months
            let (y, m) = (total / 12, total % 12 + 1)
            // 31 January + 1 month is the end of February.
            return VietnamTime.day(year: y, month: m, day: min(day, VietnamTime.daysInMonth(year: y, month: m))).upperBound
        }
    }

    /// R-LOY-2: the spend that ranks a member at `nowMs` is the paid value of orders in [from, now].
    public func spendWindowStart(nowMs: Int64) -> Int64 {
        let (year, month, day) = VietnamTime.civil(dayNumber: VietnamTime.dayNumber(atMs: nowMs))
        let cycleFrom: Int64
        switch cycle {
        case .lifetime:
            cycleFrom = Int64.min
        case .rolling12Months:
            // From the same Vietnam day a year ago (29 February counts from 28 February).
            cycleFrom = VietnamTime.day(year: year - 1, month: month, day: min(day, VietnamTime.daysInMonth(year: year - 1, month: month))).lowerBound
        case .calendarYear:
            cycleFrom = VietnamTime.day(year: year, month: 1, day: 1).lowerBound
        }
        return max(cycleFrom, cycleStartMs)
    }

    /// R-LOY-4, R-PTS-3, R-PTS-1: what an order of `subtotalVnd` gets once promotions and a
    /// voucher (R-SEG-4, R-ORD-7) took `promotionsVnd` off: any of those counts as a promotion,
    /// so a tier that does not combine then gives nothing; the tier discount is on what is left.
    public func quote(subtotalVnd: Int64, hasPromotion: Bool, tier: TierRule?, balance: Int64, redeemPoints: Int64, promotionsVnd: Int64 = 0) -> CheckoutQuote {
        let base = max(0, subtotalVnd - promotionsVnd)
        var tierDiscount: Int64 = 0
        if let tier, tier.discountPercent > 0, !(hasPromotion || promotionsVnd > 0) || tier.combinable {
            tierDiscount = base * Int64(tier.discountPercent) / 100
        }
        let afterTier = base - tierDiscount
        let byValue = redeemVndPerPoint > 0 ? afterTier / redeemVndPerPoint : 0
        let redeemed = max(0, min(redeemPoints, balance, byValue))
        let pointsDiscount = redeemed * redeemVndPerPoint
        let paid = afterTier - pointsDiscount
        return CheckoutQuote(
            tierDiscountVnd: tierDiscount, pointsRedeemed: redeemed, pointsDiscountVnd: pointsDiscount,
            pointsToEarn: pointsToEarn(paidVnd: paid, multiplier: tier?.pointsMultiplier ?? 1)
        )
    }
}

/// R-LOY-3, R-PTS-3: what a checkout costs after the tier discount and the points redeemed, and what it earns.
public struct CheckoutQuote: Sendable, Hashable {
    public var tierDiscountVnd: Int64
    public var pointsRedeemed: Int64
    public var pointsDiscountVnd: Int64
    public var pointsToEarn: Int64

    public init(tierDiscountVnd: Int64, pointsRedeemed: Int64, pointsDiscountVnd: Int64, pointsToEarn: Int64) {
        self.tierDiscountVnd = tierDiscountVnd
        self.pointsRedeemed = pointsRedeemed
        self.pointsDiscountVnd = pointsDiscountVnd
        self.pointsToEarn = pointsToEarn
    }
}

/// A tier as the rules need it (R-LOY-2).
public struct TierRule: Sendable, Hashable {
    public var tierId: String
    public var minSpendVnd: Int64
    public var discountPercent: Int
    public var pointsMultiplier: Double
    public var combinable: Bool

    public init(tierId: String, minSpendVnd: Int64, discountPercent: Int = 0, pointsMultiplier: Double = 1, combinable: Bool = false) {
        self.tierId = tierId
        self.minSpendVnd = minSpendVnd
        self.discountPercent = discountPercent
        self.pointsMultiplier = pointsMultiplier
        self.combinable = combinable
    }

    /// R-LOY-2: the highest tier whose threshold the spend reaches (nil: below every tier).
    /// Equal thresholds are ranked by tier id, so the answer never depends on list order.
    public static func rank(spendVnd: Int64, in tiers: [TierRule]) -> TierRule? {
        tiers.filter { $0.minSpendVnd <= spendVnd }.max { ($0.minSpendVnd, $0.tierId) < ($1.minSpendVnd, $1.tierId) }
    }
}
