import ChatMeshAPI
@testable import Conversations
import MeshRPC
import MeshTestSupport
import Testing
import VietnamCommerce

/// ConversationService through the router (token and shop checks included) on a real SQLite file.
@Suite struct ConversationServiceTests {
    static let shop = ServiceHarness.shop

    // MARK: R-TAG-2

    @Test func firstConnectCreatesTheDefaultFoldersAndTagsOnce() async throws {
        let h = try await ServiceHarness.make()
        let first = try await h.connect()
        #expect(first.firstConnect)
        let list = try await h.owner.listTags(ListTagsRequest(shopId: Self.shop, pageId: "page-1", includeHidden: true))
        #expect(list.folders.map(\.name) == DefaultTags.folders.map(\.name))
        #expect(list.folders.map { $0.tags.map(\.name) } == DefaultTags.folders.map(\.tags))
        #expect(list.folders.flatMap(\.tags).count == 19)
        #expect(list.folders.flatMap(\.tags).allSatisfy { $0.visible && $0.color.hasPrefix("#") })

        let again = try await h.connect()
        #expect(!again.firstConnect)
        #expect(again.connectedAtMs == first.connectedAtMs)
        #expect(try await h.tags().count == 19)
        #expect(try await h.count("tag_folders") == 3)

        let installed = try await h.owner.installDefaultTags(InstallDefaultTagsRequest(shopId: Self.shop, pageId: "page-1"))
        #expect(installed.folders.flatMap(\.tags).count == 19)
        _ = try await h.owner.installDefaultTags(InstallDefaultTagsRequest(shopId: Self.shop, pageId: "page-1"))
        #expect(try await h.count("tags") == 19)
        try await h.close()
    }

