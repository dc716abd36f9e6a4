import ChatMeshAPI

/// A section of the chat panel (R-PANEL-1), as `changed_sections` and
/// `unavailable_sections` name it, and the service whose change feed it follows.
public enum PanelSection: String, CaseIterable, Sendable, Hashable, Comparable {
    case conversation, customer, tags, carts
    case orderSummary = "order_summary"
    case notes, referral
    case customFields = "custom_fields"
    case activity, member
    /// Added last: resume tokens carry sections as bits of their position.
    case messages

    public static func < (a: PanelSection, b: PanelSection) -> Bool { a.rawValue < b.rawValue }

    public var feed: PanelFeed {
        switch self {
        case .carts, .orderSummary: .order
        case .member: .loyalty
        default: .conversation
        }
    }

    /// What conversation-svc answers in one GetConversationContext call.
    static let fromConversationService: Set<PanelSection> = Set(allCases.filter { $0.feed == .conversation })

    /// The sections a change makes stale.
    static func stale(after kind: Change.Kind) -> Set<PanelSection> {
        switch kind {
        case .message, .newConversation, .replyDelivery: [.conversation, .messages]
        case .conversation: [.conversation]
        case .tags: [.tags, .conversation, .activity]
        case .notes: [.notes]
        case .customer: [.customer, .referral, .customFields, .conversation]
        case .block: [.customer, .activity]
        case .carts: [.carts]
        case .orders: [.orderSummary, .carts]
        case .member: [.member]
        default: Set(allCases)   // a kind newer than this gateway: everything, to be safe
        }
    }

    /// The bits of a set, for resume tokens.
    static func mask(_ sections: some Sequence<PanelSection>) -> Int {
        sections.reduce(0) { $0 | (1 << allCases.firstIndex(of: $1)!) }
    }

    static func sections(mask: Int) -> Set<PanelSection> {
        Set(allCases.enumerated().filter { mask & (1 << $0.offset) != 0 }.map(\.element))
    }
}

/// The services whose change feeds the live panel follows.
public enum PanelFeed: Int, CaseIterable, Sendable, Hashable {
    case conversation, order, loyalty

    var sections: Set<PanelSection> { Set(PanelSection.allCases.filter { $0.feed == self }) }
}
