import ChatMeshAPI
import Foundation
@testable import Loyalty
import MeshRPC
import MeshStore
import MeshTestSupport
import SQLKit
import Testing
import VietnamCommerce

/// R-SEG-4 promotions, R-ORD-7 vouchers at checkout, R-PTS-5 segment adjustments and
/// R-PTS-6 points history, through the router as over the wire.
@Suite struct CheckoutOffersTests {
    static let shop = LoyaltyHarness.shop

    func owner(_ h: LoyaltyHarness) -> LoyaltyService.Client {
        let token = TokenSigner(key: LoyaltyHarness.key).mint(shopId: Self.shop, staffId: "owner-1", role: .owner)
        return LoyaltyService.Client(channel: InProcessChannel(router: h.router), defaultOptions: .bearer(token))
    }

    /// Gold (1,000,000đ, 10%, does not combine) and Silver (0đ, 5%, combines); a "VIP" tag segment.
    func offersShop(_ h: LoyaltyHarness) async throws -> (gold: Tier, silver: Tier, vip: Segment) {
        _ = try await h.client.configureProgram(ConfigureProgramRequest(shopId: Self.shop, earnVndPerPoint: 10_000, redeemVndPerPoint: 1_000))
        let gold = try await h.client.upsertTier(UpsertTierRequest(shopId: Self.shop, name: "Gold", minSpendVnd: 1_000_000, discountPercent: 10))
        let silver = try await h.client.upsertTier(UpsertTierRequest(shopId: Self.shop, name: "Silver", minSpendVnd: 1, discountPercent: 5, combinable: true))
        let vip = try await h.client.createSegment(CreateSegmentRequest(
            shopId: Self.shop, name: "VIP", match: .all, conditions: [SegmentCondition(kind: .hasTag, tag: "VIP")]
        ))
        return (gold, silver, vip)
    }

    @Test func theBestPromotionForTheCustomersSegmentsAndTierIsApplied() async throws {
        try await LoyaltyHarness.run { h in
            let (gold, silver, vip) = try await offersShop(h)
            let owner = owner(h)
            try await h.paid("an", "o-an", vnd: 1_200_000)     // Gold
            try await h.paid("binh", "o-binh", vnd: 100_000)   // Silver
            let now = h.clock.now
            // Agents may not set promotions up.
            await expectStatus(.permissionDenied, naming: "owner or admins") {
                _ = try await h.client.upsertPromotion(UpsertPromotionRequest(shopId: Self.shop, name: "x", kind: .percent, percent: 5, tierIds: [gold.tierId]))
            }
            await expectStatus(.invalidArgument, naming: "segment_ids or tier_ids") {
                _ = try await owner.upsertPromotion(UpsertPromotionRequest(shopId: Self.shop, name: "x", kind: .percent, percent: 5))
            }
            await expectStatus(.notFound, naming: "segment_ids[0]") {
                _ = try await owner.upsertPromotion(UpsertPromotionRequest(shopId: Self.shop, name: "x", kind: .percent, percent: 5, segmentIds: ["seg_nope"]))
            }
            let vipPrices = try await owner.upsertPromotion(UpsertPromotionRequest(
                shopId: Self.shop, name: "Giá VIP", kind: .priceList, prices: [PromotionPrice(variantId: "v1", priceVnd: 150_000)],
                segmentIds: [vip.segmentId], fromMs: now - 1_000, toMs: now + VietnamTime.dayMs
            ))
            let goldAmount = try await owner.upsertPromotion(UpsertPromotionRequest(
                shopId: Self.shop, name: "Gold 30k", kind: .amount, amountVnd: 30_000, tierIds: [gold.tierId], fromMs: now - 1_000
            ))
            let silverPercent = try await owner.upsertPromotion(UpsertPromotionRequest(
                shopId: Self.shop, name: "Silver 8%", kind: .percent, percent: 8, tierIds: [silver.tierId], fromMs: now - 1_000
            ))
            // Not started yet: never applied.
            _ = try await owner.upsertPromotion(UpsertPromotionRequest(
                shopId: Self.shop, name: "Tết", kind: .percent, percent: 50, tierIds: [gold.tierId, silver.tierId], fromMs: now + VietnamTime.dayMs
            ))
            let items = [PreviewItem(variantId: "v1", quantity: 2, priceVnd: 200_000)]
            func preview(_ customer: String) async throws -> PreviewOrderResponse {
                try await h.client.previewOrder(PreviewOrderRequest(shopId: Self.shop, customerId: customer, subtotalVnd: 400_000, items: items))
            }
            // An, Gold, not VIP: the amount; Gold does not combine, so no tier discount.
            var an = try await preview("an")
            #expect(an.promotionId == goldAmount.promotionId && an.promotionDiscountVnd == 30_000 && an.tierDiscountVnd == 0)
            // Membership is read when the order is priced: tagged VIP, the price list (2 × 50,000) wins.
            try await h.store.upsertProfile(shop: Self.shop, customerId: "an", phone: "", name: "An", email: "", birthday: nil, tagKeys: ["vip"], nowMs: now)
            an = try await preview("an")
            #expect(an.promotionId == vipPrices.promotionId && an.promotionDiscountVnd == 100_000 && an.promotionName == "Giá VIP")
            // Binh, Silver: 8% of 400,000, and Silver combines: 5% of what is left.
            let binh = try await preview("binh")
            #expect(binh.promotionId == silverPercent.promotionId && binh.promotionDiscountVnd == 32_000 && binh.tierDiscountVnd == 18_400)
            // Nobody's promotion for a stranger.
            #expect(try await preview("stranger").promotionId.isEmpty)
            // The list: paged, and filtered to what runs now.
            let running = try await owner.listPromotions(ListPromotionsRequest(shopId: Self.shop, activeAtMs: now))
            #expect(Set(running.promotions.map(\.name)) == ["Giá VIP", "Gold 30k", "Silver 8%"])
            let first = try await owner.listPromotions(ListPromotionsRequest(shopId: Self.shop, pageSize: 3))
            let rest = try await owner.listPromotions(ListPromotionsRequest(shopId: Self.shop, pageSize: 3, pageToken: first.nextPageToken))
            #expect(first.promotions.count == 3 && rest.promotions.count == 1 && rest.nextPageToken.isEmpty)
            // Deleted: no longer applied.
            _ = try await owner.deletePromotion(DeletePromotionRequest(shopId: Self.shop, promotionId: vipPrices.promotionId))
            #expect(try await preview("an").promotionId == goldAmount.promotionId)
            await expectStatus(.notFound, naming: "promotion_id") {
                _ = try await owner.deletePromotion(DeletePromotionRequest(shopId: Self.shop, promotionId: vipPrices.promotionId))
            }
        }
    }

