/// R-REP-1: per staff member over a time range, from the one message and
/// assignment history, so that every view of it agrees.
///
/// A wait starts at a customer message when none is open (the conversation's
/// first message, or the first after a staff reply) and ends at the next staff
/// reply, which is credited with it; customer messages inside a wait start no
/// new wait; bot replies end no wait. A wait counts in the range its reply
/// falls in, so waits that began before `from` are included. Replies, closes
/// and assignments count when they happen in [from, to).
public enum StaffConversationStatsCalculator {
    public enum ReplyKind: Sendable, Hashable { case message, comment }
    public enum Sender: Sendable, Hashable { case customer, staff(String), bot }
    public enum AssignmentMode: Sendable, Hashable { case auto, manual }

    public struct Event: Sendable, Hashable {
        public enum What: Sendable, Hashable {
            case message(ReplyKind, Sender)
            case assigned(staffId: String, AssignmentMode)
            case closed(staffId: String)
        }

        public let conversationId: String
        public let atMs: Int64
        public let what: What

        public init(conversationId: String, atMs: Int64, what: What) {
            self.conversationId = conversationId
            self.atMs = atMs
            self.what = what
        }
    }

    public struct Stats: Sendable, Hashable {
        public var staffId: String
        public var avgResponseMs: Int64 = 0
        public var assignedAuto = 0
        public var assignedManual = 0
        public var closed = 0
        public var commentsReplied = 0
        public var messagesReplied = 0
        public var customersReplied = 0

        public init(staffId: String) {
            self.staffId = staffId
        }
    }

    /// Stats for every staff member active in [fromMs, toMs), sorted by staff id.
    /// `events` is the history of the conversations concerned; order does not matter.
    public static func compute(_ events: [Event], fromMs: Int64, toMs: Int64) -> [Stats] {
        var stats: [String: Stats] = [:]
        var responseTotal: [String: Int64] = [:]
        var responseCount: [String: Int64] = [:]
        var customersReplied: [String: Set<String>] = [:]
        func entry(_ staff: String) -> Stats { stats[staff] ?? Stats(staffId: staff) }

        var byConversation: [String: [Event]] = [:]
        for event in events {
            byConversation[event.conversationId, default: []].append(event)
        }
        for (conversation, history) in byConversation {
            // Stable by time: events of the same millisecond keep their given order.
            let ordered = history.enumerated().sorted { ($0.element.atMs, $0.offset) < ($1.element.atMs, $1.offset) }.map(\.element)
            var waitStartedAt: Int64?
            for event in ordered {
                let inRange = event.atMs >= fromMs && event.atMs < toMs
                switch event.what {
                case .message(_, .customer):
                    if waitStartedAt == nil { waitStartedAt = event.atMs }
                case .message(_, .bot):
                    break
                case .message(let kind, .staff(let staff)):
                    if inRange {
                        var s = entry(staff)
                        switch kind {
                        case .comment: s.commentsReplied += 1
                        case .message: s.messagesReplied += 1
                        }
                        stats[staff] = s
                        customersReplied[staff, default: []].insert(conversation)
                        if let started = waitStartedAt {
                            responseTotal[staff, default: 0] += event.atMs - started
                            responseCount[staff, default: 0] += 1
                        }
                    }
                    waitStartedAt = nil
                case .assigned(let staff, let mode):
                    guard inRange else { continue }
                    var s = entry(staff)
                    switch mode {
                    case .auto: s.assignedAuto += 1
                    case .manual: s.assignedManual += 1
                    }
                    stats[staff] = s
                case .closed(let staff):
                    guard inRange else { continue }
                    var s = entry(staff)
                    s.closed += 1
                    stats[staff] = s
                }
            }
        }
        for (staff, count) in responseCount where count > 0 {
            stats[staff]?.avgResponseMs = responseTotal[staff, default: 0] / count
        }
        for (staff, customers) in customersReplied {
            stats[staff]?.customersReplied = customers.count
        }
        return stats.values.sorted { $0.staffId < $1.staffId }
    }
}
