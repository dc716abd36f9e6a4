import ChatMeshAPI
import Foundation
@testable import Loyalty
import MeshRPC
import MeshStore
import MeshTestSupport
import SQLKit
import Testing
import VietnamCommerce

/// LoyaltyService through its router (tokens, shop scope, decoding) on SQLite.
@Suite struct LoyaltyServiceTests {
    static let shop = LoyaltyHarness.shop

    /// Bạc from 2M (3%, combinable), Vàng from 5M (5%, ×1.5, not combinable), 10,000đ a point, 1,000đ per redeemed point.
    static func standardProgram(_ h: LoyaltyHarness, cycle: Program.Cycle = .lifetime, expiry: PointsExpiry? = nil) async throws -> (silver: Tier, gold: Tier) {
        _ = try await h.client.configureProgram(ConfigureProgramRequest(
            shopId: shop, earnVndPerPoint: 10_000, redeemVndPerPoint: 1_000, expiry: expiry, cycle: cycle
        ))
        let silver = try await h.client.upsertTier(UpsertTierRequest(shopId: shop, name: "Bạc", minSpendVnd: 2_000_000, discountPercent: 3, combinable: true))
        let gold = try await h.client.upsertTier(UpsertTierRequest(
            shopId: shop, name: "Vàng", minSpendVnd: 5_000_000, discountPercent: 5, pointsMultiplier: 1.5, combinable: false
        ))
        return (silver, gold)
    }

    @Test func ordersEarnPointsAndRankTiersAndEditingTiersReranks() async throws {
        try await LoyaltyHarness.run { h in
            let (silver, gold) = try await Self.standardProgram(h)
            // 2,590,000đ → 259 points at no tier; the order makes her Bạc.
            let first = try await h.paid("lan", "o1", vnd: 2_590_000)
            #expect(first.applied && first.pointsDelta == 259)
            #expect(first.member?.tierId == silver.tierId && first.member?.tierName == "Bạc")
            // Bạc's multiplier is 1: 3,000,000 → 300; she reaches Vàng (5.59M) after it.
            #expect(try await h.paid("lan", "o2", vnd: 3_000_000).pointsDelta == 300)
            var lan = try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "lan"))
            #expect(lan.tierId == gold.tierId && lan.points == 559 && lan.orderCount == 2 && lan.totalSpentVnd == 5_590_000)
            // At Vàng, ×1.5: 1,000,000 → 100 × 1.5 = 150.
            #expect(try await h.paid("lan", "o3", vnd: 1_000_000).pointsDelta == 150)