    @Test func aVoucherPricesOneOrderAndComesBackWhenThatOrderIsCancelledUnpaid() async throws {
        try await LoyaltyHarness.run { h in
            try await ReferralTests.referralShop(h)
            let voucher = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendPhone: "0987654321"))
            func preview(_ code: String, order: String) async throws -> PreviewOrderResponse {
                try await h.client.previewOrder(PreviewOrderRequest(shopId: Self.shop, customerId: "minh", subtotalVnd: 300_000, voucherCode: code, orderId: order))
            }
            // 10% of 300,000; typed in lower case, answered as stored.
            let priced = try await preview(voucher.code.lowercased(), order: "o-a")
            #expect(priced.voucherDiscountVnd == 30_000 && priced.voucherCode == voucher.code)
            await expectStatus(.failedPrecondition, naming: "voucher_code") { _ = try await preview("GTNOTMINE", order: "o-a") }
            // Another shop's voucher is not this shop's.
            await expectStatus(.failedPrecondition, naming: "voucher_code") {
                _ = try await h.client(shop: "shop-other").previewOrder(PreviewOrderRequest(shopId: "shop-other", customerId: "minh", subtotalVnd: 1, voucherCode: voucher.code))
            }

            // Two orders race for it: exactly one wins.
            @Sendable func redeem(_ order: String) async -> Bool {
                (try? await h.client.redeemVoucher(RedeemVoucherRequest(shopId: Self.shop, code: voucher.code, orderId: order))) != nil
            }
            async let a = redeem("o-a")
            async let b = redeem("o-b")
            let (ra, rb) = await (a, b)
            #expect([ra, rb].filter { $0 }.count == 1)
            let winner = ra ? "o-a" : "o-b"
            let loser = winner == "o-a" ? "o-b" : "o-a"
            // The winner's retry still prices it; the loser's does not.
            #expect(try await preview(voucher.code, order: winner).voucherDiscountVnd == 30_000)
            await expectStatus(.failedPrecondition, naming: "voucher_code") { _ = try await preview(voucher.code, order: loser) }

