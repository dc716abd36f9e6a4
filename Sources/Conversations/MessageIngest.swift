import ChatMeshAPI

/// Where a customer's phone or address came from (R-CONV-3): a value staff typed
/// is never replaced by one read from a message.
public enum ContactSource: Int64, Sendable, Hashable {
    case none = 0
    case captured = 1
    case staff = 2
}

/// R-CONV-1, R-CONV-3, R-CONV-5 and R-CONV-8: what one incoming message does to its
/// customer and conversation, decided in plain Swift on what the store loaded (each
/// may be missing: a first message makes both). The store writes the `Outcome` in
/// the message's transaction, with its outbox events and change-log entries.
public enum MessageIngest {
    /// The customer as stored, or as a first message makes them.
    public struct Customer: Sendable, Hashable {
        public var name: String
        public var phone = ""
        public var phoneSource = ContactSource.none
        public var address = ""
        public var addressSource = ContactSource.none
        public var email = ""
        public var emailSource = ContactSource.none
        public var blocked = false
    }

    /// The conversation's state the rules look at.
    public struct Thread: Sendable, Hashable {
        public var status: Conversation.Status
        public var assignedStaffId: String
        public var lastMessageAtMs: Int64
    }

    /// The message as the platform gave it, with what `ContactCapture` read in its text.
    public struct Message: Sendable, Hashable {
        public var sender: ChatMessage.Sender
        public var customerName: String
        public var sentAtMs: Int64
        public var capturedPhone: String?
        public var capturedAddress: String?
        public var capturedEmail: String? = nil
    }

    public struct Outcome: Sendable, Hashable {
        public var customer: Customer
        /// The stored customer's name or contact changed: their row is written again.
        public var customerRowChanged = false
        /// What loyalty-svc, the inbox row and the change log know of the customer changed
        /// (their row, or a new conversation showing them).
        public var profileChanged = false
        public var newCustomer = false
        public var newConversation = false
        /// Set when the message gave a phone or an address that now stands on the customer.
        public var capturedPhone: String?
        public var capturedAddress: String?
        public var capturedEmail: String?
        public var thread: Thread
        /// A closed conversation opened again by the customer (R-CONV-8).
        public var reopened = false
        /// Unassigned and written to by the customer: the page's rota picks whose turn it is (R-CONV-1).
        public var assignFromRota = false
        /// The conversation shows this message as its newest (messages may arrive out of order).
        public var isLatest = false
        /// Customer messages since staff last wrote; a staff message clears it.
        public var countsUnread = false
        /// messaging-svc hears of every customer message (scenarios stop, the Messenger window opens).
        public var tellsMessaging = false
    }

    public static func decide(customer known: Customer?, conversation: Thread?, message: Message) -> Outcome {
        // R-CONV-5: a first message makes the customer (its referral is kept by the store).
        var customer = known ?? Customer(name: message.customerName)
        var outcome = Outcome(customer: customer, thread: conversation ?? Thread(status: .open, assignedStaffId: "", lastMessageAtMs: message.sentAtMs))
        outcome.newCustomer = known == nil
        outcome.newConversation = conversation == nil
        if customer.name.isEmpty && !message.customerName.isEmpty {
            customer.name = message.customerName
            outcome.customerRowChanged = true
        }
        let fromCustomer = message.sender == .customer
        // R-CONV-3: a captured value never replaces one staff typed; a blocked customer's messages are kept, not mined.
        if fromCustomer && !customer.blocked {
            if let phone = message.capturedPhone, customer.phoneSource != .staff, customer.phone != phone {
                customer.phone = phone
                customer.phoneSource = .captured
                outcome.customerRowChanged = true
                outcome.capturedPhone = phone
            }
            if let address = message.capturedAddress, customer.addressSource != .staff, customer.address != address {
                customer.address = address
                customer.addressSource = .captured
                outcome.customerRowChanged = true
                outcome.capturedAddress = address
            }
            // R-CONV-10: an e-mail address follows the phone's precedence.
            if let email = message.capturedEmail, customer.emailSource != .staff, customer.email != email {
                customer.email = email
                customer.emailSource = .captured
                outcome.customerRowChanged = true
                outcome.capturedEmail = email
            }
        }
        // A new conversation shows its customer's name in the inbox.
        outcome.profileChanged = outcome.customerRowChanged || outcome.newConversation
        outcome.customer = customer
        // R-CONV-1 / R-CONV-8: a customer message reopens a closed conversation and finds it an owner, unless the customer is blocked.
        if fromCustomer && !customer.blocked {
            if outcome.thread.status == .closed {
                outcome.thread.status = .open
                outcome.reopened = true
            }
            outcome.assignFromRota = outcome.thread.assignedStaffId.isEmpty
        }
        outcome.isLatest = message.sentAtMs >= outcome.thread.lastMessageAtMs
        if outcome.isLatest { outcome.thread.lastMessageAtMs = message.sentAtMs }
        outcome.countsUnread = fromCustomer
        outcome.tellsMessaging = fromCustomer
        return outcome
    }
}

/// A message as a platform delivers it to conversation-svc (IngestMessage, checked).
public struct IncomingMessage: Sendable, Hashable {
    public var pageId: String
    /// The platform's id of the customer (a page-scoped id, a Zalo user id).
    public var customerExternalId: String
    public var customerName: String
    public var kind: ChatMessage.Kind
    public var sender: ChatMessage.Sender
    /// Who wrote it, for a staff message.
    public var staffId: String
    public var text: String
    /// The post a comment is under.
    public var postId: String
    public var sentAtMs: Int64
    /// Where a first message came from (R-CONV-5).
    public var referral: Referral?
    /// The message's id on the platform (a comment needs it to be replied to, R-CONV-9).
    public var platformMessageId: String = ""
}

/// What ingesting a message made of it: where it went and what the rules did.
public struct IngestedMessage: Sendable, Hashable {
    public var conversationId: String
    public var messageId: String
    public var customerId: String
    public var status: Conversation.Status
    public var assignedStaffId: String
    /// A phone or address read from the message that now stands on the customer (R-CONV-3).
    public var capturedPhone: String?
    public var capturedAddress: String?
    public var capturedEmail: String? = nil
}

/// R-CONV-1: who a conversation goes to.
public enum Assignment: Sendable, Hashable {
    /// Chosen by staff.
    case manual(staffId: String)
    /// The page's rota: whose turn it is among those online, unless a caller already picked (`staffId`).
    case automatic(staffId: String?)

    var staffId: String? {
        switch self {
        case .manual(let staff): staff
        case .automatic(let staff): staff
        }
    }

    var isAutomatic: Bool {
        if case .automatic = self { true } else { false }
    }
}
