import Loyalty
import MeshRPC
import Testing
import VietnamCommerce

@Suite struct ProgramRulesTests {
    @Test func earnIsFloorOfPaidOverRateTimesTheMultiplier() {
        let program = ProgramRules(earnVndPerPoint: 10_000)
        #expect(program.pointsToEarn(paidVnd: 259_000, multiplier: 1) == 25)
        #expect(program.pointsToEarn(paidVnd: 259_000, multiplier: 1.5) == 37)   // 25 × 1.5 = 37.5
        // 1,000 × 1.13 in binary floating point is 1,129.99…; in hundredths it is 1,130.
        #expect(program.pointsToEarn(paidVnd: 10_000_000, multiplier: 1.13) == 1_130)
        #expect(program.pointsToEarn(paidVnd: 9_999, multiplier: 2) == 0)
        #expect(program.pointsToEarn(paidVnd: -5, multiplier: 1) == 0)
    }

    @Test func expiryPolicies() {
        let earned = VietnamTime.ms(year: 2026, month: 1, day: 31, hour: 23, minute: 30)
        #expect(ProgramRules(expiry: .never).expiresAt(earnedAtMs: earned) == nil)
        #expect(ProgramRules(expiry: .fixedDate(year: 2026, month: 12, day: 31)).expiresAt(earnedAtMs: earned) == VietnamTime.ms(year: 2027, month: 1, day: 1))
        // 31 January + 1 month: the end of 28 February (2026 is no leap year); + 13 months: 28 February 2027; + 25: 29 February 2028.
        let months = ProgramRules(expiry: .afterMonths(1))
        #expect(months.expiresAt(earnedAtMs: earned) == VietnamTime.ms(year: 2026, month: 3, day: 1))
        #expect(ProgramRules(expiry: .afterMonths(13)).expiresAt(earnedAtMs: earned) == VietnamTime.ms(year: 2027, month: 3, day: 1))
        #expect(ProgramRules(expiry: .afterMonths(25)).expiresAt(earnedAtMs: earned) == VietnamTime.ms(year: 2028, month: 3, day: 1))
        // 23:30 in Vietnam on 31 January is 16:30 UTC the same day: the Vietnam day decides.
        let lateUTC = VietnamTime.ms(year: 2026, month: 2, day: 1, hour: 0, minute: 30)   // 31 Jan 17:30 UTC
        #expect(ProgramRules(expiry: .afterMonths(12)).expiresAt(earnedAtMs: lateUTC) == VietnamTime.ms(year: 2027, month: 2, day: 2))
    }

    /// R-PTS-2: a fixed date is a day of the year; points earned after this year's expire at next year's,
    /// never as they are earned (before, a point earned on 2 January 2027 expired on 31 December 2026).
    @Test func aFixedDateIsTheNextOccurrenceOfThatDay() {
        let yearEnd = ProgramRules(expiry: .fixedDate(year: 2026, month: 12, day: 31))
        let afterIt = VietnamTime.ms(year: 2027, month: 1, day: 2, hour: 9)
        #expect(yearEnd.expiresAt(earnedAtMs: afterIt) == VietnamTime.ms(year: 2028, month: 1, day: 1))
        // Earned on the day itself: that day's end.
        #expect(yearEnd.expiresAt(earnedAtMs: VietnamTime.ms(year: 2027, month: 12, day: 31, hour: 23)) == VietnamTime.ms(year: 2028, month: 1, day: 1))
        // Never before the first occurrence the shop chose.
        #expect(yearEnd.expiresAt(earnedAtMs: VietnamTime.ms(year: 2025, month: 3, day: 1)) == VietnamTime.ms(year: 2027, month: 1, day: 1))
        // 29 February stands for 28 February in other years.
        let leapDay = ProgramRules(expiry: .fixedDate(year: 2028, month: 2, day: 29))
        #expect(leapDay.expiresAt(earnedAtMs: VietnamTime.ms(year: 2028, month: 3, day: 5)) == VietnamTime.ms(year: 2029, month: 3, day: 1))
        for earned in stride(from: VietnamTime.ms(year: 2026, month: 1, day: 1), to: VietnamTime.ms(year: 2030, month: 1, day: 1), by: Int(7 * VietnamTime.dayMs)) {
            let expires = yearEnd.expiresAt(earnedAtMs: earned)!
            #expect(expires > earned && expires - earned <= 366 * VietnamTime.dayMs + VietnamTime.dayMs)
        }
    }