            // Cancelled before it was paid: the voucher is free again.
            _ = try await h.client.recordOrderEvent(RecordOrderEventRequest(
                shopId: Self.shop, eventId: "\(winner):cancelled", orderId: winner, customerId: "minh", kind: .cancelled
            ))
            #expect(try await preview(voucher.code, order: loser).voucherDiscountVnd == 30_000)
            _ = try await h.client.redeemVoucher(RedeemVoucherRequest(shopId: Self.shop, code: voucher.code, orderId: loser))
            // Paid, then cancelled: the voucher stays used.
            try await h.paid("minh", loser, vnd: 270_000)
            _ = try await h.client.recordOrderEvent(RecordOrderEventRequest(
                shopId: Self.shop, eventId: "\(loser):cancelled", orderId: loser, customerId: "minh", kind: .cancelled
            ))
            #expect(try await h.store.voucher(shop: Self.shop, code: voucher.code).redeemedOrderId == loser)

            // Expired: refused naming the field.
            h.clock.advance(ms: 40 * VietnamTime.dayMs)
            await expectStatus(.failedPrecondition, naming: "voucher_code") { _ = try await preview(voucher.code, order: loser) }
        }
    }

    @Test func aSegmentIsAdjustedOncePerKeyAndNeverBelowZero() async throws {
        try await LoyaltyHarness.run { h in
            let (_, _, vip) = try await offersShop(h)
            let owner = owner(h)
            for customer in ["an", "binh", "chi"] {
                try await h.store.upsertProfile(shop: Self.shop, customerId: customer, phone: "", name: customer, email: "", birthday: nil, tagKeys: ["vip"], nowMs: h.clock.now)
            }
            try await h.paid("an", "o-an", vnd: 300_000)   // 30 points
            try await h.paid("zed", "o-zed", vnd: 300_000) // not VIP
            await expectStatus(.permissionDenied, naming: "owner or admins") {
                _ = try await h.client.adjustSegmentPoints(AdjustSegmentPointsRequest(shopId: Self.shop, segmentId: vip.segmentId, points: 5, reason: "x", idempotencyKey: "k"))
            }
            await expectStatus(.invalidArgument, naming: "idempotency_key") {
                _ = try await owner.adjustSegmentPoints(AdjustSegmentPointsRequest(shopId: Self.shop, segmentId: vip.segmentId, points: 5, reason: "x"))
            }
            let add = AdjustSegmentPointsRequest(shopId: Self.shop, segmentId: vip.segmentId, points: 20, reason: "Tri ân VIP", idempotencyKey: "vip-2026-12")
            let added = try await owner.adjustSegmentPoints(add)
            #expect(added.members == 3 && added.membersAdjusted == 3 && added.pointsTotal == 60)
            // The same key again: nobody twice.
            #expect(try await owner.adjustSegmentPoints(add) == added)
            await expectStatus(.alreadyExists, naming: "idempotency_key") {
                var other = add
                other.points = 25
                _ = try await owner.adjustSegmentPoints(other)
            }
            #expect(try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "an")).points == 50)
            #expect(try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "zed")).points == 30)
            // Removing 30: An has 50 (→ 20), Binh and Chi 20 each (→ 0), never below zero.
            let removed = try await owner.adjustSegmentPoints(AdjustSegmentPointsRequest(
                shopId: Self.shop, segmentId: vip.segmentId, points: -30, reason: "Sửa nhầm", idempotencyKey: "vip-fix"
            ))
            #expect(removed.membersAdjusted == 3 && removed.pointsTotal == -70)
            for (customer, points) in [("an", 20), ("binh", 0), ("chi", 0)] as [(String, Int64)] {
                #expect(try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: customer)).points == points)
                #expect(try await h.ledgerSum(customer) == points)
            }
            // Nothing left to remove: no member changes, no ledger entry.
            let none = try await owner.adjustSegmentPoints(AdjustSegmentPointsRequest(
                shopId: Self.shop, segmentId: vip.segmentId, points: -5, reason: "again", idempotencyKey: "vip-fix-2"
            ))
            #expect(none.membersAdjusted == 1 && none.pointsTotal == -5)   // only An had points
            // The history shows each entry with its staff and reason.
            let history = try await h.client.listPointsHistory(ListPointsHistoryRequest(shopId: Self.shop, customerId: "binh"))
            #expect(history.entries.map(\.kind) == [.adjusted, .adjusted])
            #expect(history.entries.map(\.points) == [-20, 20] && history.entries.allSatisfy { $0.staffId == "owner-1" })
            #expect(history.entries.map(\.reason) == ["Sửa nhầm", "Tri ân VIP"])
        }
    }

    @Test func theProgramReadsBackAsConfigured() async throws {
        try await LoyaltyHarness.run { h in
            // Before any configuration: the defaults the rules use.
            let defaults = try await h.client.getProgram(ShopRequest(shopId: Self.shop))
            #expect(defaults.earnVndPerPoint == 10_000 && defaults.redeemVndPerPoint == 1_000 && defaults.expiry?.kind == .never && defaults.cycle == .lifetime)
            _ = try await h.client.configureProgram(ConfigureProgramRequest(
                shopId: Self.shop, earnVndPerPoint: 20_000, redeemVndPerPoint: 500, expiry: PointsExpiry(kind: .fixedDate, date: "2026-12-31"),
                cycle: .calendarYear, cycleStartMs: 1_700_000_000_000
            ))
            let program = try await h.client.getProgram(ShopRequest(shopId: Self.shop))
            #expect(program.earnVndPerPoint == 20_000 && program.redeemVndPerPoint == 500 && program.cycle == .calendarYear)
            #expect(program.expiry == PointsExpiry(kind: .fixedDate, date: "2026-12-31") && program.cycleStartMs == 1_700_000_000_000)
            // Another shop's program is its own.
            #expect(try await h.client(shop: "shop-other").getProgram(ShopRequest(shopId: "shop-other")).earnVndPerPoint == 10_000)
        }
    }

    @Test func pointsHistoryListsEveryEntryNewestFirstWithExpiry() async throws {
        try await LoyaltyHarness.run { h in
            _ = try await h.client.configureProgram(ConfigureProgramRequest(
                shopId: Self.shop, earnVndPerPoint: 10_000, redeemVndPerPoint: 1_000, expiry: PointsExpiry(kind: .afterMonths, months: 12)
            ))
            try await h.paid("an", "o1", vnd: 500_000)   // +50
            h.clock.advance(ms: 1_000)
            _ = try await h.client.redeemPoints(RedeemPointsRequest(shopId: Self.shop, customerId: "an", points: 10, orderId: "o2"))
            h.clock.advance(ms: 1_000)
            // Agents act as themselves (the harness's token is staff-1's); an owner may name anyone.
            await expectStatus(.permissionDenied, naming: "staff_id") {
                _ = try await h.client.adjustPoints(AdjustPointsRequest(shopId: Self.shop, customerId: "an", points: 5, reason: "xin lỗi", staffId: "s-7"))
            }
            _ = try await owner(h).adjustPoints(AdjustPointsRequest(shopId: Self.shop, customerId: "an", points: 5, reason: "xin lỗi", staffId: "s-7"))
            h.clock.advance(ms: 1_000)
            _ = try await h.client.recordOrderEvent(RecordOrderEventRequest(shopId: Self.shop, eventId: "c2", orderId: "o2", customerId: "an", kind: .cancelled))
            h.clock.advance(ms: 1_000)
            _ = try await h.client.recordOrderEvent(RecordOrderEventRequest(shopId: Self.shop, eventId: "c1", orderId: "o1", customerId: "an", kind: .refunded))
            var entries: [PointsHistoryEntry] = []
            var token = ""
            repeat {
                let page = try await h.client.listPointsHistory(ListPointsHistoryRequest(shopId: Self.shop, customerId: "an", pageSize: 2, pageToken: token))
                entries += page.entries
                token = page.nextPageToken
            } while !token.isEmpty
            #expect(entries.map(\.kind) == [.reversed, .restored, .adjusted, .redeemed, .earned])
            #expect(entries.map(\.points) == [-50, 10, 5, -10, 50])
            #expect(entries[4].orderId == "o1" && entries[4].expiresAtMs == VietnamTime.ms(year: 2027, month: 11, day: 26))
            #expect(entries[2].staffId == "s-7" && entries[2].reason == "xin lỗi" && entries[2].expiresAtMs > 0)
            #expect(entries[3].expiresAtMs == 0)
            #expect(try await h.client.listPointsHistory(ListPointsHistoryRequest(shopId: Self.shop, customerId: "nobody")).entries.isEmpty)
        }
    }
}
