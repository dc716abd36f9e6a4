import ChatMeshAPI
@testable import Loyalty
import MeshRPC
import Testing
import VietnamCommerce

/// loyalty-svc's hourly job (R-PTS-2, R-LOY-2): expiry every round, re-ranking once a Vietnam day.
@Suite struct PointsExpiryJobTests {
    static let shop = LoyaltyHarness.shop

    @Test func roundsExpirePointsAndReRankOncePerVietnamDay() async throws {
        try await LoyaltyHarness.run { h in
            // A 12-month rolling cycle, points that last a month.
            let (silver, _) = try await LoyaltyServiceTests.standardProgram(
                h, cycle: .rolling12Months, expiry: PointsExpiry(kind: .afterMonths, months: 1)
            )
            try await h.paid("lan", "o1", vnd: 2_590_000)
            var lan = try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "lan"))
            #expect(lan.tierId == silver.tierId && lan.points == 259)

            let job = PointsExpiryJob(store: h.store)
            // Today: nothing has expired, and the day's re-rank keeps her Bạc.
            var round = try await job.run(nowMs: h.clock.now)
            #expect(round.expired.isEmpty && round.reranked == [Self.shop])
            // Within the hour: no second re-rank the same day.
            round = try await job.run(nowMs: h.clock.now + 3_600_000)
            #expect(round.reranked.isEmpty)

            // 13 months on: her points expired long ago, and her spend left the window.
            h.clock.advance(ms: 395 * VietnamTime.dayMs)
            round = try await job.run(nowMs: h.clock.now)
            #expect(round.expired == [Self.shop: 259] && round.reranked == [Self.shop])
            lan = try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "lan"))
            #expect(lan.points == 0 && lan.tierId == "")
            #expect(try await h.ledgerSum("lan") == 0)
            // Nothing more to expire in the next round.
            #expect(try await job.run(nowMs: h.clock.now + 1).expired.isEmpty)
        }
    }

    @Test func aLifetimeProgramIsNeverReRankedByTheJob() async throws {
        try await LoyaltyHarness.run { h in
            _ = try await LoyaltyServiceTests.standardProgram(h, cycle: .lifetime)
            let round = try await PointsExpiryJob(store: h.store).run(nowMs: h.clock.now)
            #expect(round.reranked.isEmpty && round.expired.isEmpty)
        }
    }
}
