import ChatMeshAPI

/// R-CONV-9: a staff reply's life in plain Swift. `draft` says whether a
/// conversation can be replied to that way, on what the store loaded; `settle`
/// says what a delivery answer does to the reply; `retry` when staff may send it
/// again. The store loads, asks and writes (with the reply's outbox event and its
/// change-log entry) in one transaction.
///
/// The platform's own windows (R-MSG-5 on Messenger, Zalo's reply window, 7 days
/// for a private reply) are not decided here: messaging-svc applies them when it
/// delivers, at the time the platform is called, so a reply that waited through
/// an outage is judged by the clock it is sent at.
public enum StaffReply {
    /// Messenger's limit, the smallest of the platforms' (Zalo OA: 2,000 too; comments: 8,000).
    public static let maxTextLength = 2_000

    /// What the rules look at in the conversation being replied to.
    public struct Thread: Sendable, Hashable {
        public var conversationId: String
        public var platform: Page.Platform
        public var customerBlocked: Bool

        public init(conversationId: String, platform: Page.Platform, customerBlocked: Bool) {
            self.conversationId = conversationId
            self.platform = platform
            self.customerBlocked = customerBlocked
        }
    }

    /// The comment a COMMENT_* reply answers, as loaded from this conversation.
    public struct Comment: Sendable, Hashable {
        public var messageId: String
        public var kind: ChatMessage.Kind
        public var sender: ChatMessage.Sender
        public var platformMessageId: String
        /// A private reply to it that is pending or sent (a failed one does not count).
        public var hasPrivateReply: Bool

        public init(messageId: String, kind: ChatMessage.Kind, sender: ChatMessage.Sender, platformMessageId: String, hasPrivateReply: Bool) {
            self.messageId = messageId
            self.kind = kind
            self.sender = sender
            self.platformMessageId = platformMessageId
            self.hasPrivateReply = hasPrivateReply
        }
    }

    /// Whether `thread` may be replied to at `target`; `comment` is what the store found for
    /// `comment_message_id` (nil: nothing in this conversation).
    public static func draft(thread: Thread, target: ChatMessage.Target, commentMessageId: String, comment: Comment?) throws(ConversationError) {
        // R-CONV-8: a blocked customer is not written to; unblocking comes first.
        if thread.customerBlocked { throw .replyToBlockedCustomer(conversation: thread.conversationId) }
        switch target {
        case .inbox:
            return
        case .commentPublic, .commentPrivate:
            guard thread.platform == .facebook else { throw .replyTargetNotOnPlatform(target: target, platform: thread.platform) }
            guard let comment else { throw .noMessage(conversation: thread.conversationId, message: commentMessageId) }
            guard comment.kind == .comment, comment.sender == .customer else { throw .notACustomerComment(commentMessageId) }
            guard !comment.platformMessageId.isEmpty else { throw .commentWithoutPlatformId(commentMessageId) }
            if target == .commentPrivate && comment.hasPrivateReply { throw .commentAlreadyRepliedPrivately(commentMessageId) }
        default:
            throw .replyTargetNotOnPlatform(target: target, platform: thread.platform)
        }
    }

    /// A reply as stored: its delivery and which attempt is out.
    public struct State: Sendable, Hashable {
        public var delivery: ChatMessage.Delivery
        public var attempt: Int64

        public init(delivery: ChatMessage.Delivery, attempt: Int64) {
            self.delivery = delivery
            self.attempt = attempt
        }
    }

    /// What delivering attempt `attempt` came to.
    public enum Answer: Sendable, Hashable {
        case sent(platformMessageId: String)
        case failed(reason: String)
    }

    /// The change to write, or nil when the answer is stale (an attempt that is no longer the
    /// reply's current one, or a reply already settled): a redelivered answer changes nothing.
    public static func settle(_ state: State, attempt: Int64, answer: Answer) -> (delivery: ChatMessage.Delivery, platformMessageId: String, failureReason: String)? {
        guard state.delivery == .pending, state.attempt == attempt else { return nil }
        switch answer {
        case .sent(let id): return (.sent, id, "")
        case .failed(let reason): return (.failed, "", reason)
        }
    }

    /// RetryReply: a FAILED reply goes out again as the next attempt, PENDING.
    public static func retry(_ state: State, messageId: String) throws(ConversationError) -> State {
        guard state.delivery == .failed else { throw .replyNotFailed(message: messageId, delivery: state.delivery) }
        return State(delivery: .pending, attempt: state.attempt + 1)
    }

    /// The key messaging-svc delivers an attempt under: one platform call per key.
    public static func deliveryKey(messageId: String, attempt: Int64) -> String { "\(messageId)#\(attempt)" }

    public static func parseDeliveryKey(_ key: String) -> (messageId: String, attempt: Int64)? {
        guard let hash = key.lastIndex(of: "#"), let attempt = Int64(key[key.index(after: hash)...]), attempt > 0 else { return nil }
        return (String(key[..<hash]), attempt)
    }
}
