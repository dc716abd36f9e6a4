import ChatMeshAPI

/// R-CONV-9 and R-MSG-5: delivering a staff reply through its platform, as plain
/// rules. `permission` applies the platform's window at the time of sending;
/// `next` says, from what was recorded for the delivery key, whether to call the
/// platform or answer what happened before (one platform call per key, whatever
/// fails and restarts in between); `record` says what an adapter's answer is.
public enum ReplyDelivery {
    /// Facebook allows a private reply to a comment within 7 days of it.
    public static let privateReplyWindowMs: Int64 = 7 * 24 * 3_600_000
    /// Zalo OA consultation messages: within 7 days of the customer's last message unless configured.
    public static let defaultZaloWindowMs: Int64 = 7 * 24 * 3_600_000

    /// One reply as an adapter sends it.
    public struct Reply: Sendable, Hashable {
        public var shopId: String
        public var pageId: String
        public var deliveryKey: String
        public var platform: Page.Platform
        public var target: ChatMessage.Target
        /// INBOX: the page-scoped (Messenger) or Zalo user id.
        public var recipient: String
        /// COMMENT_*: the comment's platform id.
        public var commentId: String
        public var text: String
        /// Messenger outside the 24-hour window: sent with the HUMAN_AGENT tag (R-MSG-5).
        public var humanAgent = false

        public init(_ request: DeliverReplyRequest) {
            shopId = request.shopId
            pageId = request.pageId
            deliveryKey = request.deliveryKey
            platform = request.platform
            target = request.target
            recipient = request.recipient
            commentId = request.commentId
            text = request.text
        }
    }

    public enum Permission: Sendable, Hashable {
        case send(humanAgent: Bool)
        case refused(reason: String)
    }

    /// Whether the platform allows this reply now, and how.
    public static func permission(_ request: DeliverReplyRequest, nowMs: Int64, zaloWindowMs: Int64 = defaultZaloWindowMs) -> Permission {
        let last = request.lastCustomerMessageAtMs > 0 ? request.lastCustomerMessageAtMs : nil
        switch (request.platform, request.target) {
        case (.facebook, .inbox):
            switch MessengerPolicy.decide(sender: .staff, lastCustomerMessageAtMs: last, nowMs: nowMs) {
            case .allowed: return .send(humanAgent: false)
            case .allowedWithHumanAgentTag: return .send(humanAgent: true)
            case .refused(let reason): return .refused(reason: "window closed: \(reason)")
            }
        case (.facebook, .commentPublic):
            return .send(humanAgent: false)
        case (.facebook, .commentPrivate):
            if nowMs - request.commentAtMs >= privateReplyWindowMs {
                return .refused(reason: "window closed: the comment is more than 7 days old, and Facebook allows a private reply only within 7 days of it (R-CONV-9)")
            }
            return .send(humanAgent: false)
        case (.zalo, .inbox):
            let days = zaloWindowMs / 86_400_000
            guard let last else {
                return .refused(reason: "window closed: the customer has never messaged the official account, so Zalo allows no consultation message (R-CONV-9)")
            }
            if nowMs - last >= zaloWindowMs {
                return .refused(reason: "window closed: the customer's last message is more than \(days) days old, and Zalo allows consultation messages only within \(days) days of it (R-CONV-9)")
            }
            return .send(humanAgent: false)
        case (.zalo, _):
            return .refused(reason: "Zalo official accounts have no comments to reply to")
        default:
            return .refused(reason: "no platform \(request.platform.protoName) / target \(request.target.protoName) to deliver to")
        }
    }

    /// What is recorded for a delivery key.
    public enum Recorded: Sendable, Hashable {
        case nothing
        /// A platform call began and its answer was never recorded (the process stopped).
        case attempting
        /// The platform asked for time; the next request calls it again.
        case retrying
        case sent(platformMessageId: String)
        case failed(reason: String)
    }

    public enum Step: Sendable, Hashable {
        /// Record `attempting`, then call the platform.
        case call
        /// Answer without calling the platform (and record it when it is new).
        case answer(Outcome)
    }

    /// What an attempt came to, as recorded and answered to conversation-svc.
    public enum Outcome: Sendable, Hashable {
        case sent(platformMessageId: String)
        case failed(reason: String)
        case retry(reason: String, afterMs: Int64)
    }

    /// - Parameter platform: names the platform in the reason given for an interrupted attempt.
    public static func next(_ recorded: Recorded, target: ChatMessage.Target, platform: String) -> Step {
        switch recorded {
        case .nothing, .retrying: return .call
        case .sent(let id): return .answer(.sent(platformMessageId: id))
        case .failed(let reason): return .answer(.failed(reason: reason))
        case .attempting:
            // Facebook itself takes one private reply per comment: calling again cannot send twice.
            if target == .commentPrivate { return .call }
            // Neither Messenger, comment replies nor Zalo OA take an idempotency key: the reply
            // may have gone out, so it is never sent again unasked.
            return .answer(.failed(reason: """
                delivery was interrupted after the reply was handed to \(platform), so it may have reached the customer; \
                look at the conversation on \(platform) before sending it again
                """))
        }
    }
}

/// A platform's answer to one reply.
public enum ReplyAdapterAnswer: Sendable, Hashable {
    case sent(platformMessageId: String)
    /// Refused for good, in words staff understand.
    case refused(reason: String)
    /// Not sent this time (rate limit, time-out, outage); `afterMs` from the platform's Retry-After, else 0.
    case temporary(reason: String, afterMs: Int64)
    /// Facebook: this comment already has its private reply (a retried interrupted attempt that had gone through).
    case alreadyReplied
}

/// Sends replies through one platform (R-CONV-9). Never throws: every answer is a `ReplyAdapterAnswer`.
public protocol ReplyAdapter: Sendable {
    /// The platform as staff know it ("Messenger", "Facebook", "Zalo").
    var platformName: String { get }
    func send(_ reply: ReplyDelivery.Reply) async -> ReplyAdapterAnswer
}

/// Sends nothing and says it went: the local demo mesh's replies are rows in conversation-svc.
public struct SandboxReplyAdapter: ReplyAdapter {
    public var platformName: String { "the sandbox" }

    public init() {}

    public func send(_ reply: ReplyDelivery.Reply) async -> ReplyAdapterAnswer {
        .sent(platformMessageId: "sandbox-" + reply.deliveryKey)
    }
}
