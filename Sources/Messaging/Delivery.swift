import ChatMeshAPI
import MeshRPC

/// One message on its way to a provider, its text already rendered.
public struct Delivery: Sendable, Hashable {
    public var messageId: String
    public var channel: Template.Channel
    /// A phone (ZNS, SMS), an e-mail address (EMAIL) or a page-scoped id (MESSENGER).
    public var recipient: String
    public var text: String
    /// ZNS sends a template id and its data rather than text.
    public var providerTemplateId: String
    public var params: [String: String]
    /// The e-mail subject (the template's name).
    public var subject: String = ""
    /// Messenger outside the 24-hour window: a human agent's message, sent with the HUMAN_AGENT tag (R-MSG-5).
    public var humanAgent: Bool = false

    public init(messageId: String, channel: Template.Channel, recipient: String, text: String, providerTemplateId: String = "", params: [String: String] = [:]) {
        self.messageId = messageId
        self.channel = channel
        self.recipient = recipient
        self.text = text
        self.providerTemplateId = providerTemplateId
        self.params = params
    }
}

/// What a provider answered for one message.
public enum DeliveryOutcome: Sendable, Hashable {
    /// The provider took it (ZNS, SMS: delivery is confirmed later).
    case sent(providerId: String)
    /// The provider confirmed delivery (Email accepted by the server, Messenger, the sandbox).
    case delivered(providerId: String)
    /// Refused for good: sending again would not help (bad number, unknown template).
    case rejected(code: RPCError.Code, message: String)
    /// Not sent this time (time-out, rate limit, provider down): worth retrying later.
    case failedTemporarily(message: String)
}

/// A channel's provider, speaking its real protocol (R-MSG-1). Adapters never
/// throw: every answer, including a transport failure, is an outcome.
public protocol DeliveryAdapter: Sendable {
    var name: String { get }
    func deliver(_ delivery: Delivery) async -> DeliveryOutcome
}

/// Delivers nothing and says so: every message "arrives" at once, and the
/// message row in the store (status DELIVERED, provider "sandbox", the text
/// as rendered) is the record of what would have been sent. The local demo
/// mesh uses it so a newcomer sends nothing to real people.
public struct SandboxAdapter: DeliveryAdapter {
    public var name: String { "sandbox" }

    public init() {}

    public func deliver(_ delivery: Delivery) async -> DeliveryOutcome {
        .delivered(providerId: "sandbox-" + delivery.messageId)
    }
}

/// R-MSG-3: what a send costs, by channel. Email and Messenger are free; ZNS
/// and SMS are paid from the prepaid balance (a ZNS send only once delivered, R-ZNS-2).
public struct MessagePrices: Sendable, Hashable {
    public var znsVnd: Int64 = 300
    public var smsVnd: Int64 = 800
    public var emailVnd: Int64 = 0
    public var messengerVnd: Int64 = 0

    public init() {}

    /// The price of one message on `channel`, held when it is reserved (R-MSG-3).
    public func price(_ channel: Template.Channel) -> Int64 {
        switch channel {
        case .zns: znsVnd
        case .sms: smsVnd
        case .email: emailVnd
        case .messenger: messengerVnd
        default: 0
        }
    }
}
