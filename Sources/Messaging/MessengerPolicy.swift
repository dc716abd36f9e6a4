/// R-MSG-5: when a Facebook page may message a customer. Within 24 hours of
/// the customer's last message anyone may; after that only a human agent,
/// within 7 days, with Messenger's HUMAN_AGENT tag; bots and broadcasts
/// outside the window are refused with the reason.
public enum MessengerPolicy {
    public static let standardWindowMs: Int64 = 24 * 3_600_000
    public static let humanAgentWindowMs: Int64 = 7 * 24 * 3_600_000

    /// Who sends: a person (staff) or the shop's automation.
    public enum Sender: Sendable, Hashable {
        case staff
        case bot
        case broadcast
    }

    /// Whether Messenger allows the send now, and how.
    public enum Decision: Sendable, Hashable {
        /// Send as a normal response (messaging_type RESPONSE).
        case allowed
        /// Send with messaging_type MESSAGE_TAG and tag HUMAN_AGENT.
        case allowedWithHumanAgentTag
        case refused(reason: String)
    }

    /// - Parameter lastCustomerMessageAtMs: nil when the customer never wrote to the page.
    public static func decide(sender: Sender, lastCustomerMessageAtMs: Int64?, nowMs: Int64) -> Decision {
        guard let last = lastCustomerMessageAtMs else {
            return .refused(reason: "the customer has never messaged the page, so the page may not message them (R-MSG-5)")
        }
        let elapsed = nowMs - last
        if elapsed < standardWindowMs { return .allowed }
        switch sender {
        case .staff:
            if elapsed < humanAgentWindowMs { return .allowedWithHumanAgentTag }
            return .refused(reason: "the customer's last message is more than 7 days old: even a human agent may not message them (R-MSG-5)")
        case .bot:
            return .refused(reason: "outside the 24-hour window only a human agent may message the customer, not a bot (R-MSG-5)")
        case .broadcast:
            return .refused(reason: "outside the 24-hour window a broadcast may not message the customer (R-MSG-5)")
        }
    }
}
