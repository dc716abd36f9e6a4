import ChatMeshAPI
import Foundation
@testable import Loyalty
import MeshRPC
import MeshStore
import MeshTestSupport
import SQLKit
import Testing
import VietnamCommerce

/// The store held to the plain-Swift rules: points against `PointsAccount`,
/// segments against `SegmentRule`, on random data.
@Suite struct LoyaltyStorePropertyTests {
    static let shop = LoyaltyHarness.shop

    /// Random earn, redeem, adjust, expire and cancel through the RPCs, the same
    /// operations on a `PointsAccount` beside them: after each step the stored
    /// balance equals the model's, the ledger sums to it, and it is never negative.
    @Test(arguments: [11, 29, 47] as [UInt64])
    func pointsInTheStoreFollowTheModel(seed: UInt64) async throws {
        var rng = SplitMix64(state: seed)
        try await LoyaltyHarness.run { h in
            let program = ProgramRules(earnVndPerPoint: 1_000, redeemVndPerPoint: 1_000, expiry: .afterMonths(1))
            _ = try await h.client.configureProgram(ConfigureProgramRequest(
                shopId: Self.shop, earnVndPerPoint: 1_000, redeemVndPerPoint: 1_000, expiry: PointsExpiry(kind: .afterMonths, months: 1)
            ))
            _ = try await h.client.upsertCustomerProfile(UpsertCustomerProfileRequest(shopId: Self.shop, customerId: "k", name: "Kim"))
            var model = PointsAccount()
            var paidOrders: [String] = []
            var redeemOrders: [String] = []
            for step in 0..<120 {
                let now = h.clock.now
                switch Int.random(in: 0..<10, using: &rng) {
                case 0..<3:
                    let order = "o\(step)"
                    let vnd = Int64.random(in: 1_000...500_000, using: &rng)
                    try await h.paid("k", order, vnd: vnd)
                    try? model.add(program.pointsToEarn(paidVnd: vnd, multiplier: 1), atMs: now, expiresAtMs: program.expiresAt(earnedAtMs: now), orderId: order)
                    paidOrders.append(order)
                case 3..<5:
                    let points = Int64.random(in: 1...300, using: &rng)
                    let order = "r\(step)"
                    let stored = await Self.outcome {
                        _ = try await h.client.redeemPoints(RedeemPointsRequest(shopId: Self.shop, customerId: "k", points: points, orderId: order))
                    }
                    let modelled = (try? model.spend(points, atMs: now, orderId: order)) != nil
                    #expect(stored == modelled, "step \(step): redeem \(points)")
                    if modelled {
                        redeemOrders.append(order)
                        // The redemption's order is known to loyalty too, so that it can be cancelled.
                        try await h.paid("k", order, vnd: 1)
                        paidOrders.append(order)
                    }
                case 5:
                    let points = Int64.random(in: -100...200, using: &rng)
                    guard points != 0 else { continue }
                    let stored = await Self.outcome {
                        _ = try await h.client.adjustPoints(AdjustPointsRequest(shopId: Self.shop, customerId: "k", points: points, reason: "thử"))
                    }
                    let modelled = points > 0
                        ? (try? model.add(points, atMs: now, expiresAtMs: program.expiresAt(earnedAtMs: now), kind: .adjust)) != nil
                        : (try? model.spend(-points, atMs: now, kind: .adjust)) != nil
                    #expect(stored == modelled, "step \(step): adjust \(points)")
                case 6:
                    _ = try await h.client.expirePoints(ExpirePointsRequest(shopId: Self.shop))
                    model.expire(asOfMs: now)
                case 7..<9:
                    guard !paidOrders.isEmpty else { continue }
                    let order = paidOrders.remove(at: Int.random(in: 0..<paidOrders.count, using: &rng))
                    _ = try await h.client.recordOrderEvent(RecordOrderEventRequest(
                        shopId: Self.shop, eventId: "cancel-\(order)", orderId: order, customerId: "k", kind: Bool.random(using: &rng) ? .cancelled : .refunded,
                        atMs: now
                    ))
                    model.reverseOrder(order, atMs: now, reason: "")
                default:
                    // Time passes: up to 12 days, so lots expire now and then.
                    h.clock.advance(ms: Int64.random(in: 1...(12 * VietnamTime.dayMs), using: &rng))
                }
                let member = try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: "k"))
                #expect(member.points == model.balance, "step \(step)")
                #expect(member.points >= 0)
                #expect(try await h.ledgerSum("k") == member.points, "step \(step)")
            }
            #expect(model.entries.count > 30)
        }
    }

    static func outcome(_ body: () async throws -> Void) async -> Bool {
        do {
            try await body()
            return true
        } catch {
            return false
        }
    }

    /// Random members (birthdays, tags, orders with and without offers, some
    /// cancelled, points) and random rules: CountSegment, ListSegmentMembers (paged)
    /// and `SegmentRule.matches` over the same facts agree, and after a profile edit
    /// and a new order they still do.
    @Test(arguments: [3, 17] as [UInt64])
    func segmentSQLAgreesWithTheRuleOnRandomData(seed: UInt64) async throws {
        var rng = SplitMix64(state: seed)
        try await LoyaltyHarness.run { h in
            let (silver, gold) = try await LoyaltyServiceTests.standardProgram(h)
            let tags = ["VIP", "Khách sỉ", "Đã mua", "Hỏi giá"]
            let start = VietnamTime.ms(year: 2025, month: 1, day: 1)
            let spanDays: Int64 = 690
            var facts: [String: CustomerFacts] = [:]
            func randomTime(_ rng: inout SplitMix64) -> Int64 {
                // Late evenings too: 23:30 in Vietnam is the previous day in UTC.
                start + Int64.random(in: 0..<spanDays, using: &rng) * VietnamTime.dayMs + Int64.random(in: 0..<VietnamTime.dayMs, using: &rng)
            }
            func profile(_ id: String, _ rng: inout SplitMix64) async throws {
                let birthday: (year: Int, month: Int, day: Int)? = Int.random(in: 0..<5, using: &rng) == 0 ? nil : {
                    let month = Int.random(in: 1...12, using: &rng)
                    let year = [1988, 1992, 1996, 2000][Int.random(in: 0..<4, using: &rng)]
                    return (year, month, Int.random(in: 1...VietnamTime.daysInMonth(year: year, month: month), using: &rng))
                }()
                let chosen = tags.filter { _ in Bool.random(using: &rng) }
                _ = try await h.client.upsertCustomerProfile(UpsertCustomerProfileRequest(
                    shopId: Self.shop, customerId: id, phone: "09\(String(format: "%08d", Int.random(in: 0..<100_000_000, using: &rng)))", name: id,
                    birthday: birthday.map { String(format: "%04d-%02d-%02d", $0.year, $0.month, $0.day) } ?? "", tags: chosen
                ))
                facts[id, default: CustomerFacts(customerId: id)].birthday = birthday
                facts[id]!.tagKeys = Set(chosen.map(TagName.key))
            }
            func order(_ id: String, _ n: Int, _ rng: inout SplitMix64) async throws {
                let at = randomTime(&rng)
                let offer = Bool.random(using: &rng)
                let amount = Int64.random(in: 100_000...3_000_000, using: &rng)
                _ = try await h.client.recordOrderEvent(RecordOrderEventRequest(
                    shopId: Self.shop, eventId: "p-\(id)-\(n)", orderId: "\(id)-\(n)", customerId: id, kind: .paid, amountVnd: amount, usedOffer: offer, atMs: at
                ))
                var reversed = false
                if Int.random(in: 0..<6, using: &rng) == 0 {
                    _ = try await h.client.recordOrderEvent(RecordOrderEventRequest(
                        shopId: Self.shop, eventId: "c-\(id)-\(n)", orderId: "\(id)-\(n)", customerId: id, kind: .cancelled, atMs: at + 1
                    ))
                    reversed = true
                }
                facts[id, default: CustomerFacts(customerId: id)].orders.append(CustomerFacts.Order(atMs: at, amountVnd: amount, usedOffer: offer, reversed: reversed))
            }
            for i in 0..<80 {
                let id = String(format: "m%03d", i)
                if Bool.random(using: &rng) { try await profile(id, &rng) }
                for n in 0..<Int.random(in: 0...4, using: &rng) { try await order(id, n, &rng) }
                if facts[id] == nil { try await profile(id, &rng) }
            }
            /// What the store keeps that the facts take as given: member since, tier, points.
            func refreshStoredFacts() async throws {
                for id in facts.keys {
                    let member = try await h.client.getMember(GetMemberRequest(shopId: Self.shop, customerId: id))
                    facts[id]!.memberSinceMs = member.memberSinceMs
                    facts[id]!.tierId = member.tierId
                    facts[id]!.points = member.points
                }
            }
            func randomCondition(_ rng: inout SplitMix64) -> SegmentCondition {
                var a = randomTime(&rng)
                var b = randomTime(&rng)
                if a > b { swap(&a, &b) }
                if Int.random(in: 0..<4, using: &rng) == 0 { b = a + Int64.random(in: 0...(40 * VietnamTime.dayMs), using: &rng) }
                switch Int.random(in: 0..<9, using: &rng) {
                case 0: return SegmentCondition(kind: .purchasedBetween, fromMs: a, toMs: b)
                case 1: return SegmentCondition(kind: .notPurchasedBetween, fromMs: a, toMs: b)
                case 2: return SegmentCondition(kind: .birthdayInMonth, month: Int32.random(in: 1...12, using: &rng))
                case 3: return SegmentCondition(kind: .birthdayBetween, fromMs: a, toMs: b)
                case 4: return SegmentCondition(kind: .memberSinceBetween, fromMs: a, toMs: b)
                case 5: return SegmentCondition(kind: .usedOfferBetween, fromMs: a, toMs: b)
                case 6: return SegmentCondition(kind: .hasTag, tag: tags[Int.random(in: 0..<tags.count, using: &rng)].lowercased())
                case 7: return SegmentCondition(kind: .tierIs, tierId: Bool.random(using: &rng) ? silver.tierId : gold.tierId)
                default: return SegmentCondition(kind: .pointsAtLeast, points: Int64.random(in: 0...600, using: &rng))
                }
            }
            func check(_ segments: [Segment]) async throws {
                try await refreshStoredFacts()
                for segment in segments {
                    let rule = try SegmentRule.checking(segment.match, segment.conditions)
                    let expected = facts.values.filter { rule.matches($0) }.map(\.customerId).sorted()
                    let count = try await h.client.countSegment(SegmentRequest(shopId: Self.shop, segmentId: segment.segmentId)).count
                    var listed: [String] = []
                    var token = ""
                    repeat {
                        let page = try await h.client.listSegmentMembers(ListSegmentMembersRequest(
                            shopId: Self.shop, segmentId: segment.segmentId, pageSize: 7, pageToken: token
                        ))
                        listed += page.members.map(\.customerId)
                        token = page.nextPageToken
                    } while !token.isEmpty
                    #expect(listed == expected, "\(segment.match) \(segment.conditions)")
                    #expect(count == Int64(expected.count))
                }
            }
            var segments: [Segment] = []
            for n in 0..<40 {
                let conditions = (0..<Int.random(in: 1...3, using: &rng)).map { _ in randomCondition(&rng) }
                segments.append(try await h.client.createSegment(CreateSegmentRequest(
                    shopId: Self.shop, name: "Nhóm \(n)", match: Bool.random(using: &rng) ? .all : .any, conditions: conditions
                )))
            }
            try await check(segments)
            #expect(Set(segments.map(\.segmentId)) == Set(try await h.client.listSegments(ListSegmentsRequest(shopId: Self.shop)).segments.map(\.segmentId)))

            // Membership is current: profile edits, new orders, cancellations.
            for i in stride(from: 0, to: 80, by: 9) {
                let id = String(format: "m%03d", i)
                try await profile(id, &rng)
                try await order(id, 10, &rng)
            }
            try await check(segments)
        }
    }

    @Test func segmentValidationNamesTheCondition() async throws {
        try await LoyaltyHarness.run { h in
            let before = try await h.rowCounts()
            await expectStatus(.invalidArgument, naming: "conditions[1].month") {
                _ = try await h.client.createSegment(CreateSegmentRequest(shopId: Self.shop, name: "Sinh nhật", match: .all, conditions: [
                    SegmentCondition(kind: .hasTag, tag: "VIP"), SegmentCondition(kind: .birthdayInMonth, month: 13),
                ]))
            }
            await expectStatus(.invalidArgument, naming: "conditions[0].to_ms") {
                _ = try await h.client.createSegment(CreateSegmentRequest(shopId: Self.shop, name: "Mua", match: .any, conditions: [
                    SegmentCondition(kind: .purchasedBetween, fromMs: 2_000_000_000_000, toMs: 1_000_000_000_000),
                ]))
            }
            await expectStatus(.invalidArgument, naming: "match") {
                _ = try await h.client.createSegment(CreateSegmentRequest(shopId: Self.shop, name: "X", conditions: [SegmentCondition(kind: .pointsAtLeast)]))
            }
            await expectStatus(.notFound, naming: "segment_id") {
                _ = try await h.client.countSegment(SegmentRequest(shopId: Self.shop, segmentId: "seg_nope"))
            }
            #expect(try await h.rowCounts() == before)
        }
    }
}
