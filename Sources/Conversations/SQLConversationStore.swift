import ChatMeshAPI
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// ConversationStore on sql-kit: one SQL text for SQLite and PostgreSQL, every
/// value bound, every statement filtered by shop.
public struct SQLConversationStore: ConversationStore {
    let db: any SQLStore
    /// Rung after a commit that wrote outbox rows (ConversationEvents).
    public let commitBell: CommitBell

    public init(_ db: any SQLStore, commitBell: CommitBell = CommitBell()) {
        self.db = db
        self.commitBell = commitBell
    }

    /// A transaction, then the bell: the outbox rows and changes it committed are looked at now.
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        defer { commitBell.ring() }
        return try await db.write(body)
    }

    /// Carriers of a tag: whose profile changes when it is renamed or deleted.
    static func tagCarriers(_ db: any SQLDatabase, shop: String, tagId: String) async throws -> [String] {
        try await db.raw("""
            SELECT DISTINCT c.customer_id FROM conversation_tags ct
            JOIN conversations c ON c.shop_id = ct.shop_id AND c.conversation_id = ct.conversation_id
            WHERE ct.shop_id = \(bind: shop) AND ct.tag_id = \(bind: tagId)
            """).all().map { try $0.string("customer_id") }
    }

    /// Opens the store's tables, applying any migration not applied yet.
    public static func open(_ db: any SQLStore) async throws -> SQLConversationStore {
        try await db.migrate(ConversationSchema.migrations)
        return SQLConversationStore(db)
    }

    // Column codes. Stored as numbers so the proto's names can change without a migration.
    enum EventKind: Int64 { case assignedAuto = 1, assignedManual = 2, closed = 3, reopened = 4 }
    static let defaultColor = "#9e9e9e"
    static let facebookColor = "#1877f2"
    /// Colours of the default tags, by folder: sales blue, operations orange, customer groups purple.
    static let defaultFolderColors = ["#1e88e5", "#fb8c00", "#8e24aa"]

    // MARK: Pages and tags

    public func connectPage(shop: String, pageId: String, name: String, platform: Page.Platform, facebookLabelSync: Bool, nowMs: Int64) async throws -> Page {
        return try await write { db in
            if let row = try await db.raw("SELECT * FROM pages WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId)").first() {
                // R-TAG-2: connecting again creates nothing; the name may have changed on the platform.
                if try row.string("name") != name {
                    try await db.raw("UPDATE pages SET name = \(bind: name) WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId)").run()
                }
                var page = try Self.page(row)
                page.name = name
                return page
            }
            try await db.raw("""
                INSERT INTO pages (shop_id, page_id, name, platform, connected_at_ms, fb_sync, fb_backfill_pending)
                VALUES (\(bind: shop), \(bind: pageId), \(bind: name), \(bind: Int64(platform.rawValue)), \(bind: nowMs),
                        \(bind: facebookLabelSync ? 1 : 0 as Int64), \(bind: facebookLabelSync ? 1 : 0 as Int64))
                """).run()
            try await Self.installDefaults(db, shop: shop, pageId: pageId)
            try await Self.pageTagsChanged(db, shop: shop, pageId: pageId, nowMs: nowMs)
            return Page(
                pageId: pageId, name: name, platform: platform, connectedAtMs: nowMs, firstConnect: true, facebookLabelSync: facebookLabelSync
            )
        }
    }

    public func installDefaultTags(shop: String, pageId: String) async throws -> TagList {
        return try await write { db in
            _ = try await Self.requirePage(db, shop: shop, pageId: pageId)
            try await Self.installDefaults(db, shop: shop, pageId: pageId)
            try await Self.pageTagsChanged(db, shop: shop, pageId: pageId, nowMs: WallClock.nowMs())
            return try await Self.tagList(db, shop: shop, pageId: pageId, includeHidden: true)
        }
    }

    /// R-TAG-2: adds whichever default folders and tags the page lacks. A tag
    /// whose name the shop already uses (in any folder) counts as present.
    static func installDefaults(_ db: any SQLDatabase, shop: String, pageId: String) async throws {
        for (index, folder) in DefaultTags.folders.enumerated() {
            let key = TagName.key(folder.name)
            let folderId: String
            if let row = try await db.raw("SELECT folder_id FROM tag_folders WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND name_key = \(bind: key)").first() {
                folderId = try row.string("folder_id")
            } else {
                folderId = SortableID.make("fld_")
                try await db.raw("""
                    INSERT INTO tag_folders (shop_id, folder_id, page_id, name, name_key, is_facebook)
                    VALUES (\(bind: shop), \(bind: folderId), \(bind: pageId), \(bind: folder.name), \(bind: key), \(bind: 0 as Int64))
                    """).run()
            }
            for tag in folder.tags {
                try await db.raw("""
                    INSERT INTO tags (shop_id, tag_id, page_id, folder_id, name, name_key, color, visible)
                    VALUES (\(bind: shop), \(bind: SortableID.make("tag_")), \(bind: pageId), \(bind: folderId), \(bind: tag),
                            \(bind: TagName.key(tag)), \(bind: defaultFolderColors[index % defaultFolderColors.count]), \(bind: 1 as Int64))
                    ON CONFLICT (shop_id, page_id, name_key) DO NOTHING
                    """).run()
            }
        }
    }

    public func listTags(shop: String, pageId: String, includeHidden: Bool) async throws -> TagList {
        try await db.read { db in
            // Pages are never deleted, so a page with folders exists: the check costs a statement only when
            // there is nothing to show (the chat panel asks for this list on every open).
            let list = try await Self.tagList(db, shop: shop, pageId: pageId, includeHidden: includeHidden)
            if list.folders.isEmpty { _ = try await Self.requirePage(db, shop: shop, pageId: pageId) }
            return list
        }
    }

    static func tagList(_ db: any SQLDatabase, shop: String, pageId: String, includeHidden: Bool) async throws -> TagList {
        let folderRows = try await db.raw("SELECT * FROM tag_folders WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) ORDER BY folder_id").all()
        let tagRows = try await db.raw("SELECT * FROM tags WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) ORDER BY tag_id").all()
        var folders = try folderRows.map { TagFolder(folderId: try $0.string("folder_id"), name: try $0.string("name"), tags: [], pageId: pageId) }
        var index: [String: Int] = [:]
        for (i, folder) in folders.enumerated() { index[folder.folderId] = i }
        for row in tagRows {
            let tag = try Self.tag(row)
            if !includeHidden && !tag.visible { continue }
            if let i = index[tag.folderId] { folders[i].tags.append(tag) }
        }
        return TagList(folders: folders)
    }

    public func createFolder(shop: String, pageId: String, name: String) async throws -> TagFolder {
        return try await write { db in
            _ = try await Self.requirePage(db, shop: shop, pageId: pageId)
            let key = TagName.key(name)
            if try await db.raw("SELECT folder_id FROM tag_folders WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND name_key = \(bind: key)").first() != nil {
                throw ConversationError.folderNameTaken(name)
            }
            let folderId = SortableID.make("fld_")
            try await db.raw("""
                INSERT INTO tag_folders (shop_id, folder_id, page_id, name, name_key, is_facebook)
                VALUES (\(bind: shop), \(bind: folderId), \(bind: pageId), \(bind: name), \(bind: key), \(bind: 0 as Int64))
                """).run()
            return TagFolder(folderId: folderId, name: name, tags: [], pageId: pageId)
        }
    }

    public func createTag(shop: String, pageId: String, folderId: String, name: String, color: String, visible: Bool) async throws -> Tag {
        return try await write { db in
            _ = try await Self.requirePage(db, shop: shop, pageId: pageId)
            try await Self.requireFolder(db, shop: shop, pageId: pageId, folderId: folderId)
            try await Self.requireFreeTagName(db, shop: shop, pageId: pageId, name: name, except: nil)
            let tag = Tag(tagId: SortableID.make("tag_"), folderId: folderId, name: name, color: color, visible: visible)
            try await db.raw("""
                INSERT INTO tags (shop_id, tag_id, page_id, folder_id, name, name_key, color, visible)
                VALUES (\(bind: shop), \(bind: tag.tagId), \(bind: pageId), \(bind: folderId), \(bind: name), \(bind: TagName.key(name)),
                        \(bind: color), \(bind: visible ? 1 : 0 as Int64))
                """).run()
            try await Self.pageTagsChanged(db, shop: shop, pageId: pageId, nowMs: WallClock.nowMs())
            return tag
        }
    }

    public func updateTag(shop: String, pageId: String, tagId: String, folderId: String, name: String, color: String, visible: Bool) async throws -> Tag {
        return try await write { db in
            let before = try await Self.requireTag(db, shop: shop, pageId: pageId, tagId: tagId)
            if before.name != name {
                // Segments match tags by name: every carrier's profile changes.
                let carriers = try await Self.tagCarriers(db, shop: shop, tagId: tagId)
                let now = WallClock.nowMs()
                try await Outbox.enqueue(db, ConversationEvents.profileChanged(shop: shop, customerIds: carriers, nowMs: now), nowMs: now)
            }
            try await Self.requireFolder(db, shop: shop, pageId: pageId, folderId: folderId)
            try await Self.requireFreeTagName(db, shop: shop, pageId: pageId, name: name, except: tagId)
            try await db.raw("""
                UPDATE tags SET folder_id = \(bind: folderId), name = \(bind: name), name_key = \(bind: TagName.key(name)),
                       color = \(bind: color), visible = \(bind: visible ? 1 : 0 as Int64)
                WHERE shop_id = \(bind: shop) AND tag_id = \(bind: tagId)
                """).run()
            try await Self.tagChanged(db, shop: shop, pageId: pageId, tagId: tagId, nowMs: WallClock.nowMs())
            return Tag(tagId: tagId, folderId: folderId, name: name, color: color, visible: visible)
        }
    }

    public func deleteTag(shop: String, pageId: String, tagId: String) async throws {
        return try await write { db in
            let tag = try await Self.requireTag(db, shop: shop, pageId: pageId, tagId: tagId)
            // A deleted tag comes off every conversation: profiles change and its scenarios stop.
            let now = WallClock.nowMs()
            let carriers = try await Self.tagCarriers(db, shop: shop, tagId: tagId)
            var events = ConversationEvents.profileChanged(shop: shop, customerIds: carriers, nowMs: now)
            for contact in try await ConversationEvents.contacts(db, shop: shop, customerIds: carriers).values.sorted(by: { $0.customerId < $1.customerId }) {
                events.append(try ConversationEvents.tagChanged(contact, tagName: tag.name, attached: false, nowMs: now))
            }
            try await Outbox.enqueue(db, events, nowMs: now)
            try await Self.tagChanged(db, shop: shop, pageId: pageId, tagId: tagId, nowMs: now)
            try await db.raw("DELETE FROM conversation_tags WHERE shop_id = \(bind: shop) AND tag_id = \(bind: tagId)").run()
            try await db.raw("DELETE FROM tags WHERE shop_id = \(bind: shop) AND tag_id = \(bind: tagId)").run()
        }
    }

    public func attachTag(shop: String, conversationId: String, tagId: String, staffId: String, nowMs: Int64) async throws -> Conversation {
        return try await write { db in
            var conversation = try await Self.requireConversation(db, shop: shop, id: conversationId)
            let tag = try await Self.requireTag(db, shop: shop, pageId: conversation.pageId, tagId: tagId, field: "tag_id")
            // What the answer shows is read once, before the change, and the new tag appended to it.
            conversation.tags = try await Self.attachedTags(db, shop: shop, conversationIds: [conversationId])[conversationId] ?? []
            if conversation.tags.contains(where: { $0.tagId == tagId }) {
                return conversation
            }
            // R-TAG-4.
            guard conversation.tags.count < FacebookLabelSync.maxTagsPerConversation else {
                throw ConversationError.tooManyTags(conversation: conversationId, count: conversation.tags.count)
            }
            try await Self.insertAttachment(db, shop: shop, conversationId: conversationId, tagId: tagId, nowMs: nowMs)
            try await Self.recordActivity(
                db, shop: shop, pageId: conversation.pageId, action: .tagAttached, staffId: staffId, conversationId: conversationId,
                customerId: conversation.customerId, tagId: tagId, tagName: tag.name, nowMs: nowMs
            )
            try await Self.tagEvents(db, shop: shop, customerId: conversation.customerId, tagName: tag.name, attached: true, nowMs: nowMs)
            try await Self.changed(db, shop: shop, .tags, conversation, nowMs: nowMs)
            conversation.tags.append(tag)
            return conversation
        }
    }

    public func detachTag(shop: String, conversationId: String, tagId: String, staffId: String, nowMs: Int64) async throws -> Conversation {
        return try await write { db in
            let conversation = try await Self.requireConversation(db, shop: shop, id: conversationId)
            let tag = try await Self.requireTag(db, shop: shop, pageId: conversation.pageId, tagId: tagId, field: "tag_id")
            let existing = try await db.raw("""
                SELECT tag_id FROM conversation_tags
                WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId) AND tag_id = \(bind: tagId)
                """).first()
            if existing != nil {
                try await db.raw("""
                    DELETE FROM conversation_tags WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId) AND tag_id = \(bind: tagId)
                    """).run()
                try await Self.recordActivity(
                    db, shop: shop, pageId: conversation.pageId, action: .tagDetached, staffId: staffId, conversationId: conversationId,
                    customerId: conversation.customerId, tagId: tagId, tagName: tag.name, nowMs: nowMs
                )
                try await Self.tagEvents(db, shop: shop, customerId: conversation.customerId, tagName: tag.name, attached: false, nowMs: nowMs)
                try await Self.changed(db, shop: shop, .tags, conversation, nowMs: nowMs)
            }
            return try await Self.conversationView(db, shop: shop, id: conversationId)
        }
    }

    /// The profile change and the scenario trigger of one tag put on or taken off.
    static func tagEvents(_ db: any SQLDatabase, shop: String, customerId: String, tagName: String, attached: Bool, nowMs: Int64) async throws {
        var events = ConversationEvents.profileChanged(shop: shop, customerIds: [customerId], nowMs: nowMs)
        if let contact = try await ConversationEvents.contacts(db, shop: shop, customerIds: [customerId])[customerId] {
            events.append(try ConversationEvents.tagChanged(contact, tagName: tagName, attached: attached, nowMs: nowMs))
        }
        try await Outbox.enqueue(db, events, nowMs: nowMs)
    }

    static func insertAttachment(_ db: any SQLDatabase, shop: String, conversationId: String, tagId: String, nowMs: Int64) async throws {
        try await db.raw("""
            INSERT INTO conversation_tags (shop_id, conversation_id, tag_id, attached_at_ms, last_message_at_ms)
            SELECT shop_id, conversation_id, \(bind: tagId), \(bind: nowMs), last_message_at_ms FROM conversations
            WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId)
            """).run()
    }

    public func setFacebookLabelSync(shop: String, pageId: String, enabled: Bool) async throws -> Page {
        return try await write { db in
            var page = try await Self.requirePage(db, shop: shop, pageId: pageId)
            // Switching on later never back-fills (R-TAG-6); switching off cancels a pending back-fill.
            try await db.raw("""
                UPDATE pages SET fb_sync = \(bind: enabled ? 1 : 0 as Int64),
                       fb_backfill_pending = CASE WHEN \(bind: enabled ? 1 : 0 as Int64) = 1 THEN fb_backfill_pending ELSE 0 END
                WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId)
                """).run()
            page.facebookLabelSync = enabled
            return page
        }
    }

    public func syncFacebookLabels(
        shop: String, pageId: String, labels: [FacebookLabelSync.Label], attachments: [FacebookLabelSync.Attachment], nowMs: Int64
    ) async throws -> SyncFacebookLabelsResponse {
        return try await write { db in
            guard let pageRow = try await db.raw("SELECT * FROM pages WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId)").first() else {
                throw ConversationError.pageNotConnected(pageId)
            }
            let mode: FacebookLabelSync.Mode =
                try pageRow.int64("fb_sync") == 0 ? .off : (try pageRow.int64("fb_backfill_pending") != 0 ? .backfill : .attachEventsOnly)
            var tagByLabel: [String: String] = [:]
            for row in try await db.raw("""
                SELECT tag_id, fb_label_id FROM tags WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND fb_label_id IS NOT NULL
                """).all() {
                tagByLabel[try row.string("fb_label_id")] = try row.string("tag_id")
            }
            // Conversations of the customers named, and what they carry now.
            let externalIds = Array(Set(attachments.map(\.customerExternalId)))
            var conversationOf: [String: (conversation: String, customer: String)] = [:]
            var counts: [String: Int] = [:]
            var already = Set<FacebookLabelSync.Attach>()
            let labelOfTag = Dictionary(uniqueKeysWithValues: tagByLabel.map { ($0.value, $0.key) })
            for chunk in externalIds.chunked(400) {
                let rows = try await db.raw("""
                    SELECT cu.external_id, cu.customer_id, c.conversation_id FROM customers cu
                    JOIN conversations c ON c.shop_id = cu.shop_id AND c.customer_id = cu.customer_id
                    WHERE cu.shop_id = \(bind: shop) AND cu.page_id = \(bind: pageId) AND cu.external_id IN (\(binds: Array(chunk)))
                    """).all()
                var externalOf: [String: String] = [:]
                for row in rows {
                    let external = try row.string("external_id")
                    let conversationId = try row.string("conversation_id")
                    conversationOf[external] = (conversationId, try row.string("customer_id"))
                    externalOf[conversationId] = external
                    counts[external] = 0
                }
                guard !externalOf.isEmpty else { continue }
                let tagRows = try await db.raw("""
                    SELECT conversation_id, tag_id FROM conversation_tags
                    WHERE shop_id = \(bind: shop) AND conversation_id IN (\(binds: Array(externalOf.keys)))
                    """).all()
                for tagRow in tagRows {
                    guard let external = externalOf[try tagRow.string("conversation_id")] else { continue }
                    counts[external, default: 0] += 1
                    if let label = labelOfTag[try tagRow.string("tag_id")] {
                        already.insert(FacebookLabelSync.Attach(customerExternalId: external, fbLabelId: label))
                    }
                }
            }
            var plan = FacebookLabelSync.plan(
                labels: labels, attachments: attachments, mode: mode,
                syncedLabelIds: Set(tagByLabel.keys), tagsOnConversation: counts, attachedAlready: already
            )
            if !plan.newLabels.isEmpty {
                let folderId = try await Self.facebookFolder(db, shop: shop, pageId: pageId)
                for label in plan.newLabels {
                    let name = try await Self.freeName(db, shop: shop, pageId: pageId, wanted: label.name)
                    let tagId = SortableID.make("tag_")
                    try await db.raw("""
                        INSERT INTO tags (shop_id, tag_id, page_id, folder_id, name, name_key, color, visible, fb_label_id)
                        VALUES (\(bind: shop), \(bind: tagId), \(bind: pageId), \(bind: folderId), \(bind: name), \(bind: TagName.key(name)),
                                \(bind: Self.facebookColor), \(bind: 0 as Int64), \(bind: label.fbLabelId))
                        """).run()
                    tagByLabel[label.fbLabelId] = tagId
                }
            }
            var attachedCount = 0
            var noConversation = 0
            var attachedTo: [(customer: String, tagId: String)] = []
            for attach in plan.attach {
                guard let target = conversationOf[attach.customerExternalId], let tagId = tagByLabel[attach.fbLabelId] else {
                    noConversation += 1
                    continue
                }
                try await Self.insertAttachment(db, shop: shop, conversationId: target.conversation, tagId: tagId, nowMs: nowMs)
                attachedTo.append((target.customer, tagId))
                attachedCount += 1
            }
            // Profiles change; a live label event also starts the tag's scenarios, a back-fill of old labels does not.
            var events = ConversationEvents.profileChanged(shop: shop, customerIds: attachedTo.map(\.customer), nowMs: nowMs)
            if mode == .attachEventsOnly && !attachedTo.isEmpty {
                var names: [String: String] = [:]
                for row in try await db.raw("""
                    SELECT tag_id, name FROM tags WHERE shop_id = \(bind: shop) AND tag_id IN (\(binds: Array(Set(attachedTo.map(\.tagId)))))
                    """).all() {
                    names[try row.string("tag_id")] = try row.string("name")
                }
                let contacts = try await ConversationEvents.contacts(db, shop: shop, customerIds: attachedTo.map(\.customer))
                for (customer, tagId) in attachedTo {
                    guard let contact = contacts[customer], let name = names[tagId] else { continue }
                    events.append(try ConversationEvents.tagChanged(contact, tagName: name, attached: true, nowMs: nowMs))
                }
            }
            try await Outbox.enqueue(db, events, nowMs: nowMs)
            try await Self.pageTagsChanged(db, shop: shop, pageId: pageId, nowMs: nowMs)
            for customer in Set(attachedTo.map(\.customer)).sorted() {
                try await Self.recordCustomerChange(db, shop: shop, customerId: customer, .tags, nowMs: nowMs)
            }
            if noConversation > 0 {
                plan.skipped += noConversation
                plan.reasons.append("\(noConversation) attachments of customers with no conversation on this page")
            }
            if mode == .backfill {
                try await db.raw("UPDATE pages SET fb_backfill_pending = 0 WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId)").run()
            }
            return SyncFacebookLabelsResponse(
                synced: Int32(plan.newLabels.count + attachedCount), skipped: Int32(plan.skipped), skippedReasons: plan.reasons
            )
        }
    }

    /// R-TAG-6: the page's "Facebook" folder, made on first use.
    static func facebookFolder(_ db: any SQLDatabase, shop: String, pageId: String) async throws -> String {
        if let row = try await db.raw("""
            SELECT folder_id FROM tag_folders WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND is_facebook = 1
            """).first() {
            return try row.string("folder_id")
        }
        var name = DefaultTags.facebookFolderName
        // A folder the shop named "Facebook" itself keeps its name; the synced one takes a suffix.
        if try await db.raw("""
            SELECT folder_id FROM tag_folders WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND name_key = \(bind: TagName.key(name))
            """).first() != nil {
            name += " (sync)"
        }
        let folderId = SortableID.make("fld_")
        try await db.raw("""
            INSERT INTO tag_folders (shop_id, folder_id, page_id, name, name_key, is_facebook)
            VALUES (\(bind: shop), \(bind: folderId), \(bind: pageId), \(bind: name), \(bind: TagName.key(name)), \(bind: 1 as Int64))
            """).run()
        return folderId
    }

    /// A synced label whose name a tag already has keeps both (R-TAG-3): it becomes "name (Facebook)", then "name (Facebook 2)", ….
    static func freeName(_ db: any SQLDatabase, shop: String, pageId: String, wanted: String) async throws -> String {
        var candidate = wanted
        var n = 1
        while try await db.raw("""
            SELECT tag_id FROM tags WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND name_key = \(bind: TagName.key(candidate))
            """).first() != nil {
            candidate = n == 1 ? "\(wanted) (Facebook)" : "\(wanted) (Facebook \(n))"
            n += 1
        }
        return candidate
    }

    // MARK: Conversations

    /// Load → decide → persist: the page, customer and conversation are read in one
    /// statement, `MessageIngest` decides, and the message, the customer and
    /// conversation rows, the rota's turn, the outbox events and the change-log
    /// entries are written in the same transaction.
    public func ingest(_ message: IngestMessageRequest, nowMs: Int64) async throws -> IngestMessageResponse {
        let shop = message.shopId
        // Capture is pure text work: done before the transaction so the writer is held for SQL only.
        let incoming = MessageIngest.Message(
            sender: message.sender, customerName: message.customerName, sentAtMs: message.sentAtMs,
            capturedPhone: message.sender == .customer ? ContactCapture.phone(in: message.text) : nil,
            capturedAddress: message.sender == .customer ? ContactCapture.address(in: message.text) : nil
        )
        return try await write { db in
            // One read finds the page, the customer and their conversation (each may be missing).
            guard let known = try await db.raw("""
                SELECT p.page_id, p.platform, cu.customer_id, cu.name, cu.phone, cu.phone_source, cu.address, cu.address_source, cu.blocked,
                       c.conversation_id, c.status, c.assigned_staff_id, c.last_message_at_ms
                FROM pages p
                LEFT JOIN customers cu ON cu.shop_id = p.shop_id AND cu.page_id = p.page_id AND cu.external_id = \(bind: message.customerExternalId)
                LEFT JOIN conversations c ON c.shop_id = cu.shop_id AND c.page_id = cu.page_id AND c.customer_id = cu.customer_id
                WHERE p.shop_id = \(bind: shop) AND p.page_id = \(bind: message.pageId)
                """).first() else {
                throw ConversationError.pageNotConnected(message.pageId)
            }
            let hasCustomer = try !known.decodeNil(column: "customer_id")
            let hasConversation = try !known.decodeNil(column: "conversation_id")
            var outcome = MessageIngest.decide(
                customer: hasCustomer ? try Self.ingestCustomer(known) : nil,
                conversation: hasConversation
                    ? MessageIngest.Thread(
                        status: Conversation.Status(rawValue: Int32(try known.int64("status"))), assignedStaffId: try known.string("assigned_staff_id"),
                        lastMessageAtMs: try known.int64("last_message_at_ms")
                    )
                    : nil,
                message: incoming
            )
            let customer = outcome.customer
            let customerId = hasCustomer ? try known.string("customer_id") : SortableID.make("cu_")
            if outcome.newCustomer {
                // R-CONV-5: where the customer came from is what the first message says.
                let referral = message.referral ?? Referral()
                try await db.raw("""
                    INSERT INTO customers (shop_id, customer_id, page_id, external_id, name, referral_source_link, referral_channel,
                                           referral_campaign, created_at_ms)
                    VALUES (\(bind: shop), \(bind: customerId), \(bind: message.pageId), \(bind: message.customerExternalId), \(bind: message.customerName),
                            \(bind: referral.sourceLink), \(bind: referral.channel), \(bind: referral.campaign), \(bind: nowMs))
                    """).run()
            }
            if outcome.customerRowChanged {
                try await db.raw("""
                    UPDATE customers SET name = \(bind: customer.name), phone = \(bind: customer.phone), phone_source = \(bind: customer.phoneSource.rawValue),
                           address = \(bind: customer.address), address_source = \(bind: customer.addressSource.rawValue)
                    WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
                    """).run()
            }
            let conversationId = hasConversation ? try known.string("conversation_id") : SortableID.make("cv_")
            if outcome.newConversation {
                try await db.raw("""
                    INSERT INTO conversations (shop_id, conversation_id, page_id, customer_id, status, last_message_at_ms, created_at_ms)
                    VALUES (\(bind: shop), \(bind: conversationId), \(bind: message.pageId), \(bind: customerId), \(bind: Int64(Conversation.Status.open.rawValue)),
                            \(bind: message.sentAtMs), \(bind: nowMs))
                    """).run()
            }
            let messageId = SortableID.make("msg_")
            try await db.raw("""
                INSERT INTO messages (shop_id, message_id, conversation_id, page_id, kind, sender, staff_id, text, post_id, sent_at_ms)
                VALUES (\(bind: shop), \(bind: messageId), \(bind: conversationId), \(bind: message.pageId), \(bind: Int64(message.kind.rawValue)),
                        \(bind: Int64(message.sender.rawValue)), \(bind: message.staffId), \(bind: message.text), \(bind: message.postId),
                        \(bind: message.sentAtMs))
                """).run()
            if outcome.reopened {
                try await Self.recordEvent(db, shop: shop, conversationId: conversationId, pageId: message.pageId, kind: .reopened, staffId: "", atMs: message.sentAtMs)
            }
            if outcome.assignFromRota, let staff = try await Self.nextOnlineStaff(db, shop: shop, pageId: message.pageId) {
                outcome.thread.assignedStaffId = staff
                try await Self.recordEvent(db, shop: shop, conversationId: conversationId, pageId: message.pageId, kind: .assignedAuto, staffId: staff, atMs: message.sentAtMs)
            }
            var update: SQLQueryString = """
                UPDATE conversations SET status = \(bind: Int64(outcome.thread.status.rawValue)), assigned_staff_id = \(bind: outcome.thread.assignedStaffId)
                """
            if outcome.isLatest {
                update += ", last_message_at_ms = \(bind: message.sentAtMs), last_message_text = \(bind: String(message.text.prefix(200)))"
            }
            if outcome.profileChanged {
                update += ", customer_name = \(bind: customer.name), search_key = \(bind: Self.searchKey(name: customer.name, phone: customer.phone))"
            }
            // R-PANEL-4: the inbox's unread count: customer messages since the staff last wrote.
            update += outcome.countsUnread ? ", unread_count = unread_count + 1" : ", unread_count = 0"
            update += " WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId)"
            try await db.raw(update).run()
            if outcome.isLatest && !outcome.newConversation {
                try await db.raw("""
                    UPDATE conversation_tags SET last_message_at_ms = \(bind: message.sentAtMs)
                    WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId)
                    """).run()
            }

            var events = outcome.profileChanged ? ConversationEvents.profileChanged(shop: shop, customerIds: [customerId], nowMs: nowMs) : []
            if outcome.tellsMessaging {
                let contact = ConversationEvents.Contact(
                    shop: shop, pageId: message.pageId, customerId: customerId,
                    facebook: try known.int64("platform") == Int64(Page.Platform.facebook.rawValue), externalId: message.customerExternalId,
                    phone: customer.phone
                )
                events.append(try ConversationEvents.customerMessage(contact, messageId: messageId, atMs: message.sentAtMs))
            }
            if !events.isEmpty {
                try await Outbox.enqueue(db, events, nowMs: nowMs)
            }
            var changes = [ChangeLog.Entry(
                shopId: shop, kind: outcome.newConversation ? .newConversation : .message, pageId: message.pageId, conversationId: conversationId,
                customerId: customerId
            )]
            if outcome.profileChanged { changes.append(ChangeLog.Entry(shopId: shop, kind: .customer, pageId: message.pageId, customerId: customerId)) }
            try await ChangeLog.record(db, changes, nowMs: nowMs)

            var response = IngestMessageResponse(
                conversationId: conversationId, messageId: messageId, customerId: customerId, status: outcome.thread.status,
                assignedStaffId: outcome.thread.assignedStaffId
            )
            response.capturedPhone = outcome.capturedPhone ?? ""
            response.capturedAddress = outcome.capturedAddress ?? ""
            return response
        }
    }

    static func ingestCustomer(_ row: any SQLRow) throws -> MessageIngest.Customer {
        MessageIngest.Customer(
            name: try row.string("name"), phone: try row.string("phone"),
            phoneSource: ContactSource(rawValue: try row.int64("phone_source")) ?? .none, address: try row.string("address"),
            addressSource: ContactSource(rawValue: try row.int64("address_source")) ?? .none, blocked: try row.int64("blocked") != 0
        )
    }

    static func searchKey(name: String, phone: String) -> String {
        TagName.key(name) + (phone.isEmpty ? "" : " " + phone)
    }

    /// R-CONV-1: the online staff member whose turn it is, who then goes to the back of the line.
    static func nextOnlineStaff(_ db: any SQLDatabase, shop: String, pageId: String) async throws -> String? {
        guard let row = try await db.raw("""
            SELECT staff_id FROM staff_presence WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND online = 1
            ORDER BY auto_turn, staff_id LIMIT 1
            """).first() else { return nil }
        let staff = try row.string("staff_id")
        try await db.raw("""
            UPDATE staff_presence SET auto_turn = (SELECT MAX(auto_turn) FROM staff_presence WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId)) + 1
            WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND staff_id = \(bind: staff)
            """).run()
        return staff
    }

    /// R-PANEL-4: one change of a conversation, for the change log.
    static func changed(_ db: any SQLDatabase, shop: String, _ kind: Change.Kind, _ conversation: Conversation, nowMs: Int64) async throws {
        try await ChangeLog.record(
            db, [ChangeLog.Entry(shopId: shop, kind: kind, pageId: conversation.pageId, conversationId: conversation.conversationId, customerId: conversation.customerId)],
            nowMs: nowMs
        )
    }

    /// R-PANEL-4: the page's tags changed (created, renamed, hidden, moved, deleted): every panel of the page.
    static func pageTagsChanged(_ db: any SQLDatabase, shop: String, pageId: String, nowMs: Int64) async throws {
        try await ChangeLog.record(db, [ChangeLog.Entry(shopId: shop, kind: .tags, pageId: pageId)], nowMs: nowMs)
    }

    /// R-PANEL-4: a tag of the page was renamed, recoloured, hidden, moved or deleted: every panel of the
    /// page (the tags it offers) and each conversation carrying it (its inbox row shows the tag).
    static func tagChanged(_ db: any SQLDatabase, shop: String, pageId: String, tagId: String, nowMs: Int64) async throws {
        let carriers = try await db.raw("""
            SELECT c.conversation_id, c.customer_id FROM conversation_tags ct
            JOIN conversations c ON c.shop_id = ct.shop_id AND c.conversation_id = ct.conversation_id
            WHERE ct.shop_id = \(bind: shop) AND ct.tag_id = \(bind: tagId) ORDER BY c.conversation_id
            """).all()
        let entries = try [ChangeLog.Entry(shopId: shop, kind: .tags, pageId: pageId)] + carriers.map {
            ChangeLog.Entry(shopId: shop, kind: .tags, pageId: pageId, conversationId: try $0.string("conversation_id"), customerId: try $0.string("customer_id"))
        }
        try await ChangeLog.record(db, entries, nowMs: nowMs)
    }

    /// R-PANEL-4: something of a customer changed; each of the customer's conversations is named, for the inbox.
    static func recordCustomerChange(_ db: any SQLDatabase, shop: String, customerId: String, _ kind: Change.Kind, nowMs: Int64) async throws {
        let rows = try await db.raw("""
            SELECT conversation_id, page_id FROM conversations WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
            """).all()
        var entries = try rows.map {
            ChangeLog.Entry(shopId: shop, kind: kind, pageId: try $0.string("page_id"), conversationId: try $0.string("conversation_id"), customerId: customerId)
        }
        if entries.isEmpty { entries = [ChangeLog.Entry(shopId: shop, kind: kind, customerId: customerId)] }
        try await ChangeLog.record(db, entries, nowMs: nowMs)
    }

    static func recordEvent(_ db: any SQLDatabase, shop: String, conversationId: String, pageId: String, kind: EventKind, staffId: String, atMs: Int64) async throws {
        try await db.raw("""
            INSERT INTO conversation_events (shop_id, event_id, conversation_id, page_id, kind, staff_id, at_ms)
            VALUES (\(bind: shop), \(bind: SortableID.make("ev_")), \(bind: conversationId), \(bind: pageId), \(bind: kind.rawValue), \(bind: staffId), \(bind: atMs))
            """).run()
    }

    public func listConversations(shop: String, filter: ConversationFilter) async throws -> ListConversationsResponse {
        try await db.read { db in
            _ = try await Self.requirePage(db, shop: shop, pageId: filter.pageId)
            let sql = Self.listQuery(shop: shop, filter: filter)
            let rows = try await db.raw(sql).all()
            var conversations = try rows.prefix(filter.pageSize).map(Self.conversation)
            let tags = try await Self.attachedTags(db, shop: shop, conversationIds: conversations.map(\.conversationId))
            for i in conversations.indices {
                conversations[i].tags = tags[conversations[i].conversationId] ?? []
            }
            var response = ListConversationsResponse(conversations: conversations)
            if rows.count > filter.pageSize, let last = conversations.last {
                response.nextPageToken = ConversationCursor(lastMessageAtMs: last.lastMessageAtMs, conversationId: last.conversationId).token
            }
            return response
        }
    }

    /// R-TAG-5 as SQL, newest activity first. Without tags the page's activity
    /// index drives the scan. With tags, each driving tag's index range is read
    /// in activity order (conversation_tags carries the activity time) and
    /// stops at the page size, so the first page costs the same whether a tag
    /// is on ten conversations or ten thousand: any-of is a union of one range
    /// per tag; all-of is driven by its first tag and checks the others per row.
    static func listQuery(shop: String, filter: ConversationFilter) -> SQLQueryString {
        let limit = filter.pageSize + 1
        let any = Array(Set(filter.tagIdsAny)).sorted()
        let all = Array(Set(filter.tagIdsAll)).sorted()
        // Conditions on the conversation row `c`, which every branch shares.
        var conditions: SQLQueryString = "c.shop_id = \(bind: shop) AND c.page_id = \(bind: filter.pageId)"
        if let status = filter.status {
            conditions += " AND c.status = \(bind: Int64(status.rawValue))"
        }
        if !filter.assignedStaffId.isEmpty {
            conditions += " AND c.assigned_staff_id = \(bind: filter.assignedStaffId)"
        }
        for word in filter.query.split(separator: " ") where !word.isEmpty {
            conditions += " AND c.search_key LIKE \(bind: "%" + escapeLike(String(word)) + "%") ESCAPE '\\'"
        }
        func hasTag(_ tag: String) -> SQLQueryString {
            " AND EXISTS (SELECT 1 FROM conversation_tags x WHERE x.shop_id = c.shop_id AND x.conversation_id = c.conversation_id AND x.tag_id = \(bind: tag))"
        }
        func after(_ table: String) -> SQLQueryString {
            guard let cursor = filter.after else { return "" }
            return """
                 AND (\(unsafeRaw: table).last_message_at_ms < \(bind: cursor.lastMessageAtMs)
                   OR (\(unsafeRaw: table).last_message_at_ms = \(bind: cursor.lastMessageAtMs) AND \(unsafeRaw: table).conversation_id < \(bind: cursor.conversationId)))
                """
        }
        let order: SQLQueryString = " ORDER BY last_message_at_ms DESC, conversation_id DESC LIMIT \(literal: limit)"
        guard !any.isEmpty || !all.isEmpty else {
            return "SELECT c.* FROM conversations c WHERE " + conditions + after("c") + order
        }
        // One index range per driving tag, joined to its conversation for the other conditions.
        func range(driving tag: String, also: SQLQueryString) -> SQLQueryString {
            "SELECT c.* FROM conversation_tags ct JOIN conversations c ON c.shop_id = ct.shop_id AND c.conversation_id = ct.conversation_id"
                + " WHERE ct.shop_id = \(bind: shop) AND ct.tag_id = \(bind: tag) AND " + conditions + also + after("ct")
                + " ORDER BY ct.last_message_at_ms DESC, ct.conversation_id DESC LIMIT \(literal: limit)"
        }
        if !all.isEmpty {
            var also: SQLQueryString = ""
            for tag in all.dropFirst() { also += hasTag(tag) }
            if !any.isEmpty {
                also += " AND EXISTS (SELECT 1 FROM conversation_tags y WHERE y.shop_id = c.shop_id AND y.conversation_id = c.conversation_id AND y.tag_id IN (\(binds: any)))"
            }
            // Subqueries in FROM carry aliases: PostgreSQL before 16 requires them.
            return "SELECT * FROM (" + range(driving: all[0], also: also) + ") AS tagged" + order
        }
        // UNION (not UNION ALL): a conversation with two of the tags comes once.
        let branches = any.enumerated().map { "SELECT * FROM (" + range(driving: $1, also: "") + ") AS tag\(unsafeRaw: String($0))" as SQLQueryString }
        return "SELECT * FROM (" + branches.joined(separator: " UNION ") + ") AS tagged" + order
    }

    static func escapeLike(_ text: String) -> String {
        var out = ""
        for ch in text {
            if ch == "%" || ch == "_" || ch == "\\" { out.append("\\") }
            out.append(ch)
        }
        return out
    }

    public func conversation(shop: String, id: String) async throws -> Conversation {
        try await db.read { db in try await Self.conversationView(db, shop: shop, id: id) }
    }

    public func conversations(shop: String, ids: [String]) async throws -> [Conversation] {
        guard !ids.isEmpty else { return [] }
        return try await db.read { db in
            var rows: [Conversation] = []
            for start in stride(from: 0, to: ids.count, by: 500) {
                let chunk = Array(ids[start..<min(start + 500, ids.count)])
                rows += try await db.raw("SELECT * FROM conversations WHERE shop_id = \(bind: shop) AND conversation_id IN (\(binds: chunk))").all()
                    .map(Self.conversation)
            }
            let tags = try await Self.attachedTags(db, shop: shop, conversationIds: rows.map(\.conversationId))
            for index in rows.indices { rows[index].tags = tags[rows[index].conversationId] ?? [] }
            return rows
        }
    }

    public func requirePage(shop: String, pageId: String) async throws {
        _ = try await db.read { db in try await Self.requirePage(db, shop: shop, pageId: pageId) }
    }

    public func listMessages(shop: String, conversationId: String, pageSize: Int, after: String?) async throws -> ListMessagesResponse {
        try await db.read { db in
            _ = try await Self.requireConversation(db, shop: shop, id: conversationId)
            var sql: SQLQueryString = "SELECT * FROM messages WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId)"
            if let after, let cursor = ConversationCursor(token: after) {
                sql += " AND (sent_at_ms > \(bind: cursor.lastMessageAtMs) OR (sent_at_ms = \(bind: cursor.lastMessageAtMs) AND message_id > \(bind: cursor.conversationId)))"
            }
            sql += " ORDER BY sent_at_ms, message_id LIMIT \(literal: pageSize + 1)"
            let rows = try await db.raw(sql).all()
            let messages = try rows.prefix(pageSize).map { row in
                ChatMessage(
                    messageId: try row.string("message_id"), conversationId: conversationId,
                    kind: .init(rawValue: Int32(try row.int64("kind"))), sender: .init(rawValue: Int32(try row.int64("sender"))),
                    staffId: try row.string("staff_id"), text: try row.string("text"), postId: try row.string("post_id"), sentAtMs: try row.int64("sent_at_ms")
                )
            }
            var response = ListMessagesResponse(messages: messages)
            if rows.count > pageSize, let last = messages.last {
                response.nextPageToken = ConversationCursor(lastMessageAtMs: last.sentAtMs, conversationId: last.messageId).token
            }
            return response
        }
    }

    public func assign(shop: String, conversationId: String, staffId: String?, mode: AssignConversationRequest.Mode, nowMs: Int64) async throws -> Conversation {
        return try await write { db in
            let current = try await Self.requireConversation(db, shop: shop, id: conversationId)
            let staff: String
            if let staffId {
                staff = staffId
            } else {
                guard let next = try await Self.nextOnlineStaff(db, shop: shop, pageId: current.pageId) else {
                    throw ConversationError.nobodyOnline(page: current.pageId)
                }
                staff = next
            }
            if staff != current.assignedStaffId {
                try await db.raw("""
                    UPDATE conversations SET assigned_staff_id = \(bind: staff) WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId)
                    """).run()
                try await Self.recordEvent(
                    db, shop: shop, conversationId: conversationId, pageId: current.pageId, kind: mode == .auto ? .assignedAuto : .assignedManual,
                    staffId: staff, atMs: nowMs
                )
                try await Self.changed(db, shop: shop, .conversation, current, nowMs: nowMs)
            }
            return try await Self.conversationView(db, shop: shop, id: conversationId)
        }
    }

    public func setPresence(shop: String, pageId: String, staffId: String, online: Bool) async throws {
        return try await write { db in
            _ = try await Self.requirePage(db, shop: shop, pageId: pageId)
            try await db.raw("""
                INSERT INTO staff_presence (shop_id, page_id, staff_id, online, auto_turn)
                VALUES (\(bind: shop), \(bind: pageId), \(bind: staffId), \(bind: online ? 1 : 0 as Int64), \(bind: 0 as Int64))
                ON CONFLICT (shop_id, page_id, staff_id) DO UPDATE SET online = \(bind: online ? 1 : 0 as Int64)
                """).run()
        }
    }

    public func setStatus(shop: String, conversationId: String, open: Bool, staffId: String, nowMs: Int64) async throws -> Conversation {
        return try await write { db in
            let current = try await Self.requireConversation(db, shop: shop, id: conversationId)
            let wanted: Conversation.Status = open ? .open : .closed
            if current.status != wanted {
                // R-CONV-1: what gets closed is an assigned conversation (one problem solved by someone).
                if !open && current.assignedStaffId.isEmpty {
                    throw ConversationError.closingUnassigned(conversationId)
                }
                try await db.raw("""
                    UPDATE conversations SET status = \(bind: Int64(wanted.rawValue)) WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: conversationId)
                    """).run()
                try await Self.recordEvent(
                    db, shop: shop, conversationId: conversationId, pageId: current.pageId, kind: open ? .reopened : .closed, staffId: staffId, atMs: nowMs
                )
                try await Self.changed(db, shop: shop, .conversation, current, nowMs: nowMs)
            }
            return try await Self.conversationView(db, shop: shop, id: conversationId)
        }
    }

    // MARK: Customers

    public func customer(shop: String, id: String) async throws -> Customer {
        try await db.read { db in try await Self.customerView(db, shop: shop, id: id) }
    }

    /// R-PANEL-1: one read for the five answers a panel needs from this service. The conversation
    /// found proves its customer and page exist, so no existence checks are repeated.
    public func conversationContext(shop: String, conversationId: String, notes: Int, activity: Int) async throws -> ConversationContext {
        try await db.read { db in
            let conversation = try await Self.conversationView(db, shop: shop, id: conversationId)
            let customer = try await Self.customerView(db, shop: shop, id: conversation.customerId)
            let tags = try await Self.tagList(db, shop: shop, pageId: conversation.pageId, includeHidden: false)
            let notes = try await Self.notes(db, shop: shop, customerId: conversation.customerId, pageSize: notes, after: nil)
            var filter = ActivityFilter(pageId: conversation.pageId)
            filter.conversationId = conversationId
            filter.pageSize = activity
            let entries = try await Self.activity(db, shop: shop, filter: filter)
            return ConversationContext(conversation: conversation, customer: customer, tags: tags, notes: notes.notes, activity: entries.entries)
        }
    }

    public func updateCustomer(shop: String, id: String, changes: CustomerChanges) async throws -> Customer {
        return try await write { db in
            var customer = try await Self.customerView(db, shop: shop, id: id)
            var sql: SQLQueryString = "UPDATE customers SET customer_id = customer_id"
            if let name = changes.name {
                customer.name = name
                sql += ", name = \(bind: name)"
            }
            if let birthday = changes.birthday { sql += ", birthday = \(bind: birthday)" }
            // R-CONV-3/4: what staff type is theirs; auto-capture will not replace it.
            if let phone = changes.phone {
                customer.phone = phone
                sql += ", phone = \(bind: phone), phone_source = \(bind: (phone.isEmpty ? ContactSource.none : ContactSource.staff).rawValue)"
            }
            if let address = changes.address {
                sql += ", address = \(bind: address), address_source = \(bind: (address.isEmpty ? ContactSource.none : ContactSource.staff).rawValue)"
            }
            sql += " WHERE shop_id = \(bind: shop) AND customer_id = \(bind: id)"
            try await db.raw(sql).run()
            if changes.name != nil || changes.phone != nil {
                try await db.raw("""
                    UPDATE conversations SET customer_name = \(bind: customer.name), search_key = \(bind: Self.searchKey(name: customer.name, phone: customer.phone))
                    WHERE shop_id = \(bind: shop) AND customer_id = \(bind: id)
                    """).run()
            }
            if changes.name != nil || changes.phone != nil || changes.birthday != nil {
                let now = WallClock.nowMs()
                try await Outbox.enqueue(db, ConversationEvents.profileChanged(shop: shop, customerIds: [id], nowMs: now), nowMs: now)
            }
            try await Self.recordCustomerChange(db, shop: shop, customerId: id, .customer, nowMs: WallClock.nowMs())
            return try await Self.customerView(db, shop: shop, id: id)
        }
    }

    public func setBlocked(shop: String, customerId: String, blocked: Bool, staffId: String, nowMs: Int64) async throws -> Customer {
        return try await write { db in
            let customer = try await Self.customerView(db, shop: shop, id: customerId)
            if customer.blocked != blocked {
                try await db.raw("""
                    UPDATE customers SET blocked = \(bind: blocked ? 1 : 0 as Int64) WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
                    """).run()
                let conversationId = try await db.raw("""
                    SELECT conversation_id FROM conversations WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
                    """).first().map { try $0.string("conversation_id") } ?? ""
                try await Self.recordActivity(
                    db, shop: shop, pageId: customer.pageId, action: blocked ? .customerBlocked : .customerUnblocked, staffId: staffId,
                    conversationId: conversationId, customerId: customerId, tagId: "", tagName: "", nowMs: nowMs
                )
                try await Self.recordCustomerChange(db, shop: shop, customerId: customerId, .block, nowMs: nowMs)
            }
            return try await Self.customerView(db, shop: shop, id: customerId)
        }
    }

    public func addNote(shop: String, customerId: String, text: String, staffId: String, nowMs: Int64) async throws -> Note {
        return try await write { db in
            try await Self.requireCustomer(db, shop: shop, id: customerId)
            let note = Note(noteId: SortableID.make("note_", nowMs: nowMs), customerId: customerId, text: text, staffId: staffId, createdAtMs: nowMs)
            try await db.raw("""
                INSERT INTO notes (shop_id, note_id, customer_id, text, staff_id, created_at_ms)
                VALUES (\(bind: shop), \(bind: note.noteId), \(bind: customerId), \(bind: text), \(bind: staffId), \(bind: nowMs))
                """).run()
            try await Self.recordCustomerChange(db, shop: shop, customerId: customerId, .notes, nowMs: nowMs)
            return note
        }
    }

    public func listNotes(shop: String, customerId: String, pageSize: Int, after: String?) async throws -> ListNotesResponse {
        try await db.read { db in
            let page = try await Self.notes(db, shop: shop, customerId: customerId, pageSize: pageSize, after: after)
            // Customers are never deleted: one with notes exists, so only an empty answer needs the check.
            if page.notes.isEmpty { try await Self.requireCustomer(db, shop: shop, id: customerId) }
            return page
        }
    }

    static func notes(_ db: any SQLDatabase, shop: String, customerId: String, pageSize: Int, after: String?) async throws -> ListNotesResponse {
        var sql: SQLQueryString = "SELECT * FROM notes WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)"
        if let after { sql += " AND note_id < \(bind: after)" }
        sql += " ORDER BY note_id DESC LIMIT \(literal: pageSize + 1)"
        let rows = try await db.raw(sql).all()
        let notes = try rows.prefix(pageSize).map { row in
            Note(
                noteId: try row.string("note_id"), customerId: customerId, text: try row.string("text"), staffId: try row.string("staff_id"),
                createdAtMs: try row.int64("created_at_ms")
            )
        }
        return ListNotesResponse(notes: notes, nextPageToken: rows.count > pageSize ? notes.last?.noteId ?? "" : "")
    }

    public func deleteNote(shop: String, customerId: String, noteId: String) async throws {
        return try await write { db in
            try await Self.requireCustomer(db, shop: shop, id: customerId)
            guard try await db.raw("""
                SELECT note_id FROM notes WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND note_id = \(bind: noteId)
                """).first() != nil else {
                throw ConversationError.noNote(customer: customerId, note: noteId)
            }
            try await db.raw("DELETE FROM notes WHERE shop_id = \(bind: shop) AND note_id = \(bind: noteId)").run()
            try await Self.recordCustomerChange(db, shop: shop, customerId: customerId, .notes, nowMs: WallClock.nowMs())
        }
    }

    public func defineCustomField(shop: String, field: CustomField) async throws -> CustomField {
        return try await write { db in
            if let row = try await db.raw("SELECT * FROM custom_fields WHERE shop_id = \(bind: shop) AND field_key = \(bind: field.key)").first() {
                let existing = try Self.customField(row)
                // Values already stored were checked against the old type; a new type could make them wrong.
                guard existing.type == field.type else {
                    throw ConversationError.customFieldTypeFixed(key: field.key, type: existing.type)
                }
                try await db.raw("""
                    UPDATE custom_fields SET label = \(bind: field.label), options = \(bind: field.options.joined(separator: "\n"))
                    WHERE shop_id = \(bind: shop) AND field_key = \(bind: field.key)
                    """).run()
            } else {
                try await db.raw("""
                    INSERT INTO custom_fields (shop_id, field_key, label, field_type, options)
                    VALUES (\(bind: shop), \(bind: field.key), \(bind: field.label), \(bind: Int64(field.type.rawValue)), \(bind: field.options.joined(separator: "\n")))
                    """).run()
            }
            return field
        }
    }

    public func listCustomFields(shop: String) async throws -> [CustomField] {
        try await db.read { db in
            try await db.raw("SELECT * FROM custom_fields WHERE shop_id = \(bind: shop) ORDER BY field_key").all().map(Self.customField)
        }
    }

    public func setCustomFieldValue(shop: String, customerId: String, key: String, value: String) async throws -> Customer {
        return try await write { db in
            try await Self.requireCustomer(db, shop: shop, id: customerId)
            guard let row = try await db.raw("SELECT * FROM custom_fields WHERE shop_id = \(bind: shop) AND field_key = \(bind: key)").first() else {
                throw ConversationError.noCustomField(key)
            }
            if value.isEmpty {
                try await db.raw("""
                    DELETE FROM custom_field_values WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND field_key = \(bind: key)
                    """).run()
            } else {
                if let problem = CustomFieldRules.check(value: value, for: try Self.customField(row)) {
                    throw ConversationError.customFieldValue(problem)
                }
                try await db.raw("""
                    INSERT INTO custom_field_values (shop_id, customer_id, field_key, value)
                    VALUES (\(bind: shop), \(bind: customerId), \(bind: key), \(bind: value))
                    ON CONFLICT (shop_id, customer_id, field_key) DO UPDATE SET value = \(bind: value)
                    """).run()
            }
            try await Self.recordCustomerChange(db, shop: shop, customerId: customerId, .customer, nowMs: WallClock.nowMs())
            return try await Self.customerView(db, shop: shop, id: customerId)
        }
    }

    // MARK: History

    static func recordActivity(
        _ db: any SQLDatabase, shop: String, pageId: String, action: ActivityEntry.Action, staffId: String, conversationId: String,
        customerId: String, tagId: String, tagName: String, nowMs: Int64
    ) async throws {
        try await db.raw("""
            INSERT INTO activity (shop_id, entry_id, page_id, action, staff_id, conversation_id, customer_id, tag_id, tag_name, at_ms)
            VALUES (\(bind: shop), \(bind: SortableID.make("act_", nowMs: nowMs)), \(bind: pageId), \(bind: Int64(action.rawValue)), \(bind: staffId),
                    \(bind: conversationId), \(bind: customerId), \(bind: tagId), \(bind: tagName), \(bind: nowMs))
            """).run()
    }

    public func listActivity(shop: String, filter: ActivityFilter) async throws -> ListActivityResponse {
        try await db.read { db in
            let page = try await Self.activity(db, shop: shop, filter: filter)
            // As for notes: entries prove their page exists, only an empty answer needs the check.
            if page.entries.isEmpty { _ = try await Self.requirePage(db, shop: shop, pageId: filter.pageId) }
            return page
        }
    }

    static func activity(_ db: any SQLDatabase, shop: String, filter: ActivityFilter) async throws -> ListActivityResponse {
        var sql: SQLQueryString = "SELECT * FROM activity WHERE shop_id = \(bind: shop) AND page_id = \(bind: filter.pageId)"
        if !filter.conversationId.isEmpty { sql += " AND conversation_id = \(bind: filter.conversationId)" }
        if !filter.actions.isEmpty {
            sql += " AND action IN (\(binds: Array(Set(filter.actions.map { Int64($0.rawValue) })).sorted()))"
        }
        if filter.fromMs > 0 { sql += " AND at_ms >= \(bind: filter.fromMs)" }
        if filter.toMs > 0 { sql += " AND at_ms < \(bind: filter.toMs)" }
        if let after = filter.after { sql += " AND entry_id < \(bind: after)" }
        sql += " ORDER BY entry_id DESC LIMIT \(literal: filter.pageSize + 1)"
        let rows = try await db.raw(sql).all()
        let entries = try rows.prefix(filter.pageSize).map { row in
            ActivityEntry(
                entryId: try row.string("entry_id"), action: .init(rawValue: Int32(try row.int64("action"))), staffId: try row.string("staff_id"),
                conversationId: try row.string("conversation_id"), customerId: try row.string("customer_id"), tagId: try row.string("tag_id"),
                tagName: try row.string("tag_name"), atMs: try row.int64("at_ms")
            )
        }
        return ListActivityResponse(entries: entries, nextPageToken: rows.count > filter.pageSize ? entries.last?.entryId ?? "" : "")
    }

    public func purgeExpiredActivity(nowMs: Int64) async throws -> Int {
        let cutoff = nowMs - ActivityRetention.tagHistoryMs
        return try await write { db in
            let tagActions = [ActivityEntry.Action.tagAttached, .tagDetached].map { Int64($0.rawValue) }
            let row = try await db.raw("""
                SELECT COUNT(*) AS n FROM activity WHERE action IN (\(binds: tagActions)) AND at_ms < \(bind: cutoff)
                """).first()
            let count = try row?.int64("n") ?? 0
            if count > 0 {
                try await db.raw("DELETE FROM activity WHERE action IN (\(binds: tagActions)) AND at_ms < \(bind: cutoff)").run()
            }
            return Int(count)
        }
    }

    public func staffHistory(shop: String, pageId: String, fromMs: Int64, toMs: Int64) async throws -> [StaffConversationStatsCalculator.Event] {
        try await db.read { db in
            _ = try await Self.requirePage(db, shop: shop, pageId: pageId)
            var events: [StaffConversationStatsCalculator.Event] = []
            // A reply in range may answer a wait that began before it: its conversation's earlier messages are read too.
            let messageRows = try await db.raw("""
                SELECT conversation_id, kind, sender, staff_id, sent_at_ms FROM messages
                WHERE shop_id = \(bind: shop) AND sent_at_ms < \(bind: toMs) AND conversation_id IN (
                    SELECT DISTINCT conversation_id FROM messages
                    WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND sent_at_ms >= \(bind: fromMs) AND sent_at_ms < \(bind: toMs)
                      AND sender = \(bind: Int64(ChatMessage.Sender.staff.rawValue)))
                ORDER BY sent_at_ms, message_id
                """).all()
            for row in messageRows {
                let kind: StaffConversationStatsCalculator.ReplyKind = try row.int64("kind") == Int64(ChatMessage.Kind.comment.rawValue) ? .comment : .message
                let sender: StaffConversationStatsCalculator.Sender
                switch ChatMessage.Sender(rawValue: Int32(try row.int64("sender"))) {
                case .staff: sender = .staff(try row.string("staff_id"))
                case .bot: sender = .bot
                default: sender = .customer
                }
                events.append(.init(conversationId: try row.string("conversation_id"), atMs: try row.int64("sent_at_ms"), what: .message(kind, sender)))
            }
            let eventRows = try await db.raw("""
                SELECT conversation_id, kind, staff_id, at_ms FROM conversation_events
                WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND at_ms >= \(bind: fromMs) AND at_ms < \(bind: toMs)
                ORDER BY at_ms, event_id
                """).all()
            for row in eventRows {
                let staff = try row.string("staff_id")
                let what: StaffConversationStatsCalculator.Event.What
                switch EventKind(rawValue: try row.int64("kind")) {
                case .assignedAuto: what = .assigned(staffId: staff, .auto)
                case .assignedManual: what = .assigned(staffId: staff, .manual)
                case .closed: what = .closed(staffId: staff)
                case .reopened, nil: continue
                }
                events.append(.init(conversationId: try row.string("conversation_id"), atMs: try row.int64("at_ms"), what: what))
            }
            return events
        }
    }

    // MARK: Reading rows

    static func requirePage(_ db: any SQLDatabase, shop: String, pageId: String) async throws -> Page {
        guard let row = try await db.raw("SELECT * FROM pages WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId)").first() else {
            throw ConversationError.pageNotConnected(pageId)
        }
        return try page(row)
    }

    static func page(_ row: any SQLRow) throws -> Page {
        Page(
            pageId: try row.string("page_id"), name: try row.string("name"), platform: .init(rawValue: Int32(try row.int64("platform"))),
            connectedAtMs: try row.int64("connected_at_ms"), firstConnect: false, facebookLabelSync: try row.int64("fb_sync") != 0
        )
    }

    static func requireFolder(_ db: any SQLDatabase, shop: String, pageId: String, folderId: String) async throws {
        guard try await db.raw("""
            SELECT folder_id FROM tag_folders WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND folder_id = \(bind: folderId)
            """).first() != nil else {
            throw ConversationError.noFolder(page: pageId, folder: folderId)
        }
    }

    static func requireTag(_ db: any SQLDatabase, shop: String, pageId: String, tagId: String, field: String = "tag_id") async throws -> Tag {
        guard let row = try await db.raw("""
            SELECT * FROM tags WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND tag_id = \(bind: tagId)
            """).first() else {
            throw ConversationError.noTag(field: field, page: pageId, tag: tagId)
        }
        return try tag(row)
    }

    /// R-TAG-3.
    static func requireFreeTagName(_ db: any SQLDatabase, shop: String, pageId: String, name: String, except: String?) async throws {
        if let row = try await db.raw("""
            SELECT tag_id, name FROM tags WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId) AND name_key = \(bind: TagName.key(name))
            """).first(), try row.string("tag_id") != except {
            throw ConversationError.tagNameTaken(try row.string("name"))
        }
    }

    static func tag(_ row: any SQLRow) throws -> Tag {
        Tag(
            tagId: try row.string("tag_id"), folderId: try row.string("folder_id"), name: try row.string("name"), color: try row.string("color"),
            visible: try row.int64("visible") != 0
        )
    }

    static func requireConversation(_ db: any SQLDatabase, shop: String, id: String) async throws -> Conversation {
        guard let row = try await db.raw("SELECT * FROM conversations WHERE shop_id = \(bind: shop) AND conversation_id = \(bind: id)").first() else {
            throw ConversationError.noConversation(id)
        }
        return try conversation(row)
    }

    static func conversation(_ row: any SQLRow) throws -> Conversation {
        Conversation(
            conversationId: try row.string("conversation_id"), pageId: try row.string("page_id"), customerId: try row.string("customer_id"),
            status: .init(rawValue: Int32(try row.int64("status"))), assignedStaffId: try row.string("assigned_staff_id"), tags: [],
            lastMessageAtMs: try row.int64("last_message_at_ms"), lastMessageText: try row.string("last_message_text"),
            customerName: try row.string("customer_name"), unreadCount: Int32(clamping: try row.int64("unread_count"))
        )
    }

    static func conversationView(_ db: any SQLDatabase, shop: String, id: String) async throws -> Conversation {
        var conversation = try await requireConversation(db, shop: shop, id: id)
        conversation.tags = try await attachedTags(db, shop: shop, conversationIds: [id])[id] ?? []
        return conversation
    }

    static func attachedTags(_ db: any SQLDatabase, shop: String, conversationIds: [String]) async throws -> [String: [Tag]] {
        guard !conversationIds.isEmpty else { return [:] }
        let rows = try await db.raw("""
            SELECT ct.conversation_id, t.* FROM conversation_tags ct
            JOIN tags t ON t.shop_id = ct.shop_id AND t.tag_id = ct.tag_id
            WHERE ct.shop_id = \(bind: shop) AND ct.conversation_id IN (\(binds: conversationIds))
            ORDER BY ct.conversation_id, ct.attached_at_ms, t.tag_id
            """).all()
        var result: [String: [Tag]] = [:]
        for row in rows {
            result[try row.string("conversation_id"), default: []].append(try tag(row))
        }
        return result
    }

    static func requireCustomer(_ db: any SQLDatabase, shop: String, id: String) async throws {
        guard try await db.raw("SELECT customer_id FROM customers WHERE shop_id = \(bind: shop) AND customer_id = \(bind: id)").first() != nil else {
            throw ConversationError.noCustomer(id)
        }
    }

    static func customerView(_ db: any SQLDatabase, shop: String, id: String) async throws -> Customer {
        guard let row = try await db.raw("SELECT * FROM customers WHERE shop_id = \(bind: shop) AND customer_id = \(bind: id)").first() else {
            throw ConversationError.noCustomer(id)
        }
        let values = try await db.raw("""
            SELECT field_key, value FROM custom_field_values WHERE shop_id = \(bind: shop) AND customer_id = \(bind: id) ORDER BY field_key
            """).all().map { CustomFieldValue(key: try $0.string("field_key"), value: try $0.string("value")) }
        return Customer(
            customerId: id, pageId: try row.string("page_id"), externalId: try row.string("external_id"), name: try row.string("name"),
            birthday: try row.string("birthday"), phone: try row.string("phone"), address: try row.string("address"), blocked: try row.int64("blocked") != 0,
            referral: Referral(
                sourceLink: try row.string("referral_source_link"), channel: try row.string("referral_channel"), campaign: try row.string("referral_campaign")
            ),
            customFields: values,
            phoneCaptured: try row.int64("phone_source") == ContactSource.captured.rawValue,
            addressCaptured: try row.int64("address_source") == ContactSource.captured.rawValue
        )
    }

    static func customField(_ row: any SQLRow) throws -> CustomField {
        let options = try row.string("options")
        return CustomField(
            key: try row.string("field_key"), label: try row.string("label"), type: .init(rawValue: Int32(try row.int64("field_type"))),
            options: options.isEmpty ? [] : options.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        )
    }

}

extension Array {
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
