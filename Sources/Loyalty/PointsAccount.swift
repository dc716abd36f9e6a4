import MeshRPC

/// R-PTS-1..4: one member's points as lots, each earned at a time and
/// expiring by the program's policy, spent oldest first. Every change is a
/// ledger entry, so the balance always equals the sum of the ledger and the
/// sum of what is left in the lots; nothing ever takes it below zero.
///
/// This is the rule in plain Swift; loyalty-svc's store keeps the same lots
/// and entries as rows, and the property tests hold the store to this model.
public struct PointsAccount: Sendable, Hashable {
    /// Points earned together, spent oldest first and expiring together.
    public struct Lot: Sendable, Hashable {
        public let lotId: Int
        public let earnedAtMs: Int64
        /// nil: never expires.
        public let expiresAtMs: Int64?
        public let points: Int64
        public internal(set) var remaining: Int64
        /// The order that earned it (empty for a staff adjustment).
        public let orderId: String

        public init(lotId: Int, earnedAtMs: Int64, expiresAtMs: Int64?, points: Int64, remaining: Int64, orderId: String) {
            self.lotId = lotId
            self.earnedAtMs = earnedAtMs
            self.expiresAtMs = expiresAtMs
            self.points = points
            self.remaining = remaining
            self.orderId = orderId
        }
    }

    /// Why the balance changed; stored as the ledger row's kind.
    public enum EntryKind: String, Sendable, Hashable, CaseIterable {
        /// Earned on a paid order (R-PTS-1).
        case earn
        /// Spent at checkout (R-PTS-3).
        case redeem
        /// Added or removed by staff with a reason (R-PTS-4).
        case adjust
        /// Left the balance at its lot's expiry (R-PTS-2).
        case expire
        /// Taken back because the order that earned them was cancelled or refunded.
        case reverse
        /// Given back because the order they were redeemed on was cancelled or refunded.
        case restore
    }

    /// One ledger row: every change of the balance is one.
    public struct Entry: Sendable, Hashable {
        public let kind: EntryKind
        /// Signed: what the entry did to the balance.
        public let points: Int64
        public let atMs: Int64
        public let orderId: String
        public let reason: String
        public let staffId: String
        /// Points added: when their lot expires (R-PTS-6 shows it; nil: never, or not an addition).
        public var expiresAtMs: Int64? = nil
    }

    /// Why a change is refused; the account is then left as it was.
    public enum Refusal: Error, Sendable, Hashable {
        /// More points asked for than the balance holds.
        case insufficient(balance: Int64)
        case notPositive
    }

    public private(set) var lots: [Lot] = []
    public private(set) var entries: [Entry] = []
    /// What each order's redemptions took from which lot, so a cancellation can put it back.
    private var redeemed: [String: [(lot: Int, points: Int64)]] = [:]
    public private(set) var reversedOrders: Set<String> = []

    public init() {}

    /// An account as a store holds it: the member's lots, what each order's
    /// redemptions took from which lot, and the orders already reversed. The
    /// entries start empty, so after a change `entries` is what to append.
    /// `redemptions` name lots by `lotId`; one naming a lot not given is dropped.
    public init(lots: [Lot], redemptions: [String: [(lot: Int, points: Int64)]] = [:], reversedOrders: Set<String> = []) {
        self.lots = lots
        let index = Dictionary(uniqueKeysWithValues: lots.enumerated().map { ($1.lotId, $0) })
        self.redeemed = redemptions.mapValues { $0.compactMap { taken in index[taken.lot].map { ($0, taken.points) } } }
        self.reversedOrders = reversedOrders
    }

    /// What `order`'s redemptions took from which lot (lot ids), for a store to keep.
    public func redemptions(of order: String) -> [(lot: Int, points: Int64)] {
        (redeemed[order] ?? []).map { (lots[$0.lot].lotId, $0.points) }
    }

    public var balance: Int64 { lots.reduce(0) { $0 + $1.remaining } }

    /// The lots still holding points that will expire, soonest first (R-LOY-1's "expiring").
    public var expiring: [(points: Int64, expiresAtMs: Int64)] {
        lots.compactMap { lot in lot.remaining > 0 ? lot.expiresAtMs.map { (lot.remaining, $0) } : nil }
            .sorted { $0.expiresAtMs < $1.expiresAtMs }
    }

    // MARK: Changes

