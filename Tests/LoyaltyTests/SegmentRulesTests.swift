import Loyalty
import MeshRPC
import Testing
import VietnamCommerce

@Suite struct SegmentRulesTests {
    static func range(_ from: (Int, Int, Int), _ to: (Int, Int, Int)) -> DayRange {
        DayRange(fromMs: VietnamTime.ms(year: from.0, month: from.1, day: from.2), toMs: VietnamTime.ms(year: to.0, month: to.1, day: to.2))!
    }

    static let november = range((2026, 11, 1), (2026, 11, 30))

    @Test func rangesAreWholeVietnamDays() {
        // 30 November 23:30 in Vietnam is 16:30 UTC: inside November.
        #expect(Self.november.contains(ms: VietnamTime.ms(year: 2026, month: 11, day: 30, hour: 23, minute: 30)))
        // 1 December 00:30 in Vietnam is still 30 November in UTC: outside.
        #expect(!Self.november.contains(ms: VietnamTime.ms(year: 2026, month: 12, day: 1, hour: 0, minute: 30)))
        #expect(Self.november.contains(ms: VietnamTime.ms(year: 2026, month: 11, day: 1)))
        #expect(!Self.november.contains(ms: VietnamTime.ms(year: 2026, month: 11, day: 1) - 1))
        // Times of day in the bounds do not narrow the range.
        let noon = DayRange(fromMs: VietnamTime.ms(year: 2026, month: 11, day: 1, hour: 12), toMs: VietnamTime.ms(year: 2026, month: 11, day: 30, hour: 12))!
        #expect(noon == Self.november)
        #expect(noon.msRange == VietnamTime.day(year: 2026, month: 11, day: 1).lowerBound..<VietnamTime.day(year: 2026, month: 12, day: 1).lowerBound)
        #expect(DayRange(fromMs: 10, toMs: 5 - VietnamTime.dayMs) == nil)
    }

    @Test func birthdaysAcrossTheYearEndAndOn29February() {
        let holidays = Self.range((2026, 12, 20), (2027, 1, 10))
        #expect(holidays.containsAnniversary(month: 12, day: 25))
        #expect(holidays.containsAnniversary(month: 1, day: 5))
        #expect(!holidays.containsAnniversary(month: 1, day: 11))
        #expect(!holidays.containsAnniversary(month: 12, day: 19))
        // A leap-day birthday is on 28 February in 2027.
        #expect(Self.range((2027, 2, 28), (2027, 2, 28)).containsAnniversary(month: 2, day: 29))
        #expect(!Self.range((2027, 3, 1), (2027, 3, 5)).containsAnniversary(month: 2, day: 29))
        #expect(Self.range((2026, 1, 1), (2027, 1, 1)).containsAnniversary(month: 7, day: 14))
    }

    @Test func conditionsCombineAllOfAndAnyOf() {
        let hoa = CustomerFacts(
            customerId: "hoa", birthday: (1995, 11, 3), memberSinceMs: VietnamTime.ms(year: 2025, month: 3, day: 8), tagKeys: ["het hang"],
            tierId: "gold", points: 1_200,
            orders: [
                CustomerFacts.Order(atMs: VietnamTime.ms(year: 2026, month: 11, day: 30, hour: 23), amountVnd: 450_000, usedOffer: true),
                CustomerFacts.Order(atMs: VietnamTime.ms(year: 2026, month: 10, day: 2), amountVnd: 90_000, reversed: true),
            ]
        )
        let duc = CustomerFacts(customerId: "duc", tierId: "member", points: 90,
                                orders: [CustomerFacts.Order(atMs: VietnamTime.ms(year: 2026, month: 10, day: 2), amountVnd: 200_000)])
        let october = Self.range((2026, 10, 1), (2026, 10, 31))
        let cases: [(SegmentRule.Condition, hoa: Bool, duc: Bool)] = [
            (.purchasedBetween(Self.november), true, false),
            // Hoa's October order was refunded: it is not a purchase.
            (.purchasedBetween(october), false, true),
            (.notPurchasedBetween(october), true, false),
            (.birthdayInMonth(11), true, false),
            (.birthdayBetween(Self.range((2026, 11, 1), (2026, 11, 5))), true, false),
            (.memberSinceBetween(Self.range((2025, 1, 1), (2025, 12, 31))), true, false),
            (.usedOfferBetween(Self.november), true, false),
            (.usedOfferBetween(october), false, false),
            (.hasTag(TagName.key("Hết hàng")), true, false),
            (.tierIs("member"), false, true),
            (.pointsAtLeast(90), true, true),
            (.pointsAtLeast(91), true, false),
        ]
        for (condition, hoaIn, ducIn) in cases {
            let rule = SegmentRule(match: .all, conditions: [condition])
            #expect(rule.matches(hoa) == hoaIn, "\(condition) for Hoa")
            #expect(rule.matches(duc) == ducIn, "\(condition) for Đức")
        }
        let both = [SegmentRule.Condition.tierIs("gold"), .purchasedBetween(october)]
        #expect(!SegmentRule(match: .all, conditions: both).matches(hoa))
        #expect(SegmentRule(match: .any, conditions: both).matches(hoa))
        #expect(SegmentRule(match: .any, conditions: both).matches(duc))
        #expect(!SegmentRule(match: .all, conditions: both).matches(duc))
    }
}
