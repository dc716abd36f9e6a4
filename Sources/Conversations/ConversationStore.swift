import ChatMeshAPI
import MeshRPC
import MeshStore
import VietnamCommerce

/// conversation-svc's storage: what the handlers ask of it, in domain terms.
/// Every call is scoped to one shop; every mutation is one transaction that
/// either applies whole or throws (a `ConversationError` naming the rule or field
/// that refused it) and leaves nothing behind.
public protocol ConversationStore: Sendable {
    // Pages and tags (R-TAG-1..3, R-TAG-6)
    func connectPage(shop: String, pageId: String, name: String, platform: Page.Platform, facebookLabelSync: Bool, nowMs: Int64) async throws -> Page
    func installDefaultTags(shop: String, pageId: String) async throws -> TagList
    func listTags(shop: String, pageId: String, includeHidden: Bool) async throws -> TagList
    func createFolder(shop: String, pageId: String, name: String) async throws -> TagFolder
    func createTag(shop: String, pageId: String, folderId: String, name: String, color: String, visible: Bool) async throws -> Tag
    func updateTag(shop: String, pageId: String, tagId: String, folderId: String, name: String, color: String, visible: Bool) async throws -> Tag
    func deleteTag(shop: String, pageId: String, tagId: String) async throws
    func attachTag(shop: String, conversationId: String, tagId: String, staffId: String, nowMs: Int64) async throws -> Conversation
    func detachTag(shop: String, conversationId: String, tagId: String, staffId: String, nowMs: Int64) async throws -> Conversation
    func setFacebookLabelSync(shop: String, pageId: String, enabled: Bool) async throws -> Page
    func syncFacebookLabels(
        shop: String, pageId: String, labels: [FacebookLabelSync.Label], attachments: [FacebookLabelSync.Attachment], morePages: Bool, nowMs: Int64
    ) async throws -> FacebookLabelSync.Outcome

    // Conversations and messages (R-CONV-1..3, R-CONV-5, R-CONV-8, R-TAG-5)
    /// `message` has been checked, its names trimmed and `sent_at_ms` set.
    func ingest(shop: String, _ message: IncomingMessage, nowMs: Int64) async throws -> IngestedMessage
    func listConversations(shop: String, filter: ConversationFilter) async throws -> ResultPage<Conversation>
    func conversation(shop: String, id: String) async throws -> Conversation
    /// R-PANEL-4: the list rows of these conversations (those that exist), with their tags.
    func conversations(shop: String, ids: [String]) async throws -> [Conversation]
    /// NOT_FOUND unless the page is connected.
    func requirePage(shop: String, pageId: String) async throws
    func listMessages(shop: String, conversationId: String, pageSize: Int, after: String?) async throws -> ResultPage<ChatMessage>
    func assign(shop: String, conversationId: String, _ assignment: Assignment, nowMs: Int64) async throws -> Conversation
    func setPresence(shop: String, pageId: String, staffId: String, online: Bool) async throws
    func setStatus(shop: String, conversationId: String, open: Bool, staffId: String, nowMs: Int64) async throws -> Conversation

    // Staff replies (R-CONV-9)
    /// Recorded PENDING with its delivery owed through the outbox; a repeated idempotency key answers the first reply.
    func sendReply(shop: String, _ reply: OutgoingReply, nowMs: Int64) async throws -> ChatMessage
    /// A FAILED reply, PENDING again as its next attempt.
    func retryReply(shop: String, messageId: String, nowMs: Int64) async throws -> ChatMessage