    @Test func installDefaultTagsAddsOnlyWhatIsMissing() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let spam = try await h.tag(named: "Spam")
        _ = try await h.owner.deleteTag(DeleteTagRequest(shopId: Self.shop, pageId: "page-1", tagId: spam.tagId))
        let quan = try await h.tag(named: "Quan tâm")
        _ = try await h.owner.updateTag(UpdateTagRequest(
            shopId: Self.shop, pageId: "page-1", tagId: quan.tagId, folderId: quan.folderId, name: "Quan tâm", color: "#000000", visible: false
        ))
        #expect(try await h.tags().count == 18)
        _ = try await h.owner.installDefaultTags(InstallDefaultTagsRequest(shopId: Self.shop, pageId: "page-1"))
        let tags = try await h.tags()
        #expect(tags.count == 19)
        #expect(tags.filter { $0.name == "Spam" }.count == 1)
        // The shop's own changes to a default tag stay.
        #expect(tags.first { $0.name == "Quan tâm" }?.color == "#000000")
        try await h.close()
    }

    // MARK: R-TAG-3

    @Test func tagNamesAreUniquePerPageIgnoringCaseAndAccents() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        try await h.connect("page-2")
        let folder = try await h.tag(named: "Giao gấp").folderId
        for name in ["giao gap", "GIAO GẤP", "  Giao   gấp "] {
            await expectStatus(.alreadyExists, naming: "name") {
                _ = try await h.owner.createTag(CreateTagRequest(shopId: Self.shop, pageId: "page-1", folderId: folder, name: name, color: "#ff0000", visible: true))
            }
        }
        #expect(try await h.tags().count == 19)
        // Another page may use the name.
        let folder2 = try await h.tag(named: "Giao gấp", page: "page-2").folderId
        _ = try await h.owner.createTag(CreateTagRequest(shopId: Self.shop, pageId: "page-2", folderId: folder2, name: "Hàng mới về", color: "#0f0", visible: true))
        _ = try await h.owner.createTag(CreateTagRequest(shopId: Self.shop, pageId: "page-1", folderId: folder, name: "Hàng mới về", color: "#0f0", visible: true))
        // Renaming onto another tag's name is refused; renaming a tag to its own name in other case is fine.
        let fresh = try await h.tag(named: "Hàng mới về")
        await expectStatus(.alreadyExists, naming: "name") {
            _ = try await h.owner.updateTag(UpdateTagRequest(shopId: Self.shop, pageId: "page-1", tagId: fresh.tagId, folderId: folder, name: "chờ giao lại", color: "#0f0", visible: true))
        }
        let renamed = try await h.owner.updateTag(UpdateTagRequest(shopId: Self.shop, pageId: "page-1", tagId: fresh.tagId, folderId: folder, name: "HÀNG MỚI VỀ", color: "#0f0", visible: true))
        #expect(renamed.name == "HÀNG MỚI VỀ")
        try await h.close()
    }

    // MARK: R-TAG-4, R-ACT-1

    @Test func theFiftyFirstTagIsRefusedAndNothingChanges() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let conversation = try await h.customerSays("shop ơi").conversationId
        let all = try await h.attachFiftyTags(to: conversation)
        #expect(all.count == 51)
        await expectStatus(.failedPrecondition, naming: "50") {
            _ = try await h.owner.attachTag(AttachTagRequest(shopId: Self.shop, conversationId: conversation, tagId: all[50].tagId, staffId: "agent-1"))
        }
        let after = try await h.owner.getConversation(GetConversationRequest(shopId: Self.shop, conversationId: conversation))
        #expect(after.tags.count == 50)
        #expect(!after.tags.contains { $0.tagId == all[50].tagId })
        #expect(try await h.count("activity") == 50)
        // Attaching one already there is not a 51st.
        let same = try await h.owner.attachTag(AttachTagRequest(shopId: Self.shop, conversationId: conversation, tagId: all[0].tagId, staffId: "agent-1"))
        #expect(same.tags.count == 50)
        try await h.close()
    }

    // MARK: R-TAG-6

    @Test func aNewlyConnectedPageSyncsAtMostAHundredLabelsIntoAHiddenFacebookFolder() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect(sync: true)
        for i in 0..<3 { try await h.customerSays("hi", from: "fb-\(i)") }
        let labels = (0..<120).map { FacebookLabel(fbLabelId: "L\($0)", name: "Label \($0)") }
        let attachments = [
            FacebookLabelAttachment(customerExternalId: "fb-0", fbLabelIds: (0..<60).map { "L\($0)" }),
            FacebookLabelAttachment(customerExternalId: "fb-1", fbLabelIds: ["L1", "L2"]),
        ]
        let result = try await h.owner.syncFacebookLabels(SyncFacebookLabelsRequest(shopId: Self.shop, pageId: "page-1", labels: labels, attachments: attachments))
        #expect(result.synced == 100 + 50 + 2)
        #expect(result.skipped == 20 + 10)
        let list = try await h.owner.listTags(ListTagsRequest(shopId: Self.shop, pageId: "page-1", includeHidden: true))
        let facebook = try #require(list.folders.first { $0.name == "Facebook" })
        #expect(facebook.tags.count == 100)
        #expect(facebook.tags.allSatisfy { !$0.visible })
        // Hidden tags are not listed unless asked for (R-TAG-1).
        let visibleOnly = try await h.owner.listTags(ListTagsRequest(shopId: Self.shop, pageId: "page-1"))
        #expect(visibleOnly.folders.first { $0.name == "Facebook" }?.tags.isEmpty == true)
        let fb0 = try await h.customerSays("again", from: "fb-0").conversationId
        #expect(try await h.owner.getConversation(GetConversationRequest(shopId: Self.shop, conversationId: fb0)).tags.count == 50)

        // The back-fill happens once: a second full sync adds no unattached labels.
        let more = try await h.owner.syncFacebookLabels(SyncFacebookLabelsRequest(
            shopId: Self.shop, pageId: "page-1", labels: [FacebookLabel(fbLabelId: "NEW", name: "Mới")], attachments: []
        ))
        #expect(more.synced == 0 && more.skipped == 1)
        try await h.close()
    }

    /// A first sync that comes in pages back-fills the unattached labels of every page of it
    /// (before, only the first call's: the back-fill closed after one call).
    @Test func aFirstSyncInSeveralCallsBackFillsEveryCallsLabels() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect(sync: true)
        func sync(_ ids: [String], more: Bool) async throws -> SyncFacebookLabelsResponse {
            try await h.owner.syncFacebookLabels(SyncFacebookLabelsRequest(
                shopId: Self.shop, pageId: "page-1", labels: ids.map { FacebookLabel(fbLabelId: $0, name: "Nhãn \($0)") }, morePages: more
            ))
        }
        #expect(try await sync(["P1", "P2"], more: true).synced == 2)
        #expect(try await sync(["P3"], more: true).synced == 1)
        #expect(try await sync(["P4"], more: false).synced == 1)
        // After the last page, only attached labels are synced.
        #expect(try await sync(["P5"], more: false).skipped == 1)
        let names = Set(try await h.tags().map(\.name))
        #expect(["Nhãn P1", "Nhãn P2", "Nhãn P3", "Nhãn P4"].allSatisfy(names.contains) && !names.contains("Nhãn P5"))
        try await h.close()
    }

    @Test func aPageThatSwitchesSyncOnLaterGetsOnlyAttachEvents() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        try await h.customerSays("hi", from: "fb-9")
        // Off: nothing is written.
        let off = try await h.owner.syncFacebookLabels(SyncFacebookLabelsRequest(
            shopId: Self.shop, pageId: "page-1", labels: [FacebookLabel(fbLabelId: "A", name: "VIP")],
            attachments: [FacebookLabelAttachment(customerExternalId: "fb-9", fbLabelIds: ["A"])]
        ))
        #expect(off.synced == 0 && off.skipped == 2)
        #expect(try await h.tags().count == 19)

        let page = try await h.owner.setFacebookLabelSync(SetFacebookLabelSyncRequest(shopId: Self.shop, pageId: "page-1", enabled: true))
        #expect(page.facebookLabelSync)
        let result = try await h.owner.syncFacebookLabels(SyncFacebookLabelsRequest(
            shopId: Self.shop, pageId: "page-1",
            labels: [FacebookLabel(fbLabelId: "A", name: "VIP"), FacebookLabel(fbLabelId: "B", name: "Unused")],
            attachments: [FacebookLabelAttachment(customerExternalId: "fb-9", fbLabelIds: ["A"])]
        ))
        #expect(result.synced == 2)
        #expect(result.skipped == 1)
        let tags = try await h.tags()
        #expect(tags.contains { $0.name == "VIP" && !$0.visible })
        #expect(!tags.contains { $0.name == "Unused" })
        try await h.close()
    }

    @Test func aSyncedLabelNamedLikeAnExistingTagKeepsBoth() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect(sync: true)
        _ = try await h.owner.syncFacebookLabels(SyncFacebookLabelsRequest(
            shopId: Self.shop, pageId: "page-1", labels: [FacebookLabel(fbLabelId: "K", name: "khách quen")], attachments: []
        ))
        let names = try await h.tags().map(\.name)
        #expect(names.contains("Khách quen"))
        #expect(names.contains("khách quen (Facebook)"))
        try await h.close()
    }

    // MARK: R-TAG-5

    @Test func conversationsFilterByTagsAssigneeStatusAndTextAndPage() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let hetHang = try await h.tag(named: "Hết hàng").tagId
        let giaoGap = try await h.tag(named: "Giao gấp").tagId
        var ids: [String] = []
        for i in 0..<7 {
            h.advance(ms: 1000)
            ids.append(try await h.customerSays("tin \(i)", from: "fb-\(i)", name: i == 3 ? "Trần Văn Đức" : "Khách \(i)").conversationId)
        }
        // 0,1,2 Hết hàng; 1,2,3 Giao gấp.
        for i in [0, 1, 2] { _ = try await h.owner.attachTag(AttachTagRequest(shopId: Self.shop, conversationId: ids[i], tagId: hetHang, staffId: "a")) }
        for i in [1, 2, 3] { _ = try await h.owner.attachTag(AttachTagRequest(shopId: Self.shop, conversationId: ids[i], tagId: giaoGap, staffId: "a")) }
        _ = try await h.owner.assignConversation(AssignConversationRequest(shopId: Self.shop, conversationId: ids[2], staffId: "agent-7", mode: .manual))
        _ = try await h.owner.assignConversation(AssignConversationRequest(shopId: Self.shop, conversationId: ids[5], staffId: "agent-7", mode: .manual))
        _ = try await h.owner.closeConversation(CloseConversationRequest(shopId: Self.shop, conversationId: ids[5], staffId: "agent-7"))

        func list(_ configure: (inout ListConversationsRequest) -> Void) async throws -> [String] {
            var request = ListConversationsRequest(shopId: Self.shop, pageId: "page-1")
            configure(&request)
            return try await h.owner.listConversations(request).conversations.map(\.conversationId)
        }
        #expect(try await list { $0.tagIdsAny = [hetHang, giaoGap] } == [ids[3], ids[2], ids[1], ids[0]])
        #expect(try await list { $0.tagIdsAll = [hetHang, giaoGap] } == [ids[2], ids[1]])
        #expect(try await list { $0.tagIdsAll = [hetHang, giaoGap]; $0.assignedStaffId = "agent-7" } == [ids[2]])
        #expect(try await list { $0.status = .closed } == [ids[5]])
        #expect(try await list { $0.status = .open }.count == 6)
        #expect(try await list { $0.query = "duc" } == [ids[3]])
        #expect(try await list { $0.query = "TRẦN đức" } == [ids[3]])
        // Attached tags come with each conversation.
        let withTags = try await h.owner.listConversations(ListConversationsRequest(shopId: Self.shop, pageId: "page-1", tagIdsAll: [hetHang, giaoGap]))
        #expect(withTags.conversations.allSatisfy { Set($0.tags.map(\.tagId)) == [hetHang, giaoGap] })

        // Paging walks every conversation once, newest first.
        var seen: [String] = []
        var token = ""
        repeat {
            let page = try await h.owner.listConversations(ListConversationsRequest(shopId: Self.shop, pageId: "page-1", pageSize: 3, pageToken: token))
            #expect(page.conversations.count <= 3)
            seen += page.conversations.map(\.conversationId)
            token = page.nextPageToken
        } while !token.isEmpty
        #expect(seen == ids.reversed())
        await expectStatus(.invalidArgument, naming: "page_token") {
            _ = try await h.owner.listConversations(ListConversationsRequest(shopId: Self.shop, pageId: "page-1", pageToken: "garbage"))
        }
        // Paging a tag filter: a conversation carrying both tags comes once.
        var tagged: [String] = []
        token = ""
        repeat {
            let page = try await h.owner.listConversations(ListConversationsRequest(
                shopId: Self.shop, pageId: "page-1", tagIdsAny: [giaoGap, hetHang], pageSize: 2, pageToken: token
            ))
            tagged += page.conversations.map(\.conversationId)
            token = page.nextPageToken
        } while !token.isEmpty
        #expect(tagged == [ids[3], ids[2], ids[1], ids[0]])
        // A new message moves its conversation to the top of every list it is in.
        h.advance(ms: 1000)
        try await h.customerSays("còn không shop", from: "fb-0")
        #expect(try await list { $0.tagIdsAny = [hetHang] } == [ids[0], ids[2], ids[1]])
        #expect(try await list { $0.tagIdsAll = [giaoGap, hetHang] } == [ids[2], ids[1]])
        #expect(try await list { _ in }.first == ids[0])
        try await h.close()
    }

    // MARK: R-CONV-1, R-CONV-8

    @Test func staffReopenAClosedConversationAsThemselves() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let first = try await h.customerSays("xin chào")
        _ = try await h.owner.assignConversation(AssignConversationRequest(shopId: Self.shop, conversationId: first.conversationId, staffId: "agent-1", mode: .manual))
        _ = try await h.owner.closeConversation(CloseConversationRequest(shopId: Self.shop, conversationId: first.conversationId, staffId: "agent-1"))
        #expect(try await h.owner.getConversation(GetConversationRequest(shopId: Self.shop, conversationId: first.conversationId)).status == .closed)
        let agent = h.client(staff: "agent-2", role: .agent)
        await expectStatus(.permissionDenied, naming: "staff_id") {
            _ = try await agent.reopenConversation(ReopenConversationRequest(shopId: Self.shop, conversationId: first.conversationId, staffId: "agent-1"))
        }
        let reopened = try await agent.reopenConversation(ReopenConversationRequest(shopId: Self.shop, conversationId: first.conversationId))
        #expect(reopened.status == .open)
        #expect(try await h.owner.getConversation(GetConversationRequest(shopId: Self.shop, conversationId: first.conversationId)).status == .open)
        await expectStatus(.notFound, naming: "conversation_id") {
            _ = try await h.owner.reopenConversation(ReopenConversationRequest(shopId: Self.shop, conversationId: "conv_nope", staffId: "agent-1"))
        }
        try await h.close()
    }

    @Test func aTagFolderTheShopMakesHoldsItsTags() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let folder = try await h.owner.createTagFolder(CreateTagFolderRequest(shopId: Self.shop, pageId: "page-1", name: "  Khuyến mãi tháng 12 "))
        #expect(folder.name == "Khuyến mãi tháng 12" && !folder.folderId.isEmpty)
        let tag = try await h.owner.createTag(CreateTagRequest(shopId: Self.shop, pageId: "page-1", folderId: folder.folderId, name: "Săn sale", color: "#FF6600", visible: true))
        let listed = try await h.owner.listTags(ListTagsRequest(shopId: Self.shop, pageId: "page-1"))
        let found = try #require(listed.folders.first { $0.folderId == folder.folderId })
        #expect(found.name == "Khuyến mãi tháng 12" && found.tags.map(\.tagId) == [tag.tagId])
        await expectStatus(.invalidArgument, naming: "name") {
            _ = try await h.owner.createTagFolder(CreateTagFolderRequest(shopId: Self.shop, pageId: "page-1", name: "   "))
        }
        await expectStatus(.invalidArgument, naming: "page_id") {
            _ = try await h.owner.createTagFolder(CreateTagFolderRequest(shopId: Self.shop, name: "X"))
        }
        try await h.close()
    }

    @Test func blockedCustomersMessagesAreKeptButDoNotReopen() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let first = try await h.customerSays("xin chào")
        _ = try await h.owner.assignConversation(AssignConversationRequest(shopId: Self.shop, conversationId: first.conversationId, staffId: "agent-1", mode: .manual))
        _ = try await h.owner.closeConversation(CloseConversationRequest(shopId: Self.shop, conversationId: first.conversationId, staffId: "agent-1"))
        // Unblocked: a new message reopens.
        let reopened = try await h.customerSays("còn hàng không?")
        #expect(reopened.status == .open)
        _ = try await h.owner.closeConversation(CloseConversationRequest(shopId: Self.shop, conversationId: first.conversationId, staffId: "agent-1"))
        let blocked = try await h.owner.blockCustomer(BlockCustomerRequest(shopId: Self.shop, customerId: first.customerId, staffId: "agent-1"))
        #expect(blocked.blocked)
        let spam = try await h.customerSays("spam spam 0912345678")
        #expect(spam.status == .closed)
        #expect(spam.capturedPhone.isEmpty)
        let conversation = try await h.owner.getConversation(GetConversationRequest(shopId: Self.shop, conversationId: first.conversationId))
        #expect(conversation.status == .closed)
        let messages = try await h.owner.listMessages(ListMessagesRequest(shopId: Self.shop, conversationId: first.conversationId))
        #expect(messages.messages.map(\.text) == ["xin chào", "còn hàng không?", "spam spam 0912345678"])
        _ = try await h.owner.unblockCustomer(UnblockCustomerRequest(shopId: Self.shop, customerId: first.customerId, staffId: "agent-1"))
        #expect(try await h.customerSays("mình mua").status == .open)
        try await h.close()
    }

    @Test func automaticAssignmentGoesRoundRobinAmongOnlineStaff() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        for staff in ["an", "binh", "chi"] {
            _ = try await h.owner.setStaffPresence(SetStaffPresenceRequest(shopId: Self.shop, pageId: "page-1", staffId: staff, online: true))
        }
        _ = try await h.owner.setStaffPresence(SetStaffPresenceRequest(shopId: Self.shop, pageId: "page-1", staffId: "chi", online: false))
        var assigned: [String] = []
        for i in 0..<4 { assigned.append(try await h.customerSays("hỏi", from: "c\(i)").assignedStaffId) }
        #expect(assigned == ["an", "binh", "an", "binh"])
        // A second message keeps its assignee.
        #expect(try await h.customerSays("hỏi tiếp", from: "c0").assignedStaffId == "an")
        try await h.close()
    }

    // MARK: R-CONV-3, R-CONV-4

    @Test func capturedContactsFillTheProfileButNeverReplaceWhatStaffTyped() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let first = try await h.customerSays("sđt em 0912.345.678 nha")
        #expect(first.capturedPhone == "0912345678")
        let address = try await h.customerSays("giao về 12 Lý Tự Trọng, P. Bến Nghé, Q.1, TP.HCM giúp em")
        #expect(address.capturedAddress == "12 Lý Tự Trọng, P. Bến Nghé, Q.1, TP.HCM")
        var customer = try await h.owner.getCustomer(GetCustomerRequest(shopId: Self.shop, customerId: first.customerId))
        #expect(customer.phone == "0912345678" && customer.phoneCaptured)
        #expect(customer.addressCaptured)
        // A staff edit wins from then on.
        customer = try await h.owner.updateCustomer(UpdateCustomerRequest(
            shopId: Self.shop, customerId: first.customerId, phone: "+84 987 654 321", updateFields: ["phone"]
        ))
        #expect(customer.phone == "0987654321" && !customer.phoneCaptured)
        let later = try await h.customerSays("số mới của em 0388123456")
        #expect(later.capturedPhone.isEmpty)
        customer = try await h.owner.getCustomer(GetCustomerRequest(shopId: Self.shop, customerId: first.customerId))
        #expect(customer.phone == "0987654321")
        // Without update_fields, the fields set change and the others stay.
        customer = try await h.owner.updateCustomer(UpdateCustomerRequest(shopId: Self.shop, customerId: first.customerId, name: "Hoa Nguyễn", birthday: "1994-11-28"))
        #expect(customer.name == "Hoa Nguyễn" && customer.birthday == "1994-11-28" && customer.phone == "0987654321" && customer.address == address.capturedAddress)
        // A price or an order code is not a phone.
        let price = try await h.customerSays("áo 350.000đ, mã đơn DH0912345679", from: "fb-2")
        #expect(price.capturedPhone.isEmpty)
        try await h.close()
    }

    @Test func referralOfTheFirstMessageIsKeptReadOnly() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let first = try await h.owner.ingestMessage(IngestMessageRequest(
            shopId: Self.shop, pageId: "page-1", customerExternalId: "ad-1", customerName: "Lan", kind: .message, sender: .customer, text: "hi",
            referral: Referral(sourceLink: "https://fb.com/ads/1", channel: "messenger", campaign: "Black Friday")
        ))
        _ = try await h.owner.ingestMessage(IngestMessageRequest(
            shopId: Self.shop, pageId: "page-1", customerExternalId: "ad-1", kind: .message, sender: .customer, text: "again",
            referral: Referral(sourceLink: "https://other", channel: "x", campaign: "y")
        ))
        let customer = try await h.owner.getCustomer(GetCustomerRequest(shopId: Self.shop, customerId: first.customerId))
        #expect(customer.referral == Referral(sourceLink: "https://fb.com/ads/1", channel: "messenger", campaign: "Black Friday"))
        await expectStatus(.invalidArgument, naming: "referral") {
            _ = try await h.owner.updateCustomer(UpdateCustomerRequest(shopId: Self.shop, customerId: first.customerId, updateFields: ["referral"]))
        }
        try await h.close()
    }

    // MARK: R-PANEL-1

    @Test func conversationContextIsTheFiveAnswersReadTogether() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let said = try await h.customerSays("shop ơi, váy hoa còn size M không?")
        _ = try await h.customerSays("hỏi thăm thôi", from: "fb-other", name: "Trần Minh")
        let attached = try await h.tag(named: "Đã chốt đơn")
        _ = try await h.owner.attachTag(AttachTagRequest(shopId: Self.shop, conversationId: said.conversationId, tagId: attached.tagId, staffId: "agent-1"))
        // A hidden tag is not offered, as ListTags without include_hidden.
        let hidden = try await h.tag(named: "Quan tâm")
        _ = try await h.owner.updateTag(UpdateTagRequest(
            shopId: Self.shop, pageId: "page-1", tagId: hidden.tagId, folderId: hidden.folderId, name: hidden.name, color: hidden.color, visible: false
        ))
        for i in 0..<3 {
            _ = try await h.owner.addNote(AddNoteRequest(shopId: Self.shop, customerId: said.customerId, text: "ghi chú \(i)", staffId: "agent-1"))
        }
        _ = try await h.owner.defineCustomField(DefineCustomFieldRequest(shopId: Self.shop, key: "size", label: "Size", type: .select, options: ["S", "M"]))
        _ = try await h.owner.setCustomFieldValue(SetCustomFieldValueRequest(shopId: Self.shop, customerId: said.customerId, key: "size", value: "M"))

        let context = try await h.owner.getConversationContext(GetConversationContextRequest(
            shopId: Self.shop, conversationId: said.conversationId, notesLimit: 2
        ))
        #expect(context.conversation == (try await h.owner.getConversation(GetConversationRequest(shopId: Self.shop, conversationId: said.conversationId))))
        #expect(context.customer == (try await h.owner.getCustomer(GetCustomerRequest(shopId: Self.shop, customerId: said.customerId))))
        #expect(context.customer?.customFields == [CustomFieldValue(key: "size", value: "M", label: "Size", type: .select)])
        let tags = try await h.owner.listTags(ListTagsRequest(shopId: Self.shop, pageId: "page-1"))
        #expect(context.tags == tags)
        #expect(!(context.tags?.folders ?? []).flatMap(\.tags).contains { $0.tagId == hidden.tagId })
        let notes = try await h.owner.listNotes(ListNotesRequest(shopId: Self.shop, customerId: said.customerId, pageSize: 2)).notes
        #expect(context.notes == notes && notes.map(\.text) == ["ghi chú 2", "ghi chú 1"])
        let activity = try await h.owner.listActivity(ListActivityRequest(shopId: Self.shop, pageId: "page-1", conversationId: said.conversationId))
        #expect(context.activity == activity.entries && context.activity.map(\.tagId) == [attached.tagId])

        // Another shop's token does not see it; bad limits and ids are refused by name.
        await expectStatus(.notFound, naming: "conversation_id") {
            _ = try await h.client(shop: ServiceHarness.otherShop).getConversationContext(GetConversationContextRequest(
                shopId: ServiceHarness.otherShop, conversationId: said.conversationId
            ))
        }
        await expectStatus(.invalidArgument, naming: "notes_limit") {
            _ = try await h.owner.getConversationContext(GetConversationContextRequest(shopId: Self.shop, conversationId: said.conversationId, notesLimit: -1))
        }
        await expectStatus(.invalidArgument, naming: "activity_limit") {
            _ = try await h.owner.getConversationContext(GetConversationContextRequest(shopId: Self.shop, conversationId: said.conversationId, activityLimit: -1))
        }
        await expectStatus(.invalidArgument, naming: "conversation_id") {
            _ = try await h.owner.getConversationContext(GetConversationContextRequest(shopId: Self.shop))
        }
        try await h.close()
    }

    // MARK: R-CONV-6, R-CONV-7

    @Test func customFieldsCheckValuesByType() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let customer = try await h.customerSays("hi").customerId
        _ = try await h.owner.defineCustomField(DefineCustomFieldRequest(shopId: Self.shop, key: "size", label: "Size", type: .select, options: ["S", "M", "L"]))
        _ = try await h.owner.defineCustomField(DefineCustomFieldRequest(shopId: Self.shop, key: "height_cm", label: "Chiều cao", type: .number))
        _ = try await h.owner.defineCustomField(DefineCustomFieldRequest(shopId: Self.shop, key: "wedding", label: "Ngày cưới", type: .date))
        #expect(try await h.owner.listCustomFields(ListCustomFieldsRequest(shopId: Self.shop)).fields.map(\.key) == ["height_cm", "size", "wedding"])
        _ = try await h.owner.setCustomFieldValue(SetCustomFieldValueRequest(shopId: Self.shop, customerId: customer, key: "size", value: "M"))
        let updated = try await h.owner.setCustomFieldValue(SetCustomFieldValueRequest(shopId: Self.shop, customerId: customer, key: "height_cm", value: "158"))
        // R-CONV-6: each value with its field's label and type.
        #expect(updated.customFields == [
            CustomFieldValue(key: "height_cm", value: "158", label: "Chiều cao", type: .number), CustomFieldValue(key: "size", value: "M", label: "Size", type: .select),
        ])
        // The shop shows size first: the list and the customer's values follow.
        _ = try await h.owner.defineCustomField(DefineCustomFieldRequest(shopId: Self.shop, key: "size", label: "Cỡ", type: .select, options: ["S", "M", "L"], position: 0))
        _ = try await h.owner.defineCustomField(DefineCustomFieldRequest(shopId: Self.shop, key: "height_cm", label: "Chiều cao", type: .number, position: 5))
        _ = try await h.owner.defineCustomField(DefineCustomFieldRequest(shopId: Self.shop, key: "wedding", label: "Ngày cưới", type: .date, position: 9))
        #expect(try await h.owner.listCustomFields(ListCustomFieldsRequest(shopId: Self.shop)).fields.map(\.key) == ["size", "height_cm", "wedding"])
        let reordered = try await h.owner.getCustomer(GetCustomerRequest(shopId: Self.shop, customerId: customer))
        #expect(reordered.customFields.map(\.label) == ["Cỡ", "Chiều cao"])
        // Paged like every list.
        let first = try await h.owner.listCustomFields(ListCustomFieldsRequest(shopId: Self.shop, pageSize: 2))
        let rest = try await h.owner.listCustomFields(ListCustomFieldsRequest(shopId: Self.shop, pageSize: 2, pageToken: first.nextPageToken))
        #expect(first.fields.map(\.key) == ["size", "height_cm"] && rest.fields.map(\.key) == ["wedding"] && rest.nextPageToken.isEmpty)
        await expectStatus(.invalidArgument, naming: "page_token") {
            _ = try await h.owner.listCustomFields(ListCustomFieldsRequest(shopId: Self.shop, pageToken: "abc"))
        }
        for (key, value) in [("size", "XXL"), ("height_cm", "cao"), ("wedding", "2026-02-30")] {
            await expectStatus(.invalidArgument, naming: "value") {
                _ = try await h.owner.setCustomFieldValue(SetCustomFieldValueRequest(shopId: Self.shop, customerId: customer, key: key, value: value))
            }
        }
        await expectStatus(.notFound, naming: "key") {
            _ = try await h.owner.setCustomFieldValue(SetCustomFieldValueRequest(shopId: Self.shop, customerId: customer, key: "nope", value: "1"))
        }
        await expectStatus(.failedPrecondition, naming: "type") {
            _ = try await h.owner.defineCustomField(DefineCustomFieldRequest(shopId: Self.shop, key: "size", label: "Size", type: .text))
        }
        await expectStatus(.permissionDenied, naming: "owner or admins") {
            _ = try await h.client(staff: "agent-1", role: .agent).defineCustomField(DefineCustomFieldRequest(shopId: Self.shop, key: "x", label: "X", type: .text))
        }
        #expect(try await h.owner.getCustomer(GetCustomerRequest(shopId: Self.shop, customerId: customer)).customFields.count == 2)
        try await h.close()
    }

    @Test func notesListNewestFirstAndPage() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let customer = try await h.customerSays("hi").customerId
        var notes: [Note] = []
        for i in 0..<5 {
            h.advance(ms: 60_000)
            notes.append(try await h.owner.addNote(AddNoteRequest(shopId: Self.shop, customerId: customer, text: "ghi chú \(i)", staffId: "agent-\(i)")))
        }
        let page1 = try await h.owner.listNotes(ListNotesRequest(shopId: Self.shop, customerId: customer, pageSize: 3))
        #expect(page1.notes.map(\.text) == ["ghi chú 4", "ghi chú 3", "ghi chú 2"])
        #expect(page1.notes[0].staffId == "agent-4" && page1.notes[0].createdAtMs == h.now)
        let page2 = try await h.owner.listNotes(ListNotesRequest(shopId: Self.shop, customerId: customer, pageSize: 3, pageToken: page1.nextPageToken))
        #expect(page2.notes.map(\.text) == ["ghi chú 1", "ghi chú 0"])
        #expect(page2.nextPageToken.isEmpty)
        _ = try await h.owner.deleteNote(DeleteNoteRequest(shopId: Self.shop, customerId: customer, noteId: notes[4].noteId))
        #expect(try await h.owner.listNotes(ListNotesRequest(shopId: Self.shop, customerId: customer)).notes.count == 4)
        await expectStatus(.notFound, naming: "note_id") {
            _ = try await h.owner.deleteNote(DeleteNoteRequest(shopId: Self.shop, customerId: customer, noteId: notes[4].noteId))
        }
        try await h.close()
    }

    // MARK: R-ACT-1, R-ACT-2

    @Test func activityFiltersAndRetention() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let a = try await h.customerSays("a", from: "ca")
        let b = try await h.customerSays("b", from: "cb")
        let tag = try await h.tag(named: "Quan tâm").tagId
        _ = try await h.owner.attachTag(AttachTagRequest(shopId: Self.shop, conversationId: a.conversationId, tagId: tag, staffId: "agent-1"))
        _ = try await h.owner.detachTag(DetachTagRequest(shopId: Self.shop, conversationId: a.conversationId, tagId: tag, staffId: "agent-2"))
        _ = try await h.owner.attachTag(AttachTagRequest(shopId: Self.shop, conversationId: b.conversationId, tagId: tag, staffId: "agent-1"))
        _ = try await h.owner.blockCustomer(BlockCustomerRequest(shopId: Self.shop, customerId: b.customerId, staffId: "agent-3"))
        _ = try await h.owner.unblockCustomer(UnblockCustomerRequest(shopId: Self.shop, customerId: b.customerId, staffId: "agent-3"))

        func actions(_ configure: (inout ListActivityRequest) -> Void = { _ in }) async throws -> [ActivityEntry.Action] {
            var request = ListActivityRequest(shopId: Self.shop, pageId: "page-1")
            configure(&request)
            return try await h.owner.listActivity(request).entries.map(\.action)
        }
        #expect(try await actions() == [.customerUnblocked, .customerBlocked, .tagAttached, .tagDetached, .tagAttached])
        #expect(try await actions { $0.conversationId = a.conversationId } == [.tagDetached, .tagAttached])
        #expect(try await actions { $0.actions = [.customerBlocked, .customerUnblocked] } == [.customerUnblocked, .customerBlocked])
        let entry = try await h.owner.listActivity(ListActivityRequest(shopId: Self.shop, pageId: "page-1", actions: [.tagDetached])).entries[0]
        #expect(entry.staffId == "agent-2" && entry.tagName == "Quan tâm" && entry.atMs == h.now && entry.conversationId == a.conversationId)

        // 29 days on nothing goes; past 30 days the tag history goes and the block history stays.
        #expect(try await h.store.purgeExpiredActivity(nowMs: h.now + 29 * 86_400_000) == 0)
        #expect(try await h.store.purgeExpiredActivity(nowMs: h.now + 31 * 86_400_000) == 3)
        #expect(try await actions() == [.customerUnblocked, .customerBlocked])
        #expect(try await h.store.purgeExpiredActivity(nowMs: h.now + 3650 * 86_400_000) == 0)
        try await h.close()
    }

    // MARK: R-REP-1

    /// A scripted day on one page, figures worked out by hand:
    /// - c1 (message): customer 09:00, 09:02; an replies 09:05 (wait 5 min); customer 09:10; bot 09:11; an 09:20 (wait 10 min).
    /// - c2 (comment): customer 10:00; binh replies 10:03 (3 min); binh 10:04 (no wait).
    /// - c3 (message): customer 08:50 the day before... a wait from the previous day, answered by an at 09:00 today (24h 10min).
    /// Assignments: c1 auto to an; c2 manual to binh; c1 closed by an.
    @Test func staffStatsMatchAHandComputedDay() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let day = VietnamTime.day(year: 2026, month: 11, day: 25)
        func at(_ hour: Int, _ minute: Int, dayOffset: Int = 0) -> Int64 {
            VietnamTime.ms(year: 2026, month: 11, day: 25 + dayOffset, hour: hour, minute: minute)
        }
        let c3 = try await h.customerSays("hôm qua hỏi", from: "c3", at: at(8, 50, dayOffset: -1))
        try await h.staffReplies("trả lời c3", to: "c3", staff: "an", at: at(9, 0))
        let c1 = try await h.customerSays("1", from: "c1", at: at(9, 0))
        try await h.customerSays("2", from: "c1", at: at(9, 2))
        try await h.staffReplies("a", to: "c1", staff: "an", at: at(9, 5))
        try await h.customerSays("3", from: "c1", at: at(9, 10))
        _ = try await h.owner.ingestMessage(IngestMessageRequest(
            shopId: Self.shop, pageId: "page-1", customerExternalId: "c1", kind: .message, sender: .bot, text: "bot", sentAtMs: at(9, 11)
        ))
        try await h.staffReplies("b", to: "c1", staff: "an", at: at(9, 20))
        let c2 = try await h.customerSays("cmt", from: "c2", at: at(10, 0), kind: .comment)
        try await h.staffReplies("r1", to: "c2", staff: "binh", at: at(10, 3), kind: .comment)
        try await h.staffReplies("r2", to: "c2", staff: "binh", at: at(10, 4), kind: .comment)
        _ = try await h.owner.assignConversation(AssignConversationRequest(shopId: Self.shop, conversationId: c1.conversationId, staffId: "an", mode: .auto))
        _ = try await h.owner.assignConversation(AssignConversationRequest(shopId: Self.shop, conversationId: c2.conversationId, staffId: "binh", mode: .manual))
        _ = try await h.owner.closeConversation(CloseConversationRequest(shopId: Self.shop, conversationId: c1.conversationId, staffId: "an"))
        _ = c3

        let report = try await h.owner.getStaffConversationStats(GetStaffConversationStatsRequest(
            shopId: Self.shop, pageId: "page-1", fromMs: day.lowerBound, toMs: day.upperBound
        ))
        let an = try #require(report.staff.first { $0.staffId == "an" })
        let binh = try #require(report.staff.first { $0.staffId == "binh" })
        // an: waits of 24h10m (c3), 5m, 10m → average (87_000_000 + 300_000 + 600_000) / 3.
        #expect(an.avgResponseMs == (87_000_000 + 300_000 + 600_000) / 3)
        #expect(an.messagesReplied == 3 && an.commentsReplied == 0 && an.customersReplied == 2)
        #expect(an.assignedAuto == 1 && an.assignedManual == 0 && an.closed == 1)
        #expect(binh.avgResponseMs == 180_000)
        #expect(binh.commentsReplied == 2 && binh.messagesReplied == 0 && binh.customersReplied == 1)
        #expect(binh.assignedManual == 1 && binh.closed == 0)
        try await h.close()
    }

    // MARK: Scope and input

    @Test func anotherShopSeesNothing() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let mine = try await h.customerSays("riêng tư 0912345678")
        let intruder = h.client(shop: ServiceHarness.otherShop, staff: "x", role: .owner)
        // Naming the other shop in the request: the token does not allow it.
        await expectStatus(.permissionDenied, naming: "shop") {
            _ = try await intruder.getConversation(GetConversationRequest(shopId: Self.shop, conversationId: mine.conversationId))
        }
        // Naming its own shop: the ids of another shop do not exist there.
        await expectStatus(.notFound, naming: "conversation_id") {
            _ = try await intruder.getConversation(GetConversationRequest(shopId: ServiceHarness.otherShop, conversationId: mine.conversationId))
        }
        await expectStatus(.notFound, naming: "customer_id") {
            _ = try await intruder.getCustomer(GetCustomerRequest(shopId: ServiceHarness.otherShop, customerId: mine.customerId))
        }
        await expectStatus(.notFound, naming: "page_id") {
            _ = try await intruder.listConversations(ListConversationsRequest(shopId: ServiceHarness.otherShop, pageId: "page-1"))
        }
        // The same page id connected by another shop is a different page.
        _ = try await intruder.connectPage(ConnectPageRequest(shopId: ServiceHarness.otherShop, pageId: "page-1", name: "B", platform: .facebook))
        #expect(try await intruder.listConversations(ListConversationsRequest(shopId: ServiceHarness.otherShop, pageId: "page-1")).conversations.isEmpty)
        // An agent acts as themselves.
        await expectStatus(.permissionDenied, naming: "staff_id") {
            _ = try await h.client(staff: "agent-1", role: .agent).addNote(AddNoteRequest(shopId: Self.shop, customerId: mine.customerId, text: "x", staffId: "agent-2"))
        }
        try await h.close()
    }

    @Test func badInputIsRefusedNamingTheFieldAndWritesNothing() async throws {
        let h = try await ServiceHarness.make()
        try await h.connect()
        let c = try await h.customerSays("hi")
        let tag = try await h.tag(named: "Spam")
        let before = (try await h.count("tags"), try await h.count("messages"), try await h.count("notes"), try await h.count("customers"))
        let o = h.owner
        let s = Self.shop
        let long = String(repeating: "x", count: 20_001)
        let cases: [(RPCError.Code, String, () async throws -> Void)] = [
            (.invalidArgument, "page_id", { _ = try await o.connectPage(ConnectPageRequest(shopId: s, pageId: "", name: "x", platform: .facebook)) }),
            (.invalidArgument, "name", { _ = try await o.connectPage(ConnectPageRequest(shopId: s, pageId: "p9", name: "  ", platform: .facebook)) }),
            (.invalidArgument, "platform", { _ = try await o.connectPage(ConnectPageRequest(shopId: s, pageId: "p9", name: "x")) }),
            (.invalidArgument, "name", { _ = try await o.createTag(CreateTagRequest(shopId: s, pageId: "page-1", folderId: tag.folderId, name: "", color: "#fff")) }),
            (.invalidArgument, "name", { _ = try await o.createTag(CreateTagRequest(shopId: s, pageId: "page-1", folderId: tag.folderId, name: String(repeating: "a", count: 65))) }),
            (.invalidArgument, "color", { _ = try await o.createTag(CreateTagRequest(shopId: s, pageId: "page-1", folderId: tag.folderId, name: "Mới", color: "red")) }),
            (.invalidArgument, "color", { _ = try await o.createTag(CreateTagRequest(shopId: s, pageId: "page-1", folderId: tag.folderId, name: "Mới", color: "#12345g")) }),
            (.notFound, "folder_id", { _ = try await o.createTag(CreateTagRequest(shopId: s, pageId: "page-1", folderId: "fld_nope", name: "Mới")) }),
            (.notFound, "page_id", { _ = try await o.createTag(CreateTagRequest(shopId: s, pageId: "page-x", folderId: tag.folderId, name: "Mới")) }),
            (.notFound, "tag_id", { _ = try await o.attachTag(AttachTagRequest(shopId: s, conversationId: c.conversationId, tagId: "tag_nope", staffId: "a")) }),
            (.notFound, "conversation_id", { _ = try await o.attachTag(AttachTagRequest(shopId: s, conversationId: "cv_nope", tagId: tag.tagId, staffId: "a")) }),
            (.invalidArgument, "text", { _ = try await o.ingestMessage(IngestMessageRequest(shopId: s, pageId: "page-1", customerExternalId: "u", kind: .message, sender: .customer, text: long)) }),
            (.invalidArgument, "kind", { _ = try await o.ingestMessage(IngestMessageRequest(shopId: s, pageId: "page-1", customerExternalId: "u", sender: .customer, text: "x")) }),
            (.invalidArgument, "staff_id", { _ = try await o.ingestMessage(IngestMessageRequest(shopId: s, pageId: "page-1", customerExternalId: "u", kind: .message, sender: .staff, text: "x")) }),
            (.invalidArgument, "customer_external_id", { _ = try await o.ingestMessage(IngestMessageRequest(shopId: s, pageId: "page-1", kind: .message, sender: .customer, text: "x")) }),
            (.invalidArgument, "sent_at_ms", { _ = try await o.ingestMessage(IngestMessageRequest(shopId: s, pageId: "page-1", customerExternalId: "u", kind: .message, sender: .customer, text: "x", sentAtMs: -5)) }),
            (.invalidArgument, "post_id", { _ = try await o.ingestMessage(IngestMessageRequest(shopId: s, pageId: "page-1", customerExternalId: "u", kind: .comment, sender: .customer, text: "x")) }),
            (.notFound, "page_id", { _ = try await o.ingestMessage(IngestMessageRequest(shopId: s, pageId: "nope", customerExternalId: "u", kind: .message, sender: .customer, text: "x")) }),
            (.invalidArgument, "birthday", { _ = try await o.updateCustomer(UpdateCustomerRequest(shopId: s, customerId: c.customerId, birthday: "1990-13-01", updateFields: ["birthday"])) }),
            (.invalidArgument, "birthday", { _ = try await o.updateCustomer(UpdateCustomerRequest(shopId: s, customerId: c.customerId, birthday: "2099-01-01", updateFields: ["birthday"])) }),
            (.invalidArgument, "phone", { _ = try await o.updateCustomer(UpdateCustomerRequest(shopId: s, customerId: c.customerId, phone: "12345", updateFields: ["phone"])) }),
            (.invalidArgument, "update_fields", { _ = try await o.updateCustomer(UpdateCustomerRequest(shopId: s, customerId: c.customerId, name: "x", updateFields: ["nickname"])) }),
            (.invalidArgument, "update_fields", { _ = try await o.updateCustomer(UpdateCustomerRequest(shopId: s, customerId: c.customerId)) }),
            (.invalidArgument, "text", { _ = try await o.addNote(AddNoteRequest(shopId: s, customerId: c.customerId, text: " ", staffId: "a")) }),
            (.invalidArgument, "text", { _ = try await o.addNote(AddNoteRequest(shopId: s, customerId: c.customerId, text: String(repeating: "n", count: 5_001), staffId: "a")) }),
            (.notFound, "customer_id", { _ = try await o.addNote(AddNoteRequest(shopId: s, customerId: "cu_nope", text: "x", staffId: "a")) }),
            (.invalidArgument, "key", { _ = try await o.defineCustomField(DefineCustomFieldRequest(shopId: s, key: "Bad Key", label: "x", type: .text)) }),
            (.invalidArgument, "options", { _ = try await o.defineCustomField(DefineCustomFieldRequest(shopId: s, key: "size", label: "x", type: .select)) }),
            (.invalidArgument, "type", { _ = try await o.defineCustomField(DefineCustomFieldRequest(shopId: s, key: "size", label: "x")) }),
            (.invalidArgument, "page_size", { _ = try await o.listNotes(ListNotesRequest(shopId: s, customerId: c.customerId, pageSize: -1)) }),
            (.invalidArgument, "to_ms", { _ = try await o.getStaffConversationStats(GetStaffConversationStatsRequest(shopId: s, pageId: "page-1", fromMs: 10, toMs: 5)) }),
            (.invalidArgument, "actions[0]", { _ = try await o.listActivity(ListActivityRequest(shopId: s, pageId: "page-1", actions: [.actionUnspecified])) }),
            (.invalidArgument, "mode", { _ = try await o.assignConversation(AssignConversationRequest(shopId: s, conversationId: c.conversationId, staffId: "a")) }),
            (.failedPrecondition, "staff_id", { _ = try await o.assignConversation(AssignConversationRequest(shopId: s, conversationId: c.conversationId, mode: .auto)) }),
            (.failedPrecondition, "not assigned", { _ = try await o.closeConversation(CloseConversationRequest(shopId: s, conversationId: c.conversationId, staffId: "a")) }),
        ]
        for (code, field, call) in cases {
            await expectStatus(code, naming: field, call)
        }
        let after = (try await h.count("tags"), try await h.count("messages"), try await h.count("notes"), try await h.count("customers"))
        #expect(after == before)
        #expect(try await h.count("custom_fields") == 0)
        #expect(try await h.count("pages") == 1)
        try await h.close()
    }
}
