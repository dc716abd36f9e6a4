import ChatMeshAPI
import MeshRPC

/// R-ZNS-1..3: the sending quality of a Zalo official account, its daily
/// quota and the content purposes it may use, all from the recipients'
/// negative feedback. Defaults are Zalo's published practice (R-ZNS-2) and
/// every one is configurable.
public struct ZnsQualityPolicy: Sendable, Hashable {
    /// Good while the negative rate is at most this.
    public var standardRate = 0.01
    /// Medium while at most this; Poor above.
    public var limitRate = 0.03
    /// The rate is taken over this many recent days (feedback trickles in after sending).
    public var rateWindowDays = 7
    public var startQuota = 500
    public var minimumQuota = 100
    /// Good days in a row that double the quota, when the OA really used it:
    public var growthSpellDays = 7
    /// … sending more than this many times the daily quota over those days.
    public var growthVolumeFactor = 2
    /// Poor days in a row that halve the quota (and lock the last purpose unlocked).
    public var poorSpellDays = 7
    /// Medium days in a row that halve the quota ("a long Medium spell may lower them"); nil: never.
    public var mediumSpellDays: Int? = 30

    /// R-ZNS-3: purposes in the order they unlock. A new OA has the first two
    /// (transaction messages); each doubling of the quota unlocks the next.
    /// Marketing is not a ZNS purpose at all.
    public static let unlockOrder: [Template.Purpose] = [.transactionUpdate, .transactionComplete, .accountUpdate, .productUpdate]
    static let initiallyUnlocked = 2

    public init() {}

    /// The quality level a rate of negative feedback gives.
    public func level(negativeRate: Double) -> ZnsQuality.Level {
        if negativeRate <= standardRate { return .good }
        if negativeRate <= limitRate { return .medium }
        return .poor
    }
}

/// One OA's standing, advanced one Vietnam calendar day at a time.
public struct ZnsQualityState: Sendable, Hashable, Codable {
    /// One Vietnam day's delivered and negative counts.
    public struct Day: Sendable, Hashable, Codable {
        public var delivered: Int
        public var negative: Int

        public init(delivered: Int, negative: Int) {
            self.delivered = delivered
            self.negative = negative
        }
    }

    /// How the level moved.
    public enum Change: Sendable, Hashable {
        case quotaDoubled(to: Int)
        case quotaHalved(to: Int)
        case purposeUnlocked(Template.Purpose)
        case purposeLocked(Template.Purpose)
    }

    public private(set) var quota: Int
    public private(set) var unlocked: Int
    /// The last `rateWindowDays` closed days, oldest first.
    public private(set) var window: [Day] = []
    /// Levels and volumes of the days since the quota last changed, oldest first.
    public private(set) var spell: [SpellDay] = []

    /// A day of the current spell at one level.
    public struct SpellDay: Sendable, Hashable, Codable {
        public var level: Int32
        public var delivered: Int
    }

    public init(policy: ZnsQualityPolicy = ZnsQualityPolicy()) {
        quota = policy.startQuota
        unlocked = ZnsQualityPolicy.initiallyUnlocked
    }

    /// Negative feedback over delivered messages in the window.
    public func negativeRate() -> Double {
        Self.negativeRate(of: window)
    }

    /// Negative feedback over delivered messages in `days`.
    public static func negativeRate(of days: some Sequence<Day>) -> Double {
        let (delivered, negative) = days.reduce((0, 0)) { ($0.0 + $1.delivered, $0.1 + $1.negative) }
        return delivered == 0 ? 0 : Double(negative) / Double(delivered)
    }

    /// R-ZNS-1: feedback counts whenever it arrives, against the day its message was sent,
    /// so the days before the one to close are taken as they stand now (late feedback
    /// included), not as they stood when they were closed. `days` are the
    /// `rateWindowDays - 1` days before it, oldest first.
    public mutating func refreshWindow(_ days: [Day], policy: ZnsQualityPolicy) {
        window = Array(days.suffix(max(0, policy.rateWindowDays - 1)))
    }

    /// The level the window's rate gives under `policy`.
    public func level(_ policy: ZnsQualityPolicy) -> ZnsQuality.Level {
        policy.level(negativeRate: negativeRate())
    }

    public var allowedPurposes: [Template.Purpose] {
        Array(ZnsQualityPolicy.unlockOrder.prefix(unlocked))
    }

