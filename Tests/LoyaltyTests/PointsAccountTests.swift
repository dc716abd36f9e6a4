import Loyalty
import MeshRPC
import Testing
import VietnamCommerce

/// A small deterministic generator, so a failing random sequence can be replayed by its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct PointsAccountTests {
    static let day = VietnamTime.dayMs
    static let t0 = VietnamTime.ms(year: 2026, month: 1, day: 10, hour: 9)

    @Test func pointsAreSpentOldestFirstAndNeverBelowZero() throws {
        var account = PointsAccount()
        try account.add(100, atMs: Self.t0, expiresAtMs: nil, orderId: "A")
        try account.add(50, atMs: Self.t0 + Self.day, expiresAtMs: nil, orderId: "B")
        try account.spend(120, atMs: Self.t0 + 2 * Self.day, orderId: "C")
        #expect(account.lots.map(\.remaining) == [0, 30])
        #expect(account.balance == 30)
        #expect(throws: PointsAccount.Refusal.insufficient(balance: 30)) { try account.spend(31, atMs: Self.t0 + 3 * Self.day) }
        #expect(throws: PointsAccount.Refusal.notPositive) { try account.add(0, atMs: Self.t0, expiresAtMs: nil) }
        #expect(account.balance == account.entries.reduce(0) { $0 + $1.points })
    }

    @Test func expiredPointsLeaveTheBalanceAndCannotBeSpentBeforeTheRun() throws {
        var account = PointsAccount()
        let expiry = Self.t0 + 30 * Self.day
        try account.add(100, atMs: Self.t0, expiresAtMs: expiry, orderId: "A")
        try account.add(40, atMs: Self.t0 + Self.day, expiresAtMs: nil, orderId: "B")
        #expect(account.expiring.map(\.points) == [100])
        // At the expiry instant the 100 are gone for spending even though no run has removed them yet.
        #expect(throws: PointsAccount.Refusal.insufficient(balance: 40)) { try account.spend(41, atMs: expiry) }
        #expect(account.expire(asOfMs: expiry - 1) == 0)
        #expect(account.expire(asOfMs: expiry) == 100)
        #expect(account.expire(asOfMs: expiry + Self.day) == 0)
        #expect(account.balance == 40 && account.entries.last?.kind == .expire)
    }

    @Test func aCancelledOrderTakesItsPointsBackAndGivesBackWhatWasRedeemedOnIt() throws {
        var account = PointsAccount()
        try account.add(200, atMs: Self.t0, expiresAtMs: nil, orderId: "C")
        try account.add(100, atMs: Self.t0 + Self.day, expiresAtMs: nil, orderId: "A")
        // Redeemed on order B: 250, the whole of C then 50 of A.
        try account.spend(250, atMs: Self.t0 + 2 * Self.day, orderId: "B")
        #expect(account.lots.map(\.remaining) == [0, 50])
        // Order A is refunded: its 50 left go, and the 50 of it already spent are owed but the balance is 0 after.
        #expect(account.reverseOrder("A", atMs: Self.t0 + 3 * Self.day, reason: "refunded") == -50)
        #expect(account.balance == 0)
        #expect(account.reverseOrder("A", atMs: Self.t0 + 3 * Self.day, reason: "refunded again") == 0)
        // Order B is cancelled: the 250 go back where they came from (A's lot is reversed but still holds its restored 50).
        #expect(account.reverseOrder("B", atMs: Self.t0 + 4 * Self.day, reason: "cancelled") == 250)
        #expect(account.lots.map(\.remaining) == [200, 50])
        #expect(account.balance == account.entries.reduce(0) { $0 + $1.points })
    }

    @Test func randomSequencesKeepTheBalanceEqualToTheLedgerAndNeverNegative() throws {
        for seed in UInt64(1)...300 {
            var rng = SplitMix64(state: seed)
            var account = PointsAccount()
            var now = Self.t0
            var orders: [String] = []
            for step in 0..<60 {
                now += Int64.random(in: 0...(5 * Self.day), using: &rng)
                switch Int.random(in: 0..<6, using: &rng) {
                case 0, 1:
                    let order = "o\(step)"
                    orders.append(order)
                    let expires: Int64? = Bool.random(using: &rng) ? now + Int64.random(in: 1...(60 * Self.day), using: &rng) : nil
                    try account.add(Int64.random(in: 1...500, using: &rng), atMs: now, expiresAtMs: expires, orderId: order)
                case 2:
                    let want = Int64.random(in: 1...400, using: &rng)
                    do {
                        try account.spend(want, atMs: now, orderId: "r\(step)")
                        orders.append("r\(step)")
                    } catch PointsAccount.Refusal.insufficient(let balance) {
                        #expect(want > balance, "seed \(seed): refused \(want) with \(balance) spendable")
                    }
                case 3:
                    let points = Int64.random(in: -100...100, using: &rng)
                    if points > 0 {
                        try account.add(points, atMs: now, expiresAtMs: nil, kind: .adjust, reason: "goodwill", staffId: "s1")
                    } else if points < 0 {
                        try? account.spend(-points, atMs: now, kind: .adjust, reason: "correction", staffId: "s1")
                    }
                case 4:
                    account.expire(asOfMs: now)
                    #expect(!account.lots.contains { $0.remaining > 0 && ($0.expiresAtMs ?? .max) <= now }, "seed \(seed): expired points left")
                default:
                    if let order = orders.randomElement(using: &rng) { account.reverseOrder(order, atMs: now, reason: "cancelled") }
                }
                #expect(account.balance >= 0, "seed \(seed) step \(step): negative balance")
                #expect(account.balance == account.entries.reduce(0) { $0 + $1.points }, "seed \(seed) step \(step): balance is not the ledger")
                #expect(account.lots.allSatisfy { $0.remaining >= 0 && $0.remaining <= $0.points }, "seed \(seed) step \(step): a lot out of bounds")
            }
        }
    }
}
