import ChatMeshAPI
import MeshChanges
import MeshRPC
import MeshStore

/// R-PANEL-4: WatchInbox. A page's (or one staff member's) list rows as they
/// change, read from conversation-svc's own change log: the changes of a batch
/// are coalesced per conversation (a slow reader gets the newest row, not every
/// step), each row is sent with the position of its newest change as its resume
/// token, and a token older than the retained window gets RESET.
struct InboxWatch: Sendable {
    let store: any ConversationStore
    let log: ChangeLog
    /// A watcher that has made no room for an event this long is cut off (it may resume).
    let stallLimit: Duration

    /// The change kinds that alter a list row.
    static let rowKinds: Set<Int32> = [
        Change.Kind.message, .newConversation, .conversation, .tags, .customer, .replyDelivery,
    ].reduce(into: []) { $0.insert($1.rawValue) }

    static func token(_ position: Int64) -> String { "ib1.\(position)" }

    static func position(_ token: String) throws(RPCError) -> Int64? {
        if token.isEmpty { return nil }
        guard token.hasPrefix("ib1."), let position = Int64(token.dropFirst(4)), position >= 0 else {
            throw .invalidArgument("resume_token: not a token WatchInbox gave")
        }
        return position
    }

    func run(shop: String, pageId: String, staffId: String?, after: Int64?, responses: RPCWriter<InboxEvent>) async throws {
        try await store.requirePage(shop: shop, pageId: pageId)
        var position: Int64
        if let after { position = after } else { position = try await log.newest() }
        var synced = false
        if after == nil {
            try await responses.write(InboxEvent(kind: .synced, resumeToken: Self.token(position)), stallLimit: stallLimit)
            synced = true
        }
        while true {
            try Task.checkCancellation()
            if log.isDraining {
                throw RPCError.unavailable("conversation-svc is shutting down: resume with the last resume_token")
            }
            switch try await log.read(after: position, shop: shop, limit: 500) {
            case .reset(let through):
                try await responses.write(InboxEvent(kind: .reset, resumeToken: Self.token(through)), stallLimit: stallLimit)
                position = through
                synced = true
            case .changes(let changes, let through):
                try await send(changes, shop: shop, pageId: pageId, staffId: staffId, responses: responses)
                if !synced && through >= log.head {
                    try await responses.write(InboxEvent(kind: .synced, resumeToken: Self.token(through)), stallLimit: stallLimit)
                    synced = true
                }
                if through == position { await log.wait(after: position) }
                position = through
            }
        }
    }

    /// One event per conversation of the list that changed, newest change last.
    func send(_ changes: [ChangeLog.Change], shop: String, pageId: String, staffId: String?, responses: RPCWriter<InboxEvent>) async throws {
        struct Latest { var position: Int64; var added: Bool; var reassigned: Bool }
        var latest: [String: Latest] = [:]
        for change in changes where change.entry.pageId == pageId && !change.entry.conversationId.isEmpty && Self.rowKinds.contains(change.entry.kind) {
            var entry = latest[change.entry.conversationId] ?? Latest(position: change.position, added: false, reassigned: false)
            entry.position = change.position
            entry.added = entry.added || change.entry.kind == Change.Kind.newConversation.rawValue
            entry.reassigned = entry.reassigned || change.entry.kind == Change.Kind.conversation.rawValue
            latest[change.entry.conversationId] = entry
        }
        guard !latest.isEmpty else { return }
        let rows = try await store.conversations(shop: shop, ids: Array(latest.keys))
        for row in rows.sorted(by: { latest[$0.conversationId]!.position < latest[$1.conversationId]!.position }) {
            let entry = latest[row.conversationId]!
            var event = InboxEvent(conversation: row, kind: entry.added ? .added : .updated, resumeToken: Self.token(entry.position))
            if let staffId, row.assignedStaffId != staffId {
                // Not this staff member's: gone from their list when it was just reassigned, else never in it.
                guard entry.reassigned else { continue }
                event.kind = .removed
                event.conversation = Conversation(conversationId: row.conversationId, pageId: row.pageId)
            }
            try await responses.write(event, stallLimit: stallLimit)
        }
    }
}