    /// Closes one day: its feedback joins the window, the day's level is
    /// judged on the window, and a finished spell changes quota and purposes.
    @discardableResult
    public mutating func close(_ day: Day, policy: ZnsQualityPolicy) -> [Change] {
        window.append(day)
        if window.count > policy.rateWindowDays { window.removeFirst(window.count - policy.rateWindowDays) }
        let level = self.level(policy)
        spell.append(SpellDay(level: level.rawValue, delivered: day.delivered))
        let longest = max(policy.growthSpellDays, policy.poorSpellDays, policy.mediumSpellDays ?? 0)
        if spell.count > longest { spell.removeFirst(spell.count - longest) }

        func lastDays(_ n: Int, all wanted: ZnsQuality.Level) -> ArraySlice<SpellDay>? {
            guard n > 0, spell.count >= n else { return nil }
            let tail = spell.suffix(n)
            return tail.allSatisfy { $0.level == wanted.rawValue } ? tail : nil
        }
        var changes: [Change] = []
        if let good = lastDays(policy.growthSpellDays, all: .good),
           good.reduce(0, { $0 + $1.delivered }) > policy.growthVolumeFactor * quota {
            quota *= 2
            changes.append(.quotaDoubled(to: quota))
            if unlocked < ZnsQualityPolicy.unlockOrder.count {
                changes.append(.purposeUnlocked(ZnsQualityPolicy.unlockOrder[unlocked]))
                unlocked += 1
            }
            spell.removeAll()
        } else if lastDays(policy.poorSpellDays, all: .poor) != nil {
            changes += lower(policy, lockPurpose: true)
        } else if let mediumDays = policy.mediumSpellDays, lastDays(mediumDays, all: .medium) != nil {
            changes += lower(policy, lockPurpose: false)
        }
        return changes
    }

    private mutating func lower(_ policy: ZnsQualityPolicy, lockPurpose: Bool) -> [Change] {
        var changes: [Change] = []
        let halved = max(policy.minimumQuota, quota / 2)
        if halved != quota {
            quota = halved
            changes.append(.quotaHalved(to: quota))
        }
        if lockPurpose && unlocked > ZnsQualityPolicy.initiallyUnlocked {
            unlocked -= 1
            changes.append(.purposeLocked(ZnsQualityPolicy.unlockOrder[unlocked]))
        }
        spell.removeAll()
        return changes
    }

    /// R-ZNS-2: on a Poor day, the templates whose own negative rate is over
    /// the limit are disabled (the OA's other templates keep working).
    public static func poorTemplates(_ stats: [String: Day], policy: ZnsQualityPolicy) -> [String] {
        stats.filter { $0.value.delivered > 0 && Double($0.value.negative) / Double($0.value.delivered) > policy.limitRate }
            .map(\.key).sorted()
    }
}

/// R-ZNS-2: a ZNS send is charged only once Zalo reports it delivered, and
/// Zalo's error answers become statuses a caller can act on. Codes from
/// Zalo's "Cách xử lý mã lỗi" page for ZNS.
public enum ZaloZnsErrors {
    /// What a Zalo error code means for the message.
    public struct Outcome: Sendable, Hashable {
        /// The gRPC status a caller of SendMessage sees.
        public let code: RPCError.Code
        public let message: String
        /// Worth sending again later (a provider hiccup, not a bad request).
        public let retryable: Bool
    }

    /// The meaning of Zalo's error `code`.
    public static func outcome(zaloError code: Int) -> Outcome {
        switch code {
        case -100: Outcome(code: .unavailable, message: "Zalo: unknown error, try again later", retryable: true)
        case -101, -102, -103, -104, -105: Outcome(code: .failedPrecondition, message: "Zalo: the ZNS application is not set up (error \(code)): check its id, secret and linked OA", retryable: false)
        case -106, -107: Outcome(code: .`internal`, message: "Zalo refused the call (error \(code))", retryable: false)
        case -108: Outcome(code: .invalidArgument, message: "recipient: Zalo says the phone number is invalid (error -108)", retryable: false)
        case -109: Outcome(code: .failedPrecondition, message: "template_id: Zalo does not know the template (error -109)", retryable: false)
        case -110: Outcome(code: .failedPrecondition, message: "recipient: their Zalo app is too old to receive ZNS (error -110)", retryable: false)
        case -111, -112: Outcome(code: .invalidArgument, message: "params: Zalo found the template data empty or invalid (error \(code))", retryable: false)
        default: Outcome(code: .unavailable, message: "Zalo answered error \(code)", retryable: true)
        }
    }
}
