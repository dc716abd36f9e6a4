import ArgumentParser
import ChatMeshAPI
import Foundation
import MeshHTTP2
import MeshRPC

/// Demo data for a local mesh, written through the services' own RPCs (so
/// every rule applies to it): a Facebook page of a small fashion shop, its
/// staff online, a morning of customer messages with phones and addresses to
/// capture, replies, tags, a note and a custom field.
struct Seed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fill a running mesh with a demo shop (idempotent: a page that exists is left as it is)."
    )

    @Option(help: "The demo shop's id.")
    var shop: String = "demo-shop"

    @Option(help: "conversation-svc address (default: CHATMESH_CONVERSATION_ADDRS or 127.0.0.1:50051).")
    var conversation: String?

    struct Chat {
        let psid: String
        let name: String
        let lines: [(customer: Bool, text: String)]
        let tags: [String]
    }

    static let chats: [Chat] = [
        Chat(psid: "psid-1001", name: "Nguyễn Thị Hoa", lines: [
            (true, "Shop ơi áo sơ mi trắng còn size M không ạ?"),
            (false, "Dạ còn chị ơi, chị lấy mấy cái ạ?"),
            (true, "Em lấy 2 cái, giao về 12 Lý Tự Trọng, P. Bến Nghé, Q.1, TP.HCM, sđt 0912 345 678 nha"),
        ], tags: ["Quan tâm", "Chờ chuyển khoản"]),
        Chat(psid: "psid-1002", name: "Trần Văn Đức", lines: [
            (true, "Giá váy maxi hoa nhí bao nhiêu vậy shop"),
            (false, "Dạ 350.000đ anh ạ"),
            (true, "Hơi cao, có giảm không shop?"),
        ], tags: ["Giá cao", "Thích ưu đãi"]),
        Chat(psid: "psid-1003", name: "Lê Thu Trang", lines: [
            (true, "Chân váy đen hết hàng rồi hả shop? Có thì báo em qua số +84 903 111 222"),
        ], tags: ["Hết hàng"]),
        Chat(psid: "psid-1004", name: "Phạm Minh Anh", lines: [
            (true, "Mình đặt 10 cái áo thun để bán lại được giá sỉ không?"),
            (false, "Dạ từ 10 cái shop giảm 15% ạ"),
            (true, "Ok chốt nha, ship gấp giúp mình về 88 Nguyễn Trãi, Phường 3, Quận 5, TP.HCM"),
        ], tags: ["Mua sỉ", "Giao gấp", "Đã chốt đơn"]),
        Chat(psid: "psid-1005", name: "Võ Ngọc Bích", lines: [
            (true, "Lần đầu mua ở shop, có đổi size được không ạ"),
        ], tags: ["Mua lần đầu"]),
    ]

    func run() async throws {
        let env = MeshEnvironment()
        let address = conversation ?? env.addresses(of: "conversation")
        let token = TokenSigner(key: env.authKey).mint(shopId: shop, staffId: "owner-lan", role: .owner, validFor: 600)
        let channel = try HTTP2Channel(addresses: address)
        let client = ConversationService.Client(channel: channel, defaultOptions: .bearer(token, timeout: .seconds(10)))
        do {
            try await seed(client)
        } catch {
            await channel.close()
            throw error
        }
        await channel.close()
    }

    func seed(_ client: ConversationService.Client) async throws {

        let page = try await client.connectPage(ConnectPageRequest(shopId: shop, pageId: "demo-page", name: "Thời trang Hoa Mai", platform: .facebook))
        guard page.firstConnect else {
            print("\(shop) already has demo-page: nothing to seed")
            return
        }
        for staff in ["agent-an", "agent-binh"] {
            _ = try await client.setStaffPresence(SetStaffPresenceRequest(shopId: shop, pageId: "demo-page", staffId: staff, online: true))
        }
        let tags = try await client.listTags(ListTagsRequest(shopId: shop, pageId: "demo-page", includeHidden: true)).folders.flatMap(\.tags)
        let start = Int64(Date().timeIntervalSince1970 * 1000) - 3 * 3_600_000
        var conversations = 0
        for (c, chat) in Self.chats.enumerated() {
            var conversationId = ""
            var customerId = ""
            var assigned = ""
            for (l, line) in chat.lines.enumerated() {
                let at = start + Int64(c * 1_800_000 + l * 240_000)
                let answer = try await client.ingestMessage(IngestMessageRequest(
                    shopId: shop, pageId: "demo-page", customerExternalId: chat.psid, customerName: line.customer ? chat.name : "",
                    kind: .message, sender: line.customer ? .customer : .staff, staffId: line.customer ? "" : (assigned.isEmpty ? "agent-an" : assigned),
                    text: line.text, sentAtMs: at
                ))
                conversationId = answer.conversationId
                customerId = answer.customerId
                if !answer.assignedStaffId.isEmpty { assigned = answer.assignedStaffId }
            }
            for name in chat.tags {
                guard let tag = tags.first(where: { $0.name == name }) else { continue }
                _ = try await client.attachTag(AttachTagRequest(shopId: shop, conversationId: conversationId, tagId: tag.tagId, staffId: assigned))
            }
            if c == 0 {
                _ = try await client.addNote(AddNoteRequest(shopId: shop, customerId: customerId, text: "Khách quen, thích màu trắng, hay mua vào cuối tuần", staffId: assigned))
            }
            conversations += 1
        }
        _ = try await client.defineCustomField(DefineCustomFieldRequest(shopId: shop, key: "size", label: "Size thường mặc", type: .select, options: ["S", "M", "L", "XL"]))
        print("seeded \(shop): page demo-page, \(conversations) conversations, tags, a note and a custom field")
    }
}
