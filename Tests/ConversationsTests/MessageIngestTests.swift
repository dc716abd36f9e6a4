import ChatMeshAPI
@testable import Conversations
import Testing

/// R-CONV-1, R-CONV-3, R-CONV-5 and R-CONV-8 on one incoming message, with no database:
/// each row is a customer and conversation as loaded, a message, and what must follow.
@Suite struct MessageIngestTests {
    typealias I = MessageIngest

    static let lan = I.Customer(name: "Lan")
    static let lanStaffPhone = I.Customer(name: "Lan", phone: "0901111111", phoneSource: .staff)
    static let lanCapturedPhone = I.Customer(name: "Lan", phone: "0902222222", phoneSource: .captured)
    static let blocked = I.Customer(name: "Spam", blocked: true)
    static let open = I.Thread(status: .open, assignedStaffId: "st1", lastMessageAtMs: 1_000)
    static let openUnassigned = I.Thread(status: .open, assignedStaffId: "", lastMessageAtMs: 1_000)
    static let closed = I.Thread(status: .closed, assignedStaffId: "st1", lastMessageAtMs: 1_000)

    static func fromCustomer(at: Int64 = 2_000, phone: String? = nil, address: String? = nil, name: String = "Lan") -> I.Message {
        I.Message(sender: .customer, customerName: name, sentAtMs: at, capturedPhone: phone, capturedAddress: address)
    }

    static let fromStaff = I.Message(sender: .staff, customerName: "", sentAtMs: 2_000)

    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var customer: I.Customer?
        var conversation: I.Thread?
        var message: I.Message
        var check: @Sendable (I.Outcome) -> Bool
        var testDescription: String { name }
    }

    static let rows: [Row] = [
        Row(name: "a first message makes the customer and the conversation, with the phone it gives", customer: nil, conversation: nil,
            message: fromCustomer(phone: "0903333333")) { o in
            o.newCustomer && o.newConversation && o.customerRowChanged && o.profileChanged && o.capturedPhone == "0903333333"
                && o.customer.phoneSource == .captured && o.thread == I.Thread(status: .open, assignedStaffId: "", lastMessageAtMs: 2_000)
                && o.assignFromRota && o.isLatest && o.countsUnread && o.tellsMessaging && !o.reopened
        },
        Row(name: "a first message without contact still shows its customer in the inbox", customer: nil, conversation: nil,
            message: fromCustomer()) { o in
            o.newCustomer && !o.customerRowChanged && o.profileChanged && o.capturedPhone == nil
        },
        Row(name: "a known customer's new conversation", customer: lan, conversation: nil, message: fromCustomer()) { o in
            !o.newCustomer && o.newConversation && o.profileChanged && !o.customerRowChanged
        },
        Row(name: "a staff reply clears unread and tells nobody", customer: lan, conversation: open, message: fromStaff) { o in
            !o.countsUnread && !o.tellsMessaging && !o.assignFromRota && !o.profileChanged && o.thread.assignedStaffId == "st1" && o.isLatest
        },
        Row(name: "a staff message to an unassigned conversation does not assign it", customer: lan, conversation: openUnassigned,
            message: fromStaff) { o in !o.assignFromRota },
        Row(name: "a customer message to an unassigned conversation asks the rota", customer: lan, conversation: openUnassigned,
            message: fromCustomer()) { o in o.assignFromRota && o.countsUnread && o.tellsMessaging },
        Row(name: "a customer reopens a closed conversation, which keeps its owner", customer: lan, conversation: closed,
            message: fromCustomer()) { o in o.reopened && o.thread.status == .open && !o.assignFromRota && o.thread.assignedStaffId == "st1" },
        Row(name: "a blocked customer's message reopens nothing, assigns nothing and is not mined", customer: blocked, conversation: closed,
            message: fromCustomer(phone: "0904444444", address: "12 Lê Lợi, Quận 1")) { o in
            !o.reopened && o.thread.status == .closed && !o.assignFromRota && o.capturedPhone == nil && o.capturedAddress == nil
                && !o.customerRowChanged && o.countsUnread
        },
        Row(name: "a phone staff typed is never replaced by a captured one", customer: lanStaffPhone, conversation: open,
            message: fromCustomer(phone: "0905555555", address: "12 Lê Lợi, Quận 1")) { o in
            o.customer.phone == "0901111111" && o.customer.phoneSource == .staff && o.capturedPhone == nil
                && o.capturedAddress == "12 Lê Lợi, Quận 1" && o.customer.addressSource == .captured && o.customerRowChanged
        },
        Row(name: "a captured phone is replaced by a newer captured one", customer: lanCapturedPhone, conversation: open,
            message: fromCustomer(phone: "0906666666")) { o in o.customer.phone == "0906666666" && o.capturedPhone == "0906666666" },
        Row(name: "the same phone again changes nothing", customer: lanCapturedPhone, conversation: open,
            message: fromCustomer(phone: "0902222222")) { o in !o.customerRowChanged && !o.profileChanged && o.capturedPhone == nil },
        Row(name: "a customer without a name takes the one the platform gives", customer: I.Customer(name: ""), conversation: open,
            message: fromCustomer(name: "Lan")) { o in o.customer.name == "Lan" && o.customerRowChanged && o.profileChanged },
        Row(name: "a message older than the newest does not become the conversation's last", customer: lan, conversation: open,
            message: fromCustomer(at: 500)) { o in !o.isLatest && o.thread.lastMessageAtMs == 1_000 && o.countsUnread },
        Row(name: "a message at the same time as the newest is shown", customer: lan, conversation: open,
            message: fromCustomer(at: 1_000)) { o in o.isLatest },
    ]

    @Test(arguments: rows)
    func decides(_ row: Row) {
        let outcome = I.decide(customer: row.customer, conversation: row.conversation, message: row.message)
        #expect(row.check(outcome), "\(outcome)")
    }
}
