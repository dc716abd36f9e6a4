import ChatMeshAPI
@testable import Messaging
import Testing

@Suite struct ZnsQualityTests {
    typealias Day = ZnsQualityState.Day

    /// A month of one OA's traffic, figures worked out by hand with the default policy
    /// (Good ≤ 1 %, Medium ≤ 3 %, rate over 7 days, start 500/day):
    /// - days 1–7: 400 delivered a day, no complaints: Good; 2,800 > 2 × 500 → 1,000/day, account updates unlocked;
    /// - days 8–14: 900 a day, Good; 6,300 > 2 × 1,000 → 2,000/day, product updates unlocked;
    /// - days 15–21: 100 a day, Good, but 700 ≤ 2 × 2,000: no growth without use;
    /// - days 22–28: 1,000 a day with 100 complaints: Poor from day 22 (window 1,600 / 100 = 6.25 %);
    ///   seven Poor days → 1,000/day, product updates locked again;
    /// - days 29–30: clean again, but the window still holds Poor days: Poor, two days are no spell.
    @Test func aSimulatedMonth() {
        let policy = ZnsQualityPolicy()
        var state = ZnsQualityState(policy: policy)
        #expect(state.quota == 500)
        #expect(state.allowedPurposes == [.transactionUpdate, .transactionComplete])
        var changesByDay: [Int: [ZnsQualityState.Change]] = [:]
        var levels: [ZnsQuality.Level] = []
        func run(_ days: ClosedRange<Int>, _ day: Day) {
            for d in days {
                let changes = state.close(day, policy: policy)
                if !changes.isEmpty { changesByDay[d] = changes }
                levels.append(state.level(policy))
            }
        }
        run(1...7, Day(delivered: 400, negative: 0))
        run(8...14, Day(delivered: 900, negative: 0))
        run(15...21, Day(delivered: 100, negative: 0))
        run(22...28, Day(delivered: 1000, negative: 100))
        run(29...30, Day(delivered: 1000, negative: 0))
        #expect(changesByDay == [
            7: [.quotaDoubled(to: 1000), .purposeUnlocked(.accountUpdate)],
            14: [.quotaDoubled(to: 2000), .purposeUnlocked(.productUpdate)],
            28: [.quotaHalved(to: 1000), .purposeLocked(.productUpdate)],
        ])
        #expect(levels.prefix(21).allSatisfy { $0 == .good })
        #expect(levels[21...].allSatisfy { $0 == .poor })
        #expect(state.quota == 1000)
        #expect(state.allowedPurposes == [.transactionUpdate, .transactionComplete, .accountUpdate])
        #expect(!state.allowedPurposes.contains(.marketing))
        // Day 22's rate, by hand: 100 complaints over 6 × 100 + 1,000 delivered.
        var check = ZnsQualityState(policy: policy)
        for _ in 0..<6 { check.close(Day(delivered: 100, negative: 0), policy: policy) }
        check.close(Day(delivered: 1000, negative: 100), policy: policy)
        #expect(check.negativeRate() == 100.0 / 1600.0)
    }

    @Test func levelsFollowTheConfiguredRates() {
        var policy = ZnsQualityPolicy()
        #expect(policy.level(negativeRate: 0.01) == .good)
        #expect(policy.level(negativeRate: 0.0101) == .medium)
        #expect(policy.level(negativeRate: 0.03) == .medium)
        #expect(policy.level(negativeRate: 0.031) == .poor)
        policy.standardRate = 0.002
        policy.limitRate = 0.005
        #expect(policy.level(negativeRate: 0.004) == .medium)
    }

    @Test func aLongMediumSpellLowersTheQuotaButKeepsPurposes() {
        var policy = ZnsQualityPolicy()
        policy.mediumSpellDays = 3
        var state = ZnsQualityState(policy: policy)
        for _ in 0..<7 { state.close(Day(delivered: 400, negative: 0), policy: policy) }
        #expect(state.quota == 1000)
        var changes: [ZnsQualityState.Change] = []
        // 2 % complaints: Medium once the window has enough of them.
        for _ in 0..<40 where changes.isEmpty {
            changes = state.close(Day(delivered: 1000, negative: 20), policy: policy)
        }
        #expect(changes == [.quotaHalved(to: 500)])
        #expect(state.allowedPurposes.contains(.accountUpdate))
    }

    @Test func theQuotaNeverFallsBelowItsFloor() {
        let policy = ZnsQualityPolicy()
        var state = ZnsQualityState(policy: policy)
        for _ in 0..<100 { state.close(Day(delivered: 100, negative: 50), policy: policy) }
        #expect(state.quota == policy.minimumQuota)
        #expect(state.allowedPurposes == [.transactionUpdate, .transactionComplete])
    }

    @Test func poorTemplatesAreTheOnesOverTheLimit() {
        let stats = ["tpl_ok": Day(delivered: 1000, negative: 5), "tpl_bad": Day(delivered: 200, negative: 20), "tpl_none": Day(delivered: 0, negative: 0)]
        #expect(ZnsQualityState.poorTemplates(stats, policy: ZnsQualityPolicy()) == ["tpl_bad"])
    }

    @Test func zaloErrorsBecomeStatusesThatSayWhatToFix() {
        let phone = ZaloZnsErrors.outcome(zaloError: -108)
        #expect(phone.code == .invalidArgument && phone.message.hasPrefix("recipient") && !phone.retryable)
        #expect(ZaloZnsErrors.outcome(zaloError: -109).message.hasPrefix("template_id"))
        #expect(ZaloZnsErrors.outcome(zaloError: -100).retryable)
        #expect(ZaloZnsErrors.outcome(zaloError: -999).code == .unavailable)
    }
}
