import ChatMeshAPI
import MeshChanges
import MeshRPC
import MeshStore
import VietnamCommerce

/// chatmesh.v1.ConversationService: checks each request (shop scope is checked
/// by the router before it gets here), calls the store, answers.
public struct ConversationServiceHandler: ConversationService.Handler, DrainingService {
    let store: any ConversationStore
    let now: @Sendable () -> Int64
    /// The change feed (WatchChanges) and what WatchInbox reads; nil where nothing watches (unit tests).
    let changes: ChangeFeed?
    let stallLimit: Duration

    public init(
        store: any ConversationStore, changes: ChangeFeed? = nil, stallLimit: Duration = .seconds(60),
        now: @escaping @Sendable () -> Int64 = { WallClock.nowMs() }
    ) {
        self.store = store
        self.changes = changes
        self.stallLimit = stallLimit
        self.now = now
    }

    public func beginDraining() async {
        changes?.log.drain()
    }

    func changeFeed() throws(RPCError) -> ChangeFeed {
        guard let changes else { throw .unimplemented("this conversation-svc keeps no change log") }
        return changes
    }

    public func watchChanges(_ request: WatchChangesRequest, responses: RPCWriter<WatchChangesResponse>, context: ServerContext) async throws {
        try await changeFeed().serve(request, responses: responses, stallLimit: stallLimit)
    }

    public func watchInbox(_ request: WatchInboxRequest, responses: RPCWriter<InboxEvent>, context: ServerContext) async throws {
        let page = try InputRules.id(request.pageId, "page_id")
        try InputRules.optionalId(request.staffId, "staff_id")
        let after = try InboxWatch.position(request.resumeToken)
        let watch = InboxWatch(store: store, log: try changeFeed().log, stallLimit: stallLimit)
        try await watch.run(shop: request.shopId, pageId: page, staffId: request.staffId.isEmpty ? nil : request.staffId, after: after, responses: responses)
    }

    /// The staff member acting (MeshRPC's one rule: agents act as themselves).
    static func actingStaff(_ requested: String, _ context: ServerContext, required: Bool = true) throws(RPCError) -> String {
        try context.actingStaff(requested, required: required)
    }