    /// Points earned on a paid order, or added by staff (`orderId` empty, `staffId` and `reason` given).
    public mutating func add(
        _ points: Int64, atMs: Int64, expiresAtMs: Int64?, kind: EntryKind = .earn, orderId: String = "", reason: String = "", staffId: String = ""
    ) throws(Refusal) {
        guard points > 0 else { throw .notPositive }
        lots.append(Lot(lotId: (lots.map(\.lotId).max() ?? -1) + 1, earnedAtMs: atMs, expiresAtMs: expiresAtMs, points: points, remaining: points, orderId: orderId))
        entries.append(Entry(kind: kind, points: points, atMs: atMs, orderId: orderId, reason: reason, staffId: staffId, expiresAtMs: expiresAtMs))
    }

    /// Spends `points` oldest first: a redemption at checkout (`.redeem`, with the order) or a staff removal (`.adjust`).
    public mutating func spend(
        _ points: Int64, atMs: Int64, kind: EntryKind = .redeem, orderId: String = "", reason: String = "", staffId: String = ""
    ) throws(Refusal) {
        guard points > 0 else { throw .notPositive }
        // Points past their expiry are not spendable even if no expiry run has removed them yet.
        let spendable = lots.reduce(0) { $0 + (Self.live($1, atMs: atMs) ? $1.remaining : 0) }
        guard points <= spendable else { throw .insufficient(balance: spendable) }
        let taken = take(points, atMs: atMs)
        if kind == .redeem, !orderId.isEmpty { redeemed[orderId, default: []] += taken }
        entries.append(Entry(kind: kind, points: -points, atMs: atMs, orderId: orderId, reason: reason, staffId: staffId))
    }

    /// R-PTS-2: every lot whose expiry has come by `asOfMs` loses what is left in it. Returns the points expired.
    @discardableResult
    public mutating func expire(asOfMs: Int64) -> Int64 {
        var total: Int64 = 0
        for index in lots.indices where lots[index].remaining > 0 && !Self.live(lots[index], atMs: asOfMs) {
            total += lots[index].remaining
            lots[index].remaining = 0
        }
        if total > 0 {
            entries.append(Entry(kind: .expire, points: -total, atMs: asOfMs, orderId: "", reason: "expired", staffId: ""))
        }
        return total
    }

    /// A cancelled or refunded order: the points it earned come back out (what is
    /// left of its lots, then, for what was spent already, other points oldest
    /// first, as far as the balance goes), and the points redeemed on it go back
    /// into the lots they came from unless those have expired. Once per order.
    /// Returns the change to the balance.
    @discardableResult
    public mutating func reverseOrder(_ orderId: String, atMs: Int64, reason: String) -> Int64 {
        guard !orderId.isEmpty, reversedOrders.insert(orderId).inserted else { return 0 }
        var removed: Int64 = 0
        var owed: Int64 = 0
        for index in lots.indices where lots[index].orderId == orderId {
            removed += lots[index].remaining
            owed += lots[index].points - lots[index].remaining
            lots[index].remaining = 0
        }
        if owed > 0 {
            let available = lots.reduce(0) { $0 + (Self.live($1, atMs: atMs) ? $1.remaining : 0) }
            let more = min(owed, available)
            if more > 0 { _ = take(more, atMs: atMs) }
            removed += more
        }
        if removed > 0 {
            entries.append(Entry(kind: .reverse, points: -removed, atMs: atMs, orderId: orderId, reason: reason, staffId: ""))
        }
        var restored: Int64 = 0
        for (lot, points) in redeemed.removeValue(forKey: orderId) ?? [] where Self.live(lots[lot], atMs: atMs) {
            lots[lot].remaining += points
            restored += points
        }
        if restored > 0 {
            entries.append(Entry(kind: .restore, points: restored, atMs: atMs, orderId: orderId, reason: reason, staffId: ""))
        }
        return restored - removed
    }

    // MARK: Helpers

    static func live(_ lot: Lot, atMs: Int64) -> Bool {
        lot.expiresAtMs.map { atMs < $0 } ?? true
    }

    /// Takes `points` from live lots, earliest earned first; the caller checked there are enough.
    private mutating func take(_ points: Int64, atMs: Int64) -> [(lot: Int, points: Int64)] {
        var left = points
        var taken: [(lot: Int, points: Int64)] = []
        let order = lots.indices.filter { lots[$0].remaining > 0 && Self.live(lots[$0], atMs: atMs) }
            .sorted { (lots[$0].earnedAtMs, $0) < (lots[$1].earnedAtMs, $1) }
        for index in order where left > 0 {
            let amount = min(left, lots[index].remaining)
            lots[index].remaining -= amount
            left -= amount
            taken.append((index, amount))
        }
        return taken
    }
}

extension PointsAccount {
    // Hashable by what it holds; the private bookkeeping follows from the entries.
    public static func == (a: PointsAccount, b: PointsAccount) -> Bool { a.lots == b.lots && a.entries == b.entries }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(lots)
        hasher.combine(entries)
    }
}
