/// A message's delivery (R-MSG-1, R-MSG-3, R-ZNS-2) as plain rules: what a
/// provider's answer or a later delivery report does to a message and to the money
/// held for it. The store loads the message's status, asks, and writes the answer.
public enum MessageDelivery {
    /// `messages.status`, as stored and as `SendMessageResponse.status` answers it.
    public enum Status: String, Sendable, Hashable, CaseIterable {
        /// Reserved (its price held) and not yet taken by a provider, or to be tried again.
        case queued = "QUEUED"
        /// Taken by the provider; a delivery report may follow (ZNS, SMS).
        case sent = "SENT"
        case delivered = "DELIVERED"
        /// Refused for good; its price was given back.
        case failed = "FAILED"
    }

    /// A message as sent (or as its idempotency key sent it before): what SendMessage answers.
    public struct Sent: Sendable, Hashable {
        public var messageId: String
        public var status: Status
        /// What it cost the shop's balance (0 when it did not go).
        public var costVnd: Int64
    }

    /// What a provider's answer makes of a message.
    public struct Settlement: Sendable, Hashable {
        public var status: Status
        /// The provider's reason, kept on the message ("" when it went).
        public var error: String
        /// The hold on the shop's balance goes back: the message will cost nothing.
        public var releasesHold: Bool
    }

    /// What a provider's answer makes of a message.
    public static func settle(_ outcome: DeliveryOutcome) -> Settlement {
        switch outcome {
        case .sent: Settlement(status: .sent, error: "", releasesHold: false)
        case .delivered: Settlement(status: .delivered, error: "", releasesHold: false)
        case .rejected(_, let message): Settlement(status: .failed, error: message, releasesHold: true)
        // Stays queued, its price still held, for the next attempt.
        case .failedTemporarily(let message): Settlement(status: .queued, error: message, releasesHold: false)
        }
    }

    /// What a provider's delivery report (R-ZNS-2) does to a message in `current`.
    public enum Report: Sendable, Hashable {
        /// Settle it with this outcome.
        case settle(DeliveryOutcome)
        /// The report says what the message already says (a report repeated).
        case unchanged
        /// A report on a message never sent.
        case notSentYet
        /// A report contradicting what was recorded before.
        case alreadySettled(Status)
    }

    /// What a provider's delivery report does to a message in `current`.
    public static func report(current: Status, delivered: Bool, reason: String) -> Report {
        switch (current, delivered) {
        case (.sent, true): .settle(.delivered(providerId: ""))
        case (.sent, false): .settle(.rejected(code: .failedPrecondition, message: reason.isEmpty ? "the provider reported it undelivered" : reason))
        case (.delivered, true), (.failed, false): .unchanged
        case (.queued, _): .notSentYet
        case (.delivered, false), (.failed, true): .alreadySettled(current)
        }
    }
}

/// A scenario step's state (`scheduled_steps.status`, R-MSG-4): waiting for its time,
/// being sent (claimed by one sender), or done one way or another.
public enum ScheduledStepStatus: String, Sendable, Hashable, CaseIterable {
    case pending = "PENDING"
    case sending = "SENDING"
    case sent = "SENT"
    case failed = "FAILED"
    /// Not sent, for a reason of the rules (the customer is out of the window, no recipient…).
    case skipped = "SKIPPED"
    /// The scenario was stopped for this customer (tag detached, customer replied).
    case cancelled = "CANCELLED"
}
