import ChatMeshAPI
import MeshRPC
import VietnamCommerce

/// R-SEG-1: a segment's conditions and what a customer must be to belong.
/// Ranges are whole Vietnam days: a condition from 1 November to 30 November
/// covers 1 November 00:00 to 30 November 23:59:59.999 in UTC+7, whatever
/// times of day the caller's milliseconds carry. This evaluator is the rule;
/// loyalty-svc's SQL is checked against it on random data.
public struct SegmentRule: Sendable, Hashable {
    /// Whether every condition must hold, or any one.
    public enum Match: Sendable, Hashable { case all, any }

    /// One condition of R-SEG-1, on the facts loyalty-svc keeps of a customer.
    public enum Condition: Sendable, Hashable {
        case purchasedBetween(DayRange)
        case notPurchasedBetween(DayRange)
        case birthdayInMonth(Int)
        case birthdayBetween(DayRange)
        case memberSinceBetween(DayRange)
        case usedOfferBetween(DayRange)
        /// A chat tag, by its R-TAG-3 key.
        case hasTag(String)
        case tierIs(String)
        case pointsAtLeast(Int64)
    }

    public var match: Match
    public var conditions: [Condition]

    public init(match: Match, conditions: [Condition]) {
        self.match = match
        self.conditions = conditions
    }

    /// Whether the customer is in the segment.
    public func matches(_ customer: CustomerFacts) -> Bool {
        switch match {
        case .all: conditions.allSatisfy { Self.holds($0, for: customer) }
        case .any: conditions.contains { Self.holds($0, for: customer) }
        }
    }

    static func holds(_ condition: Condition, for customer: CustomerFacts) -> Bool {
        switch condition {
        case .purchasedBetween(let range):
            customer.orders.contains { $0.counts && range.contains(ms: $0.atMs) }
        case .notPurchasedBetween(let range):
            !customer.orders.contains { $0.counts && range.contains(ms: $0.atMs) }
        case .birthdayInMonth(let month):
            customer.birthday?.month == month
        case .birthdayBetween(let range):
            customer.birthday.map { range.containsAnniversary(month: $0.month, day: $0.day) } ?? false
        case .memberSinceBetween(let range):
            customer.memberSinceMs.map { range.contains(ms: $0) } ?? false
        case .usedOfferBetween(let range):
            customer.orders.contains { $0.counts && $0.usedOffer && range.contains(ms: $0.atMs) }
        case .hasTag(let key):
            customer.tagKeys.contains(key)
        case .tierIs(let tier):
            customer.tierId == tier
        case .pointsAtLeast(let points):
            customer.points >= points
        }
    }
}

/// Whole Vietnam days, both ends included.
public struct DayRange: Sendable, Hashable {
    public let firstDay: Int64
    public let lastDay: Int64

    /// The days holding `fromMs` and `toMs` (Vietnam time); nil when they are the wrong way round.
    public init?(fromMs: Int64, toMs: Int64) {
        let first = VietnamTime.dayNumber(atMs: fromMs)
        let last = VietnamTime.dayNumber(atMs: toMs)
        guard first <= last else { return nil }
        firstDay = first
        lastDay = last
    }

    /// Whether the instant falls on one of the range's Vietnam days.
    public func contains(ms: Int64) -> Bool {
        (firstDay...lastDay).contains(VietnamTime.dayNumber(atMs: ms))
    }

    /// Whether a yearly date (a birthday) falls on one of the range's days. A
    /// 29 February birthday is kept on 28 February in other years.
    public func containsAnniversary(month: Int, day: Int) -> Bool {
        if lastDay - firstDay >= 365 { return true }
        let firstYear = VietnamTime.civil(dayNumber: firstDay).year
        let lastYear = VietnamTime.civil(dayNumber: lastDay).year
        for year in firstYear...lastYear {
            let d = min(day, VietnamTime.daysInMonth(year: year, month: month))
            let n = VietnamTime.daysFromCivil(year: year, month: month, day: d)
            if n >= firstDay && n <= lastDay { return true }
        }
        return false
    }

    /// The range as [start, end) in UTC milliseconds, for SQL.
    public var msRange: Range<Int64> {
        (firstDay * VietnamTime.dayMs - VietnamTime.offsetMs)..<((lastDay + 1) * VietnamTime.dayMs - VietnamTime.offsetMs)
    }
}

