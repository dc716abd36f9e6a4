import MeshRPC

/// One delivery attempt of an outbox row, as plain rules: what the subscriber's
/// answer means, and what it does to the row (deleted, retried later with backoff,
/// dead after its last attempt, or left as it was). The dispatcher asks and writes.
public enum OutboxAttempt {
    /// What a subscriber's answer means for the row.
    public enum Outcome: Sendable, Hashable {
        case delivered
        /// The subscriber answered with an error: this event's attempt.
        case refused(String)
        /// The subscriber could not be reached or asked for time: no event's fault, so no attempt
        /// is counted and the queue waits for it as a whole.
        case unreachable(String)
        /// The dispatcher is stopping: the event was not refused and keeps its attempts.
        case stopping
    }

    /// A subscriber's answer that the event could not be handled yet and should be tried again
    /// no sooner than `afterMs` from now (a platform's Retry-After); an attempt is counted.
    public struct RetryLater: Error, Sendable, Hashable, CustomStringConvertible {
        public var reason: String
        public var afterMs: Int64

        public init(reason: String, afterMs: Int64) {
            self.reason = reason
            self.afterMs = afterMs
        }

        public var description: String { reason }
    }

    /// What a subscriber's thrown error means for the row.
    public static func outcome(of error: any Error) -> Outcome {
        switch error {
        case let status as RPCError where meansUnreachable(status.code): .unreachable("\(status)")
        case is CancellationError: .stopping
        default: .refused("\(error)")
        }
    }

    /// Codes that say the subscriber is away or overloaded, not that the event is wrong.
    public static func meansUnreachable(_ code: RPCError.Code) -> Bool {
        switch code {
        case .unavailable, .deadlineExceeded, .cancelled, .resourceExhausted: true
        default: false
        }
    }

    /// What happens to the row.
    public enum Decision: Sendable, Hashable {
        case delete
        /// Attempted again at `atMs`.
        case retry(attempts: Int64, atMs: Int64)
        /// No more attempts: listed for an operator to replay (`chatmesh events --replay`).
        case dead(attempts: Int64)
        case untouched
    }

    /// - Parameters:
    ///   - attempts: the attempts the row had before this one.
    ///   - notBeforeMs: the subscriber asked for no retry sooner than this after now (`RetryLater`).
    public static func decide(_ outcome: Outcome, attempts: Int64, nowMs: Int64, policy: OutboxDispatcher.Configuration, notBeforeMs: Int64 = 0) -> Decision {
        switch outcome {
        case .delivered: return .delete
        case .unreachable, .stopping: return .untouched
        case .refused:
            let made = attempts + 1
            if made >= policy.maxAttempts { return .dead(attempts: made) }
            return .retry(attempts: made, atMs: nowMs + max(policy.retryDelayMs(afterAttempt: made), notBeforeMs))
        }
    }
}
