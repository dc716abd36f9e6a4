import ChatMeshAPI
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// Pages, tag folders and tags (R-TAG-1..6), with Facebook label sync.
extension SQLConversationStore {
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
        shop: String, pageId: String, labels: [FacebookLabelSync.Label], attachments: [FacebookLabelSync.Attachment], morePages: Bool = false,
        nowMs: Int64
    ) async throws -> FacebookLabelSync.Outcome {
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
            // The back-fill ends with the last call of the first sync, not its first.
            if mode == .backfill && !morePages {
                try await db.raw("UPDATE pages SET fb_backfill_pending = 0 WHERE shop_id = \(bind: shop) AND page_id = \(bind: pageId)").run()
            }
            return FacebookLabelSync.Outcome(synced: plan.newLabels.count + attachedCount, skipped: plan.skipped, skippedReasons: plan.reasons)
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
}