    /// R-SEG-4: what each kind of promotion takes off, and which one an order gets.
    @Test func theBestPromotionWinsOnePerOrder() {
        let lines = [PromotionOffer.Line(variantId: "v1", quantity: 2, priceVnd: 200_000), PromotionOffer.Line(variantId: "v2", quantity: 1, priceVnd: 100_000)]
        let percent = PromotionOffer(promotionId: "p1", name: "10%", benefit: .percent(10))
        let amount = PromotionOffer(promotionId: "p2", name: "60k", benefit: .amount(60_000))
        let prices = PromotionOffer(promotionId: "p3", name: "list", benefit: .priceList(["v1": 170_000, "v2": 120_000]))
        #expect(percent.discount(subtotalVnd: 500_000, lines: lines) == 50_000)
        #expect(amount.discount(subtotalVnd: 500_000, lines: lines) == 60_000)
        #expect(amount.discount(subtotalVnd: 40_000, lines: []) == 40_000)   // never more than the order
        // v1 two at 30,000 off each; v2's list price is above the order's, so ignored.
        #expect(prices.discount(subtotalVnd: 500_000, lines: lines) == 60_000)
        let best = PromotionOffer.best(of: [percent, prices, amount], subtotalVnd: 500_000, lines: lines)
        // A tie goes to the lower id, whatever the order they came in.
        #expect(best?.offer.promotionId == "p2" && best?.discountVnd == 60_000)
        #expect(PromotionOffer.best(of: [amount, prices, percent], subtotalVnd: 500_000, lines: lines)?.offer.promotionId == "p2")
        #expect(PromotionOffer.best(of: [prices], subtotalVnd: 100_000, lines: [lines[1]]) == nil)
        // The tier joins a promotion only where it combines, on what the promotion left.
        let program = ProgramRules(earnVndPerPoint: 10_000)
        let gold = TierRule(tierId: "gold", minSpendVnd: 0, discountPercent: 10, combinable: false)
        #expect(program.quote(subtotalVnd: 500_000, hasPromotion: false, tier: gold, balance: 0, redeemPoints: 0, promotionsVnd: 60_000).tierDiscountVnd == 0)
        let silver = TierRule(tierId: "silver", minSpendVnd: 0, discountPercent: 10, combinable: true)
        #expect(program.quote(subtotalVnd: 500_000, hasPromotion: false, tier: silver, balance: 0, redeemPoints: 0, promotionsVnd: 60_000).tierDiscountVnd == 44_000)
    }

    @Test func spendWindowsPerCycle() {
        let now = VietnamTime.ms(year: 2026, month: 11, day: 25, hour: 10)
        #expect(ProgramRules(cycle: .lifetime).spendWindowStart(nowMs: now) == 0)
        let start = VietnamTime.ms(year: 2025, month: 6, day: 1)
        #expect(ProgramRules(cycle: .lifetime, cycleStartMs: start).spendWindowStart(nowMs: now) == start)
        #expect(ProgramRules(cycle: .rolling12Months).spendWindowStart(nowMs: now) == VietnamTime.ms(year: 2025, month: 11, day: 25))
        #expect(ProgramRules(cycle: .calendarYear).spendWindowStart(nowMs: now) == VietnamTime.ms(year: 2026, month: 1, day: 1))
        // A start date inside the cycle wins over the cycle's own start.
        let march = VietnamTime.ms(year: 2026, month: 3, day: 1)
        #expect(ProgramRules(cycle: .calendarYear, cycleStartMs: march).spendWindowStart(nowMs: now) == march)
        let leap = VietnamTime.ms(year: 2028, month: 2, day: 29, hour: 12)
        #expect(ProgramRules(cycle: .rolling12Months).spendWindowStart(nowMs: leap) == VietnamTime.ms(year: 2027, month: 2, day: 28))
    }

    @Test func tiersRankByTheHighestThresholdReached() {
        let tiers = [
            TierRule(tierId: "gold", minSpendVnd: 5_000_000, discountPercent: 10),
            TierRule(tierId: "member", minSpendVnd: 0),
            TierRule(tierId: "silver", minSpendVnd: 2_000_000, discountPercent: 5),
        ]
        #expect(TierRule.rank(spendVnd: 0, in: tiers)?.tierId == "member")
        #expect(TierRule.rank(spendVnd: 1_999_999, in: tiers)?.tierId == "member")
        #expect(TierRule.rank(spendVnd: 2_000_000, in: tiers)?.tierId == "silver")
        #expect(TierRule.rank(spendVnd: 9_000_000, in: tiers)?.tierId == "gold")
        #expect(TierRule.rank(spendVnd: 9_000_000, in: []) == nil)
        #expect(TierRule.rank(spendVnd: 100, in: [TierRule(tierId: "vip", minSpendVnd: 1_000)]) == nil)
    }

    @Test func checkoutQuote() {
        let program = ProgramRules(earnVndPerPoint: 10_000, redeemVndPerPoint: 1_000)
        let gold = TierRule(tierId: "gold", minSpendVnd: 0, discountPercent: 10, pointsMultiplier: 1.5, combinable: false)
        // 500,000 − 10 % = 450,000; 100 points = 100,000; paid 350,000 → 35 × 1.5 = 52 points.
        #expect(program.quote(subtotalVnd: 500_000, hasPromotion: false, tier: gold, balance: 300, redeemPoints: 100)
                == CheckoutQuote(tierDiscountVnd: 50_000, pointsRedeemed: 100, pointsDiscountVnd: 100_000, pointsToEarn: 52))
        // With a promotion a non-combinable tier gives no discount (R-LOY-4); a combinable one does.
        #expect(program.quote(subtotalVnd: 500_000, hasPromotion: true, tier: gold, balance: 0, redeemPoints: 0).tierDiscountVnd == 0)
        var combinable = gold
        combinable.combinable = true
        #expect(program.quote(subtotalVnd: 500_000, hasPromotion: true, tier: combinable, balance: 0, redeemPoints: 0).tierDiscountVnd == 50_000)
        // Redemption is capped by the balance and by the order value (R-PTS-3).
        #expect(program.quote(subtotalVnd: 500_000, hasPromotion: false, tier: nil, balance: 40, redeemPoints: 100).pointsRedeemed == 40)
        let capped = program.quote(subtotalVnd: 120_500, hasPromotion: false, tier: nil, balance: 10_000, redeemPoints: 10_000)
        #expect(capped.pointsRedeemed == 120 && capped.pointsDiscountVnd == 120_000 && capped.pointsToEarn == 0)
        #expect(program.quote(subtotalVnd: 100_000, hasPromotion: false, tier: nil, balance: 50, redeemPoints: -5).pointsRedeemed == 0)
    }
}