            // Raising Vàng to 7M re-ranks her to Bạc at once; lowering it brings her back.
            _ = try await h.client.upsertTier(UpsertTierRequest(
                shopId: Self.shop, tierId: gold.tierId, name: "Vàng", minSpendVnd: 7_000_000, discountPercent: 5, pointsMultiplier: 1.5
            ))
            lan = try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "lan"))
            #expect(lan.tierId == silver.tierId)
            _ = try await h.client.deleteTier(DeleteTierRequest(shopId: Self.shop, tierId: silver.tierId))
            lan = try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "lan"))
            #expect(lan.tierId == "" && lan.tierName == "")
            let tiers = try await h.client.listTiers(ListTiersRequest(shopId: Self.shop)).tiers
            #expect(tiers.map(\.name) == ["Vàng"])
            await expectStatus(.alreadyExists, naming: "name") {
                _ = try await h.client.upsertTier(UpsertTierRequest(shopId: Self.shop, name: "vang", minSpendVnd: 1))
            }
        }
    }

    @Test func rollingAndCalendarCyclesCountOnlyTheirWindow() async throws {
        try await LoyaltyHarness.run { h in
            let (silver, _) = try await Self.standardProgram(h, cycle: .rolling12Months)
            // 2.5M spent 400 days ago and 1M 30 days ago: 1M in the last 12 months, no tier.
            try await h.paid("minh", "old", vnd: 2_500_000, daysAgo: 400)
            try await h.paid("minh", "new", vnd: 1_000_000, daysAgo: 30)
            #expect(try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "minh")).tierId == "")
            // Lifetime counts both: Bạc.
            _ = try await h.client.configureProgram(ConfigureProgramRequest(shopId: Self.shop, earnVndPerPoint: 10_000, redeemVndPerPoint: 1_000, cycle: .lifetime))
            #expect(try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "minh")).tierId == silver.tierId)
            // Calendar year from 1 January 2026: only "new" (26 October 2026) counts.
            _ = try await h.client.configureProgram(ConfigureProgramRequest(
                shopId: Self.shop, earnVndPerPoint: 10_000, redeemVndPerPoint: 1_000, cycle: .calendarYear, cycleStartMs: VietnamTime.ms(year: 2026, month: 1, day: 1)
            ))
            #expect(try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "minh")).tierId == "")
        }
    }

    @Test func previewAppliesTierDiscountCombinabilityAndRedemptionCapsAndWritesNothing() async throws {
        try await LoyaltyHarness.run { h in
            let (silver, gold) = try await Self.standardProgram(h)
            try await h.paid("hoa", "o1", vnd: 6_000_000)      // 600 points, Vàng
            try await h.paid("tu", "o2", vnd: 2_000_000)       // 200 points, Bạc
            let before = try await h.rowCounts()

            var quote = try await h.client.previewOrder(PreviewOrderRequest(shopId: Self.shop, customerId: "hoa", subtotalVnd: 1_000_000, redeemPoints: 100))
            #expect(quote.tierId == gold.tierId && quote.tierDiscountVnd == 50_000 && quote.pointsRedeemed == 100 && quote.pointsDiscountVnd == 100_000)
            // Vàng does not combine with a promotion: no tier discount.
            quote = try await h.client.previewOrder(PreviewOrderRequest(shopId: Self.shop, customerId: "hoa", subtotalVnd: 1_000_000, hasPromotion: true))
            #expect(quote.tierDiscountVnd == 0)
            // Bạc combines: 3%.
            quote = try await h.client.previewOrder(PreviewOrderRequest(shopId: Self.shop, customerId: "tu", subtotalVnd: 1_000_000, hasPromotion: true))
            #expect(quote.tierId == silver.tierId && quote.tierDiscountVnd == 30_000)
            // Redemption is capped by the balance (200) and by what is left to pay.
            quote = try await h.client.previewOrder(PreviewOrderRequest(shopId: Self.shop, customerId: "tu", subtotalVnd: 1_000_000, redeemPoints: 5_000))
            #expect(quote.pointsRedeemed == 200 && quote.pointsDiscountVnd == 200_000)
            quote = try await h.client.previewOrder(PreviewOrderRequest(shopId: Self.shop, customerId: "tu", subtotalVnd: 50_000, redeemPoints: 200))
            #expect(quote.pointsDiscountVnd + quote.tierDiscountVnd <= 50_000)
            // A customer who is no member yet previews with no tier and no points.
            quote = try await h.client.previewOrder(PreviewOrderRequest(shopId: Self.shop, customerId: "new", subtotalVnd: 300_000, redeemPoints: 10))
            #expect(quote.tierDiscountVnd == 0 && quote.pointsRedeemed == 0 && quote.pointsToEarn == 30)
            #expect(try await h.rowCounts() == before)
        }
    }

    @Test func theSameOrderEventFiveTimesCountsOnceAndCancellationReversesIt() async throws {
        try await LoyaltyHarness.run { h in
            _ = try await Self.standardProgram(h)
            let event = RecordOrderEventRequest(
                shopId: Self.shop, eventId: "evt-1", orderId: "o1", customerId: "an", kind: .paid, amountVnd: 1_230_000, channel: .livestream
            )
            var applied = 0
            for _ in 0..<5 where try await h.client.recordOrderEvent(event).applied { applied += 1 }
            #expect(applied == 1)
            var an = try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "an"))
            #expect(an.points == 123 && an.orderCount == 1 && an.totalSpentVnd == 1_230_000)

            // 100 points spent on order o9, then o1 is cancelled: o1's points go (123, of which 100 were spent,
            // so the other lots pay — there are none), o9's redemption stays (o9 is not cancelled).
            try await h.paid("an", "o2", vnd: 500_000)                       // +50
            _ = try await h.client.redeemPoints(RedeemPointsRequest(shopId: Self.shop, customerId: "an", points: 100, orderId: "o9"))
            #expect(try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "an")).points == 73)
            let cancel = RecordOrderEventRequest(shopId: Self.shop, eventId: "evt-2", orderId: "o9-earner", customerId: "an", kind: .cancelled)
            #expect(try await h.client.recordOrderEvent(cancel).pointsDelta == 0)   // an order loyalty never saw: nothing to reverse
            // o9 itself is cancelled: its 100 redeemed points come back.
            try await h.paid("an", "o9", vnd: 1_000)
            let back = try await h.client.recordOrderEvent(RecordOrderEventRequest(shopId: Self.shop, eventId: "evt-3", orderId: "o9", customerId: "an", kind: .cancelled))
            #expect(back.pointsDelta == 100)
            an = try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "an"))
            #expect(an.points == 173 && an.orderCount == 2)
            // o1 refunded: its 123 points leave; spent ones come out of the other lots.
            let refund = try await h.client.recordOrderEvent(RecordOrderEventRequest(shopId: Self.shop, eventId: "evt-4", orderId: "o1", customerId: "an", kind: .refunded))
            #expect(refund.pointsDelta == -123)
            an = try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "an"))
            #expect(an.points == 50 && an.orderCount == 1 && an.totalSpentVnd == 500_000)
            #expect(try await h.ledgerSum("an") == an.points)
            let kinds = try await h.store.ledger(shop: Self.shop, customerId: "an").map(\.kind)
            #expect(kinds == ["earn", "earn", "redeem", "restore", "reverse"])
        }
    }

    @Test func anOrderRedeemsOnceAndAVoidedOrderGivesItsPointsBack() async throws {
        try await LoyaltyHarness.run { h in
            _ = try await Self.standardProgram(h)
            try await h.paid("dung", "o1", vnd: 1_000_000)   // 100
            let redeem = RedeemPointsRequest(shopId: Self.shop, customerId: "dung", points: 40, orderId: "o-new")
            #expect(try await h.client.redeemPoints(redeem).points == 60)
            // order-svc retrying after a time-out: no second redemption.
            #expect(try await h.client.redeemPoints(redeem).points == 60)
            // order-svc could not create o-new after all: it voids it, and the 40 points come back.
            let void = try await h.client.recordOrderEvent(RecordOrderEventRequest(
                shopId: Self.shop, eventId: "void-o-new", orderId: "o-new", customerId: "dung", kind: .cancelled
            ))
            #expect(void.pointsDelta == 40 && void.member?.points == 100)
            #expect(try await h.ledgerSum("dung") == 100)
        }
    }

    @Test func redemptionIsCappedAndAdjustmentsNeedAReasonAndAStaffMember() async throws {
        try await LoyaltyHarness.run { h in
            _ = try await Self.standardProgram(h)
            try await h.paid("binh", "o1", vnd: 800_000)   // 80
            let before = try await h.rowCounts()
            await expectStatus(.failedPrecondition, naming: "points") {
                _ = try await h.client.redeemPoints(RedeemPointsRequest(shopId: Self.shop, customerId: "binh", points: 81, orderId: "o2"))
            }
            await expectStatus(.invalidArgument, naming: "reason") {
                _ = try await h.client.adjustPoints(AdjustPointsRequest(shopId: Self.shop, customerId: "binh", points: 10))
            }
            await expectStatus(.failedPrecondition, naming: "points") {
                _ = try await h.client.adjustPoints(AdjustPointsRequest(shopId: Self.shop, customerId: "binh", points: -81, reason: "nhầm"))
            }
            await expectStatus(.notFound, naming: "customer_id") {
                _ = try await h.client.adjustPoints(AdjustPointsRequest(shopId: Self.shop, customerId: "ghost", points: 5, reason: "quà"))
            }
            #expect(try await h.rowCounts() == before)

            let member = try await h.client.adjustPoints(AdjustPointsRequest(shopId: Self.shop, customerId: "binh", points: 20, reason: "Quà sinh nhật"))
            #expect(member.points == 100)
            let last = try await h.store.ledger(shop: Self.shop, customerId: "binh").last!
            #expect(last.kind == "adjust" && last.points == 20 && last.reason == "Quà sinh nhật" && last.staffId == "staff-1")
        }
    }

    @Test func pointsExpireAfterMonthsAndAtAFixedDateOldestSpentFirst() async throws {
        try await LoyaltyHarness.run { h in
            _ = try await Self.standardProgram(h, expiry: PointsExpiry(kind: .afterMonths, months: 1))
            // 100 points earned 40 days ago (expired by now, 25 Nov), 50 earned today.
            try await h.paid("chi", "old", vnd: 1_000_000, daysAgo: 40)
            try await h.paid("chi", "new", vnd: 500_000)
            var chi = try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "chi"))
            #expect(chi.points == 150)
            #expect(chi.expiring.map(\.points) == [100, 50])
            // Expired points cannot be spent even before the nightly run.
            await expectStatus(.failedPrecondition, naming: "points") {
                _ = try await h.client.redeemPoints(RedeemPointsRequest(shopId: Self.shop, customerId: "chi", points: 51, orderId: "x"))
            }
            #expect(try await h.client.expirePoints(ExpirePointsRequest(shopId: Self.shop)).expiredPoints == 100)
            #expect(try await h.client.expirePoints(ExpirePointsRequest(shopId: Self.shop)).expiredPoints == 0)
            chi = try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "chi"))
            #expect(chi.points == 50)
            #expect(try await h.ledgerSum("chi") == 50)
            await expectStatus(.invalidArgument, naming: "as_of_ms") {
                _ = try await h.client.expirePoints(ExpirePointsRequest(shopId: Self.shop, asOfMs: h.clock.now + 86_400_000))
            }
            await expectStatus(.invalidArgument, naming: "expiry.date") {
                _ = try await h.client.configureProgram(ConfigureProgramRequest(
                    shopId: Self.shop, earnVndPerPoint: 10_000, expiry: PointsExpiry(kind: .fixedDate, date: "2026-02-30")
                ))
            }
        }
    }

    @Test func offerRevenueByDistrictMatchesHandComputedFigures() async throws {
        try await LoyaltyHarness.run { h in
            _ = try await Self.standardProgram(h)
            // In range (1–30 November, Vietnam), Hồ Chí Minh, with an offer:
            //   Quận 1: 500,000 + 250,000 ("quận 1" is the same district) = 750,000, 2 orders
            //   Quận 3: 1,200,000, 1 order
            // Out: no offer; Hà Nội; 40 days ago; cancelled.
            try await h.paid("a", "o1", vnd: 500_000, daysAgo: 1, offer: true, district: "Quận 1", province: "Hồ Chí Minh")
            try await h.paid("b", "o2", vnd: 250_000, daysAgo: 2, offer: true, district: "quận 1", province: "Hồ Chí Minh")
            try await h.paid("c", "o3", vnd: 1_200_000, daysAgo: 3, offer: true, district: "Quận 3", province: "ho chi minh")
            try await h.paid("d", "o4", vnd: 9_000_000, daysAgo: 1, offer: false, district: "Quận 1", province: "Hồ Chí Minh")
            try await h.paid("e", "o5", vnd: 7_000_000, daysAgo: 1, offer: true, district: "Ba Đình", province: "Hà Nội")
            try await h.paid("f", "o6", vnd: 3_000_000, daysAgo: 40, offer: true, district: "Quận 1", province: "Hồ Chí Minh")
            try await h.paid("g", "o7", vnd: 4_000_000, daysAgo: 1, offer: true, district: "Quận 3", province: "Hồ Chí Minh")
            _ = try await h.client.recordOrderEvent(RecordOrderEventRequest(shopId: Self.shop, eventId: "c7", orderId: "o7", customerId: "g", kind: .cancelled))
            let rows = try await h.client.getOfferRevenueByDistrict(GetOfferRevenueByDistrictRequest(
                shopId: Self.shop, province: "Hồ Chí Minh",
                fromMs: VietnamTime.ms(year: 2026, month: 11, day: 1), toMs: VietnamTime.ms(year: 2026, month: 11, day: 30, hour: 8)
            )).rows
            #expect(rows.map(\.revenueVnd) == [1_200_000, 750_000])
            #expect(rows.map(\.orders) == [1, 2])
            #expect(TagName.key(rows[1].district) == TagName.key("Quận 1"))
            await expectStatus(.invalidArgument, naming: "province") {
                _ = try await h.client.getOfferRevenueByDistrict(GetOfferRevenueByDistrictRequest(shopId: Self.shop, fromMs: 1, toMs: 2))
            }
        }
    }

    @Test func anotherShopSeesNothingAndCannotWrite() async throws {
        try await LoyaltyHarness.run { h in
            _ = try await Self.standardProgram(h)
            try await h.paid("lan", "o1", vnd: 2_000_000)
            let other = h.client(shop: "shop-other")
            await expectStatus(.notFound, naming: "customer_id") {
                _ = try await other.getMember(GetMemberRequest(shopId: "shop-other", customerId: "lan"))
            }
            #expect(try await other.listTiers(ListTiersRequest(shopId: "shop-other")).tiers.isEmpty)
            #expect(try await other.listMembers(ListMembersRequest(shopId: "shop-other")).members.isEmpty)
            let before = try await h.rowCounts()
            await expectStatus(.permissionDenied, naming: "shop_id") {
                _ = try await other.adjustPoints(AdjustPointsRequest(shopId: Self.shop, customerId: "lan", points: 1_000, reason: "hack"))
            }
            await expectStatus(.invalidArgument, naming: "tags[1]") {
                _ = try await h.client.upsertCustomerProfile(UpsertCustomerProfileRequest(shopId: Self.shop, customerId: "lan", tags: ["VIP", ""]))
            }
            await expectStatus(.invalidArgument, naming: "phone") {
                _ = try await h.client.upsertCustomerProfile(UpsertCustomerProfileRequest(shopId: Self.shop, customerId: "lan", phone: "12345"))
            }
            await expectStatus(.invalidArgument, naming: "birthday") {
                _ = try await h.client.upsertCustomerProfile(UpsertCustomerProfileRequest(shopId: Self.shop, customerId: "lan", birthday: "2030-01-01"))
            }
            await expectStatus(.invalidArgument, naming: "amount_vnd") {
                _ = try await h.client.recordOrderEvent(RecordOrderEventRequest(shopId: Self.shop, eventId: "e", orderId: "o", customerId: "c", kind: .paid))
            }
            await expectStatus(.invalidArgument, naming: "discount_percent") {
                _ = try await h.client.upsertTier(UpsertTierRequest(shopId: Self.shop, name: "Kim cương", discountPercent: 101))
            }
            #expect(try await h.rowCounts() == before)
        }
    }

    @Test func listMembersFiltersByTierAndPointsAndPages() async throws {
        try await LoyaltyHarness.run { h in
            let (silver, _) = try await Self.standardProgram(h)
            for i in 1..<25 { try await h.paid(String(format: "c%02d", i), "o\(i)", vnd: Int64(i) * 200_000) }
            // Bạc is 2M to 5M: c10…c24 spent 2.0M…4.8M.
            var seen: [String] = []
            var token = ""
            repeat {
                let page = try await h.client.listMembers(ListMembersRequest(shopId: Self.shop, tierId: silver.tierId, pageSize: 4, pageToken: token))
                seen += page.members.map(\.customerId)
                token = page.nextPageToken
            } while !token.isEmpty
            #expect(seen == (10..<25).map { String(format: "c%02d", $0) })
            let rich = try await h.client.listMembers(ListMembersRequest(shopId: Self.shop, minPoints: 400))
            #expect(rich.members.map(\.customerId) == (20..<25).map { String(format: "c%02d", $0) })
        }
    }

    /// conversation-svc's outbox may deliver a profile twice, and an operator's replay may
    /// bring back an old one: the event id is applied once and an older profile never wins.
    @Test func aProfileEventIsAppliedOnceAndAnOlderProfileNeverReplacesANewerOne() async throws {
        try await LoyaltyHarness.run { h in
            let vip = try await h.client.createSegment(CreateSegmentRequest(
                shopId: Self.shop, name: "VIP", match: .all, conditions: [SegmentCondition(kind: .hasTag, tag: "Khách quen")]
            ))
            func members() async throws -> [String] {
                try await h.client.listSegmentMembers(ListSegmentMembersRequest(shopId: Self.shop, segmentId: vip.segmentId)).members.map(\.customerId)
            }
            let newer = UpsertCustomerProfileRequest(shopId: Self.shop, customerId: "lan", phone: "0912345678", tags: ["Khách quen"], eventId: "prof_2", atMs: 2_000)
            for _ in 0..<5 { _ = try await h.client.upsertCustomerProfile(newer) }
            #expect(try await members() == ["lan"])
            // The same event id again with other content: already applied, nothing changes.
            _ = try await h.client.upsertCustomerProfile(UpsertCustomerProfileRequest(shopId: Self.shop, customerId: "lan", eventId: "prof_2", atMs: 3_000))
            #expect(try await members() == ["lan"])
            // An older profile (tag not yet attached), replayed late: ignored.
            _ = try await h.client.upsertCustomerProfile(UpsertCustomerProfileRequest(shopId: Self.shop, customerId: "lan", eventId: "prof_1", atMs: 1_000))
            #expect(try await members() == ["lan"])
            #expect(try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "lan")).customerId == "lan")
            // A newer one (tag detached) applies.
            _ = try await h.client.upsertCustomerProfile(UpsertCustomerProfileRequest(shopId: Self.shop, customerId: "lan", eventId: "prof_3", atMs: 3_000))
            #expect(try await members().isEmpty)
        }
    }
}