/// What segments look at for one customer.
public struct CustomerFacts: Sendable, Hashable {
    /// An order as segments see it: when, and whether it used an offer.
    public struct Order: Sendable, Hashable {
        public var atMs: Int64
        public var amountVnd: Int64
        public var usedOffer: Bool
        /// Cancelled or refunded orders do not count as purchases.
        public var reversed: Bool
        var counts: Bool { !reversed }

        public init(atMs: Int64, amountVnd: Int64, usedOffer: Bool = false, reversed: Bool = false) {
            self.atMs = atMs
            self.amountVnd = amountVnd
            self.usedOffer = usedOffer
            self.reversed = reversed
        }
    }

    public var customerId: String
    public var birthday: (year: Int, month: Int, day: Int)?
    public var memberSinceMs: Int64?
    public var tagKeys: Set<String>
    public var tierId: String
    public var points: Int64
    public var orders: [Order]

    public init(
        customerId: String, birthday: (year: Int, month: Int, day: Int)? = nil, memberSinceMs: Int64? = nil, tagKeys: Set<String> = [],
        tierId: String = "", points: Int64 = 0, orders: [Order] = []
    ) {
        self.customerId = customerId
        self.birthday = birthday
        self.memberSinceMs = memberSinceMs
        self.tagKeys = tagKeys
        self.tierId = tierId
        self.points = points
        self.orders = orders
    }

    public static func == (a: CustomerFacts, b: CustomerFacts) -> Bool {
        a.customerId == b.customerId && a.birthday.map { [$0.year, $0.month, $0.day] } == b.birthday.map { [$0.year, $0.month, $0.day] }
            && a.memberSinceMs == b.memberSinceMs && a.tagKeys == b.tagKeys && a.tierId == b.tierId && a.points == b.points && a.orders == b.orders
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(customerId)
        hasher.combine(points)
    }
}

extension SegmentRule {
    /// Checks conditions as a request gives them and turns them into the rule; a refusal names `match`, `conditions` or `conditions[i].field`.
    public static func checking(_ match: Segment.Match, _ conditions: [SegmentCondition]) throws(LoyaltyError) -> SegmentRule {
        let match: SegmentRule.Match = switch match {
        case .all: .all
        case .any: .any
        default: throw .invalidSegment("match must be ALL or ANY")
        }
        if conditions.isEmpty { throw .invalidSegment("conditions: a segment needs at least one condition") }
        if conditions.count > 20 { throw .invalidSegment("conditions: at most 20") }
        var rules: [SegmentRule.Condition] = []
        for (index, c) in conditions.enumerated() {
            let field = "conditions[\(index)]"
            func range() throws(LoyaltyError) -> DayRange {
                if c.fromMs <= 0 || c.toMs <= 0 { throw .invalidSegment("\(field).from_ms and to_ms are required for \(c.kind.protoName)") }
                guard let range = DayRange(fromMs: c.fromMs, toMs: c.toMs) else {
                    throw .invalidSegment("\(field).to_ms is before from_ms")
                }
                return range
            }
            switch c.kind {
            case .purchasedBetween: rules.append(.purchasedBetween(try range()))
            case .notPurchasedBetween: rules.append(.notPurchasedBetween(try range()))
            case .birthdayInMonth:
                guard (1...12).contains(c.month) else { throw .invalidSegment("\(field).month must be 1 to 12") }
                rules.append(.birthdayInMonth(Int(c.month)))
            case .birthdayBetween: rules.append(.birthdayBetween(try range()))
            case .memberSinceBetween: rules.append(.memberSinceBetween(try range()))
            case .usedOfferBetween: rules.append(.usedOfferBetween(try range()))
            case .hasTag:
                if let problem = TagName.validate(c.tag) { throw .invalidSegment("\(field).tag: \(problem)") }
                rules.append(.hasTag(TagName.key(c.tag)))
            case .tierIs:
                if c.tierId.isEmpty { throw .invalidSegment("\(field).tier_id is required") }
                rules.append(.tierIs(c.tierId))
            case .pointsAtLeast:
                if c.points < 0 { throw .invalidSegment("\(field).points must not be negative") }
                rules.append(.pointsAtLeast(c.points))
            default:
                throw .invalidSegment("\(field).kind is required")
            }
        }
        return SegmentRule(match: match, conditions: rules)
    }
}