    static func tagName(_ name: String) throws(RPCError) -> String {
        if let problem = TagName.validate(name) { throw .invalidArgument(problem) }
        return name.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    // MARK: Pages and tags

    public func connectPage(_ request: ConnectPageRequest, context: ServerContext) async throws -> Page {
        let pageId = try InputRules.id(request.pageId, "page_id")
        let name = try InputRules.text(request.name, "name", max: InputRules.maxNameLength, required: true)
        guard request.platform == .facebook || request.platform == .zalo else {
            throw RPCError.invalidArgument("platform must be FACEBOOK or ZALO")
        }
        if request.facebookLabelSync && request.platform != .facebook {
            throw RPCError.invalidArgument("facebook_label_sync is for Facebook pages only")
        }
        return try await store.connectPage(
            shop: request.shopId, pageId: pageId, name: name, platform: request.platform, facebookLabelSync: request.facebookLabelSync, nowMs: now()
        )
    }

    public func installDefaultTags(_ request: InstallDefaultTagsRequest, context: ServerContext) async throws -> TagList {
        try await store.installDefaultTags(shop: request.shopId, pageId: try InputRules.id(request.pageId, "page_id"))
    }

    public func listTags(_ request: ListTagsRequest, context: ServerContext) async throws -> TagList {
        let all = try await store.listTags(shop: request.shopId, pageId: try InputRules.id(request.pageId, "page_id"), includeHidden: request.includeHidden)
        let page = try ListPage.of(all.folders, size: request.pageSize, token: request.pageToken, default: 200)
        return TagList(folders: page.items, nextPageToken: page.next)
    }

    public func createTagFolder(_ request: CreateTagFolderRequest, context: ServerContext) async throws -> TagFolder {
        let pageId = try InputRules.id(request.pageId, "page_id")
        return try await store.createFolder(shop: request.shopId, pageId: pageId, name: try Self.tagName(request.name))
    }

    public func createTag(_ request: CreateTagRequest, context: ServerContext) async throws -> Tag {
        let pageId = try InputRules.id(request.pageId, "page_id")
        let folderId = try InputRules.id(request.folderId, "folder_id")
        let name = try Self.tagName(request.name)
        let color = try InputRules.color(request.color)
        return try await store.createTag(shop: request.shopId, pageId: pageId, folderId: folderId, name: name, color: color, visible: request.visible)
    }

    public func updateTag(_ request: UpdateTagRequest, context: ServerContext) async throws -> Tag {
        let pageId = try InputRules.id(request.pageId, "page_id")
        let tagId = try InputRules.id(request.tagId, "tag_id")
        let folderId = try InputRules.id(request.folderId, "folder_id")
        let name = try Self.tagName(request.name)
        let color = try InputRules.color(request.color)
        return try await store.updateTag(
            shop: request.shopId, pageId: pageId, tagId: tagId, folderId: folderId, name: name, color: color, visible: request.visible
        )
    }

    public func deleteTag(_ request: DeleteTagRequest, context: ServerContext) async throws -> Empty {
        let pageId = try InputRules.id(request.pageId, "page_id")
        try await store.deleteTag(shop: request.shopId, pageId: pageId, tagId: try InputRules.id(request.tagId, "tag_id"))
        return Empty()
    }

    public func attachTag(_ request: AttachTagRequest, context: ServerContext) async throws -> Conversation {
        let conversationId = try InputRules.id(request.conversationId, "conversation_id")
        let tagId = try InputRules.id(request.tagId, "tag_id")
        let staff = try Self.actingStaff(request.staffId, context)
        return try await store.attachTag(shop: request.shopId, conversationId: conversationId, tagId: tagId, staffId: staff, nowMs: now())
    }

    public func detachTag(_ request: DetachTagRequest, context: ServerContext) async throws -> Conversation {
        let conversationId = try InputRules.id(request.conversationId, "conversation_id")
        let tagId = try InputRules.id(request.tagId, "tag_id")
        let staff = try Self.actingStaff(request.staffId, context)
        return try await store.detachTag(shop: request.shopId, conversationId: conversationId, tagId: tagId, staffId: staff, nowMs: now())
    }

    public func setFacebookLabelSync(_ request: SetFacebookLabelSyncRequest, context: ServerContext) async throws -> Page {
        return try await store.setFacebookLabelSync(shop: request.shopId, pageId: try InputRules.id(request.pageId, "page_id"), enabled: request.enabled)
    }

    public func syncFacebookLabels(_ request: SyncFacebookLabelsRequest, context: ServerContext) async throws -> SyncFacebookLabelsResponse {
        let pageId = try InputRules.id(request.pageId, "page_id")
        if request.labels.count > 10_000 { throw RPCError.invalidArgument("labels: more than 10000 in one call") }
        if request.attachments.count > 10_000 { throw RPCError.invalidArgument("attachments: more than 10000 in one call") }
        var labels: [FacebookLabelSync.Label] = []
        for (i, label) in request.labels.enumerated() {
            let id = try InputRules.id(label.fbLabelId, "labels[\(i)].fb_label_id")
            if let problem = TagName.validate(label.name) {
                throw RPCError.invalidArgument("labels[\(i)].name: \(problem)")
            }
            labels.append(.init(fbLabelId: id, name: label.name.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        var attachments: [FacebookLabelSync.Attachment] = []
        for (i, attachment) in request.attachments.enumerated() {
            let customer = try InputRules.id(attachment.customerExternalId, "attachments[\(i)].customer_external_id")
            for (j, id) in attachment.fbLabelIds.enumerated() {
                _ = try InputRules.id(id, "attachments[\(i)].fb_label_ids[\(j)]")
            }
            attachments.append(.init(customerExternalId: customer, fbLabelIds: attachment.fbLabelIds))
        }
        let outcome = try await store.syncFacebookLabels(
            shop: request.shopId, pageId: pageId, labels: labels, attachments: attachments, morePages: request.morePages, nowMs: now()
        )
        return SyncFacebookLabelsResponse(synced: Int32(outcome.synced), skipped: Int32(outcome.skipped), skippedReasons: outcome.skippedReasons)
    }

    // MARK: Conversations

    public func ingestMessage(_ request: IngestMessageRequest, context: ServerContext) async throws -> IngestMessageResponse {
        let pageId = try InputRules.id(request.pageId, "page_id")
        let external = try InputRules.id(request.customerExternalId, "customer_external_id")
        let name = try InputRules.text(request.customerName, "customer_name", max: InputRules.maxNameLength, required: false)
        guard request.kind == .message || request.kind == .comment else { throw RPCError.invalidArgument("kind must be MESSAGE or COMMENT") }
        guard request.sender == .customer || request.sender == .staff || request.sender == .bot else {
            throw RPCError.invalidArgument("sender must be CUSTOMER, STAFF or BOT")
        }
        try InputRules.optionalId(request.staffId, "staff_id")
        // R-CONV-2: a staff reply is recorded with who sent it; customers and bots have no staff id.
        if request.sender == .staff && request.staffId.isEmpty { throw RPCError.invalidArgument("staff_id is required for a STAFF message") }
        if request.sender != .staff && !request.staffId.isEmpty { throw RPCError.invalidArgument("staff_id is only for STAFF messages") }
        if request.text.count > InputRules.maxMessageTextLength {
            throw RPCError.invalidArgument("text is longer than \(InputRules.maxMessageTextLength) characters")
        }
        try InputRules.optionalId(request.postId, "post_id")
        if request.kind == .comment && request.postId.isEmpty { throw RPCError.invalidArgument("post_id is required for a COMMENT") }
        let platformMessageId = try InputRules.text(request.platformMessageId, "platform_message_id", max: 200, required: false)
        let nowMs = now()
        var sentAt = try InputRules.time(request.sentAtMs, "sent_at_ms")
        if sentAt == 0 { sentAt = nowMs }
        if let referral = request.referral {
            _ = try InputRules.text(referral.sourceLink, "referral.source_link", max: 2_000, required: false)
            _ = try InputRules.text(referral.channel, "referral.channel", max: InputRules.maxNameLength, required: false)
            _ = try InputRules.text(referral.campaign, "referral.campaign", max: InputRules.maxNameLength, required: false)
        }
        let message = IncomingMessage(
            pageId: pageId, customerExternalId: external, customerName: name, kind: request.kind, sender: request.sender, staffId: request.staffId,
            text: request.text, postId: request.postId, sentAtMs: sentAt, referral: request.referral, platformMessageId: platformMessageId
        )
        let ingested = try await store.ingest(shop: request.shopId, message, nowMs: nowMs)
        return IngestMessageResponse(
            conversationId: ingested.conversationId, messageId: ingested.messageId, customerId: ingested.customerId,
            capturedPhone: ingested.capturedPhone ?? "", capturedAddress: ingested.capturedAddress ?? "", status: ingested.status,
            assignedStaffId: ingested.assignedStaffId, capturedEmail: ingested.capturedEmail ?? ""
        )
    }

    public func sendReply(_ request: SendReplyRequest, context: ServerContext) async throws -> ChatMessage {
        let conversationId = try InputRules.id(request.conversationId, "conversation_id")
        let staff = try Self.actingStaff(request.staffId, context)
        let text = try InputRules.text(request.text, "text", max: StaffReply.maxTextLength, required: true)
        let target: ChatMessage.Target = request.target == .targetUnspecified ? .inbox : request.target
        switch target {
        case .inbox:
            if !request.commentMessageId.isEmpty { throw RPCError.invalidArgument("comment_message_id is only for COMMENT_PUBLIC and COMMENT_PRIVATE replies") }
        case .commentPublic, .commentPrivate:
            _ = try InputRules.id(request.commentMessageId, "comment_message_id")
        default:
            throw RPCError.invalidArgument("target must be INBOX, COMMENT_PUBLIC or COMMENT_PRIVATE")
        }
        let key = try FieldCheck.optionalId(request.idempotencyKey, "idempotency_key")
        let reply = OutgoingReply(
            conversationId: conversationId, staffId: staff, text: text, target: target, commentMessageId: request.commentMessageId, idempotencyKey: key
        )
        return try await store.sendReply(shop: request.shopId, reply, nowMs: now())
    }

    public func retryReply(_ request: RetryReplyRequest, context: ServerContext) async throws -> ChatMessage {
        let messageId = try InputRules.id(request.messageId, "message_id")
        _ = try Self.actingStaff(request.staffId, context)
        return try await store.retryReply(shop: request.shopId, messageId: messageId, nowMs: now())
    }

    public func listConversations(_ request: ListConversationsRequest, context: ServerContext) async throws -> ListConversationsResponse {
        var filter = ConversationFilter(pageId: try InputRules.id(request.pageId, "page_id"))
        for (i, id) in request.tagIdsAny.enumerated() { _ = try InputRules.id(id, "tag_ids_any[\(i)]") }
        for (i, id) in request.tagIdsAll.enumerated() { _ = try InputRules.id(id, "tag_ids_all[\(i)]") }
        if request.tagIdsAny.count > 50 || request.tagIdsAll.count > 50 { throw RPCError.invalidArgument("tag_ids_any / tag_ids_all: at most 50 tags") }
        filter.tagIdsAny = request.tagIdsAny
        filter.tagIdsAll = request.tagIdsAll
        try InputRules.optionalId(request.assignedStaffId, "assigned_staff_id")
        filter.assignedStaffId = request.assignedStaffId
        switch request.status {
        case .statusUnspecified: filter.status = nil
        case .open, .closed: filter.status = request.status
        case .unrecognized: throw RPCError.invalidArgument("status must be OPEN, CLOSED or unset")
        }
        filter.query = TagName.key(try InputRules.text(request.query, "query", max: 100, required: false))
        filter.pageSize = try InputRules.pageSize(request.pageSize)
        if !request.pageToken.isEmpty {
            guard let cursor = ConversationCursor(token: request.pageToken) else {
                throw RPCError.invalidArgument("page_token is not a token this service returned")
            }
            filter.after = cursor
        }
        let page = try await store.listConversations(shop: request.shopId, filter: filter)
        return ListConversationsResponse(conversations: page.items, nextPageToken: page.nextPageToken)
    }

    public func getConversation(_ request: GetConversationRequest, context: ServerContext) async throws -> Conversation {
        try await store.conversation(shop: request.shopId, id: try InputRules.id(request.conversationId, "conversation_id"))
    }

    public func getConversationContext(_ request: GetConversationContextRequest, context: ServerContext) async throws -> ConversationContext {
        let conversationId = try InputRules.id(request.conversationId, "conversation_id")
        let notes = try FieldCheck.pageSize(request.notesLimit, default: 20, max: 100, field: "notes_limit")
        let activity = try FieldCheck.pageSize(request.activityLimit, default: 20, max: 100, field: "activity_limit")
        let messages = try FieldCheck.pageSize(request.messagesLimit, default: 20, max: 100, field: "messages_limit")
        return try await store.conversationContext(
            shop: request.shopId, conversationId: conversationId, notes: notes, activity: activity, messages: messages, messagesOnly: request.messagesOnly
        )
    }

    public func listMessages(_ request: ListMessagesRequest, context: ServerContext) async throws -> ListMessagesResponse {
        let conversationId = try InputRules.id(request.conversationId, "conversation_id")
        if !request.pageToken.isEmpty && ConversationCursor(token: request.pageToken) == nil {
            throw RPCError.invalidArgument("page_token is not a token this service returned")
        }
        let page = try await store.listMessages(
            shop: request.shopId, conversationId: conversationId, pageSize: try InputRules.pageSize(request.pageSize),
            after: request.pageToken.isEmpty ? nil : request.pageToken
        )
        return ListMessagesResponse(messages: page.items, nextPageToken: page.nextPageToken)
    }

    public func assignConversation(_ request: AssignConversationRequest, context: ServerContext) async throws -> Conversation {
        let conversationId = try InputRules.id(request.conversationId, "conversation_id")
        try InputRules.optionalId(request.staffId, "staff_id")
        switch request.mode {
        case .manual:
            if request.staffId.isEmpty { throw RPCError.invalidArgument("staff_id is required for a MANUAL assignment") }
        case .auto:
            break
        default:
            throw RPCError.invalidArgument("mode must be AUTO or MANUAL")
        }
        let staff = request.staffId.isEmpty ? nil : request.staffId
        let assignment: Assignment = request.mode == .auto ? .automatic(staffId: staff) : .manual(staffId: request.staffId)
        return try await store.assign(shop: request.shopId, conversationId: conversationId, assignment, nowMs: now())
    }

    public func setStaffPresence(_ request: SetStaffPresenceRequest, context: ServerContext) async throws -> Empty {
        let pageId = try InputRules.id(request.pageId, "page_id")
        let staff = try Self.actingStaff(request.staffId, context)
        try await store.setPresence(shop: request.shopId, pageId: pageId, staffId: staff, online: request.online)
        return Empty()
    }

    public func closeConversation(_ request: CloseConversationRequest, context: ServerContext) async throws -> Conversation {
        let conversationId = try InputRules.id(request.conversationId, "conversation_id")
        let staff = try Self.actingStaff(request.staffId, context)
        return try await store.setStatus(shop: request.shopId, conversationId: conversationId, open: false, staffId: staff, nowMs: now())
    }

    public func reopenConversation(_ request: ReopenConversationRequest, context: ServerContext) async throws -> Conversation {
        let conversationId = try InputRules.id(request.conversationId, "conversation_id")
        let staff = try Self.actingStaff(request.staffId, context)
        return try await store.setStatus(shop: request.shopId, conversationId: conversationId, open: true, staffId: staff, nowMs: now())
    }

    // MARK: Customers

    public func getCustomer(_ request: GetCustomerRequest, context: ServerContext) async throws -> Customer {
        try await store.customer(shop: request.shopId, id: try InputRules.id(request.customerId, "customer_id"))
    }

    public func updateCustomer(_ request: UpdateCustomerRequest, context: ServerContext) async throws -> Customer {
        let customerId = try InputRules.id(request.customerId, "customer_id")
        // Without update_fields (API.md: a field the service can default is optional), the fields set change.
        var named = request.updateFields
        if named.isEmpty {
            named = [("name", request.name), ("birthday", request.birthday), ("phone", request.phone), ("address", request.address), ("email", request.email)]
                .filter { !$0.1.isEmpty }.map(\.0)
            if named.isEmpty { throw RPCError.invalidArgument("update_fields: nothing to update (set name, birthday, phone, address or email)") }
        }
        var changes = CustomerChanges()
        for field in named {
            switch field {
            case "name": changes.name = try InputRules.text(request.name, "name", max: InputRules.maxNameLength, required: true)
            case "birthday": changes.birthday = try InputRules.birthday(request.birthday, nowMs: now())
            case "phone":
                if request.phone.isEmpty {
                    changes.phone = ""
                } else {
                    guard let phone = ContactCapture.normalizePhone(request.phone) else {
                        throw RPCError.invalidArgument("phone must be a Vietnamese mobile number (0 + 9 digits, +84 or 84 forms), not \"\(request.phone)\"")
                    }
                    changes.phone = phone
                }
            case "address": changes.address = try InputRules.text(request.address, "address", max: InputRules.maxAddressLength, required: false)
            case "email":
                if request.email.isEmpty {
                    changes.email = ""
                } else {
                    guard let email = EmailAddress.normalize(request.email) else {
                        throw RPCError.invalidArgument("email must be an e-mail address (name@domain.vn), not \"\(request.email.prefix(254))\"")
                    }
                    changes.email = email
                }
            case "referral": throw RPCError.invalidArgument("update_fields: referral is read-only (R-CONV-5)")
            default: throw RPCError.invalidArgument("update_fields: unknown field \"\(field)\" (name, birthday, phone, address, email)")
            }
        }
        return try await store.updateCustomer(shop: request.shopId, id: customerId, changes: changes)
    }

    public func blockCustomer(_ request: BlockCustomerRequest, context: ServerContext) async throws -> Customer {
        let customerId = try InputRules.id(request.customerId, "customer_id")
        let staff = try Self.actingStaff(request.staffId, context)
        return try await store.setBlocked(shop: request.shopId, customerId: customerId, blocked: true, staffId: staff, nowMs: now())
    }

    public func unblockCustomer(_ request: UnblockCustomerRequest, context: ServerContext) async throws -> Customer {
        let customerId = try InputRules.id(request.customerId, "customer_id")
        let staff = try Self.actingStaff(request.staffId, context)
        return try await store.setBlocked(shop: request.shopId, customerId: customerId, blocked: false, staffId: staff, nowMs: now())
    }

    public func addNote(_ request: AddNoteRequest, context: ServerContext) async throws -> Note {
        let customerId = try InputRules.id(request.customerId, "customer_id")
        let text = try InputRules.text(request.text, "text", max: InputRules.maxNoteLength, required: true)
        let staff = try Self.actingStaff(request.staffId, context)
        return try await store.addNote(shop: request.shopId, customerId: customerId, text: text, staffId: staff, nowMs: now())
    }

    public func listNotes(_ request: ListNotesRequest, context: ServerContext) async throws -> ListNotesResponse {
        let customerId = try InputRules.id(request.customerId, "customer_id")
        let page = try await store.listNotes(
            shop: request.shopId, customerId: customerId, pageSize: try InputRules.pageSize(request.pageSize), after: try InputRules.idToken(request.pageToken)
        )
        return ListNotesResponse(notes: page.items, nextPageToken: page.nextPageToken)
    }

    public func deleteNote(_ request: DeleteNoteRequest, context: ServerContext) async throws -> Empty {
        let customerId = try InputRules.id(request.customerId, "customer_id")
        try await store.deleteNote(shop: request.shopId, customerId: customerId, noteId: try InputRules.id(request.noteId, "note_id"))
        return Empty()
    }

    public func defineCustomField(_ request: DefineCustomFieldRequest, context: ServerContext) async throws -> CustomField {
        let label = try InputRules.text(request.label, "label", max: 100, required: true)
        guard (0...1_000).contains(request.position) else { throw RPCError.invalidArgument("position must be 0 to 1000 (lower is shown first)") }
        let field = CustomField(key: request.key, label: label, type: request.type, options: request.options, position: request.position)
        if let problem = CustomFieldRules.check(field) { throw RPCError.invalidArgument(problem) }
        return try await store.defineCustomField(shop: request.shopId, field: field)
    }

    public func listCustomFields(_ request: ListCustomFieldsRequest, context: ServerContext) async throws -> ListCustomFieldsResponse {
        let page = try ListPage.of(try await store.listCustomFields(shop: request.shopId), size: request.pageSize, token: request.pageToken)
        return ListCustomFieldsResponse(fields: page.items, nextPageToken: page.next)
    }

    public func setCustomFieldValue(_ request: SetCustomFieldValueRequest, context: ServerContext) async throws -> Customer {
        let customerId = try InputRules.id(request.customerId, "customer_id")
        let key = try InputRules.id(request.key, "key")
        return try await store.setCustomFieldValue(shop: request.shopId, customerId: customerId, key: key, value: request.value)
    }

    // MARK: History

    public func listActivity(_ request: ListActivityRequest, context: ServerContext) async throws -> ListActivityResponse {
        var filter = ActivityFilter(pageId: try InputRules.id(request.pageId, "page_id"))
        try InputRules.optionalId(request.conversationId, "conversation_id")
        filter.conversationId = request.conversationId
        for (i, action) in request.actions.enumerated() {
            switch action {
            case .tagAttached, .tagDetached, .customerBlocked, .customerUnblocked: filter.actions.append(action)
            default: throw RPCError.invalidArgument("actions[\(i)] must be TAG_ATTACHED, TAG_DETACHED, CUSTOMER_BLOCKED or CUSTOMER_UNBLOCKED")
            }
        }
        filter.fromMs = try InputRules.time(request.fromMs, "from_ms")
        filter.toMs = try InputRules.time(request.toMs, "to_ms")
        if filter.toMs != 0 && filter.toMs <= filter.fromMs { throw RPCError.invalidArgument("to_ms must be after from_ms") }
        filter.pageSize = try InputRules.pageSize(request.pageSize)
        filter.after = try InputRules.idToken(request.pageToken)
        let page = try await store.listActivity(shop: request.shopId, filter: filter)
        return ListActivityResponse(entries: page.items, nextPageToken: page.nextPageToken)
    }

    public func getStaffConversationStats(_ request: GetStaffConversationStatsRequest, context: ServerContext) async throws -> GetStaffConversationStatsResponse {
        let pageId = try InputRules.id(request.pageId, "page_id")
        let from = try InputRules.time(request.fromMs, "from_ms")
        let to = try InputRules.time(request.toMs, "to_ms")
        if to <= from { throw RPCError.invalidArgument("to_ms must be after from_ms") }
        if to - from > 366 * 86_400_000 { throw RPCError.invalidArgument("to_ms: a report covers at most 366 days") }
        let history = try await store.staffHistory(shop: request.shopId, pageId: pageId, fromMs: from, toMs: to)
        let stats = StaffConversationStatsCalculator.compute(history, fromMs: from, toMs: to)
        return GetStaffConversationStatsResponse(staff: stats.map {
            StaffConversationStats(
                staffId: $0.staffId, avgResponseMs: $0.avgResponseMs, assignedAuto: Int32($0.assignedAuto), assignedManual: Int32($0.assignedManual),
                closed: Int32($0.closed), commentsReplied: Int32($0.commentsReplied), messagesReplied: Int32($0.messagesReplied),
                customersReplied: Int32($0.customersReplied)
            )
        })
    }
}