    // Customers (R-CONV-4..8)
    func customer(shop: String, id: String) async throws -> Customer
    /// - Parameter messagesOnly: the conversation and its newest messages alone.
    func conversationContext(shop: String, conversationId: String, notes: Int, activity: Int, messages: Int, messagesOnly: Bool) async throws -> ConversationContext
    func updateCustomer(shop: String, id: String, changes: CustomerChanges) async throws -> Customer
    func setBlocked(shop: String, customerId: String, blocked: Bool, staffId: String, nowMs: Int64) async throws -> Customer
    func addNote(shop: String, customerId: String, text: String, staffId: String, nowMs: Int64) async throws -> Note
    func listNotes(shop: String, customerId: String, pageSize: Int, after: String?) async throws -> ResultPage<Note>
    func deleteNote(shop: String, customerId: String, noteId: String) async throws
    func defineCustomField(shop: String, field: CustomField) async throws -> CustomField
    func listCustomFields(shop: String) async throws -> [CustomField]
    func setCustomFieldValue(shop: String, customerId: String, key: String, value: String) async throws -> Customer

    // History (R-ACT-1..2, R-REP-1)
    func listActivity(shop: String, filter: ActivityFilter) async throws -> ResultPage<ActivityEntry>
    /// Deletes tag history older than the retention of R-ACT-2, in every shop; returns how many entries went.
    func purgeExpiredActivity(nowMs: Int64) async throws -> Int
    /// The message and assignment history R-REP-1 is computed from: every event of
    /// the page's conversations that had a staff reply, assignment or close in [fromMs, toMs).
    func staffHistory(shop: String, pageId: String, fromMs: Int64, toMs: Int64) async throws -> [StaffConversationStatsCalculator.Event]
}

/// R-TAG-5: which conversations ListConversations returns, newest activity first.
public struct ConversationFilter: Sendable {
    public var pageId: String
    public var tagIdsAny: [String] = []
    public var tagIdsAll: [String] = []
    public var assignedStaffId: String = ""
    public var status: Conversation.Status? = nil
    /// Folded (VietnameseText) words matched against the customer's name and phone.
    public var query: String = ""
    public var pageSize: Int = 20
    public var after: ConversationCursor? = nil

    public init(pageId: String) {
        self.pageId = pageId
    }
}

/// Where a page of conversations ended: the last one's activity time and id.
public struct ConversationCursor: Sendable, Hashable {
    public var lastMessageAtMs: Int64
    public var conversationId: String

    public init(lastMessageAtMs: Int64, conversationId: String) {
        self.lastMessageAtMs = lastMessageAtMs
        self.conversationId = conversationId
    }

    public var token: String { "\(lastMessageAtMs).\(conversationId)" }

    public init?(token: String) {
        guard let dot = token.firstIndex(of: "."), let ms = Int64(token[..<dot]), ms >= 0 else { return nil }
        let id = String(token[token.index(after: dot)...])
        guard PageToken.isID(id) else { return nil }
        self.init(lastMessageAtMs: ms, conversationId: id)
    }
}

/// Page tokens of lists ordered by id are the last id returned.
public enum PageToken {
    public static func isID(_ token: String) -> Bool {
        !token.isEmpty && token.utf8.count <= 64
            && token.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F }
    }
}

/// R-CONV-4: the customer fields staff changed; nil leaves a field alone.
public struct CustomerChanges: Sendable {
    public var name: String?
    public var birthday: String?
    /// Normalised already ("0" + 9 digits), or "" to clear.
    public var phone: String?
    public var address: String?
    /// Normalised already (`EmailAddress.normalize`), or "" to clear (R-CONV-10).
    public var email: String?

    public init(name: String? = nil, birthday: String? = nil, phone: String? = nil, address: String? = nil, email: String? = nil) {
        self.name = name
        self.birthday = birthday
        self.phone = phone
        self.address = address
        self.email = email
    }
}

/// R-ACT-1: which activity entries ListActivity returns, newest first.
public struct ActivityFilter: Sendable {
    public var pageId: String
    public var conversationId: String = ""
    public var actions: [ActivityEntry.Action] = []
    public var fromMs: Int64 = 0
    public var toMs: Int64 = 0
    public var pageSize: Int = 50
    public var after: String? = nil

    public init(pageId: String) {
        self.pageId = pageId
    }
}
