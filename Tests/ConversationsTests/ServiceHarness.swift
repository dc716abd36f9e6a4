import ChatMeshAPI
@testable import Conversations
import Foundation
import MeshRPC
import MeshStore
import MeshTestSupport
import SQLKit
import Synchronization
import VietnamCommerce

/// A conversation-svc as the router sees it: real handler, real SQLite file,
/// real token checks, a clock the test moves; called through typed clients.
final class ServiceHarness: Sendable {
    static let shop = "shop-a"
    static let otherShop = "shop-b"
    static let key = "conversation-tests-key"

    let database: any SQLStore
    let store: SQLConversationStore
    let router: RPCRouter
    private let clock: TestClock

    /// 2026-11-25 09:00 Vietnam time.
    static let start = VietnamTime.ms(year: 2026, month: 11, day: 25, hour: 9)

    static func make() async throws -> ServiceHarness {
        let database = try await TestDatabase.open("conversation")
        return try await ServiceHarness(database: database)
    }

    private init(database: any SQLStore) async throws {
        self.database = database
        self.store = try await SQLConversationStore.open(database)
        let clock = TestClock(Self.start)
        self.clock = clock
        let handler = ConversationServiceHandler(store: store, now: { clock.now })
        self.router = RPCRouter(services: [handler], verifier: TokenVerifier(key: Self.key))
    }

    var now: Int64 { clock.now }

    func advance(ms: Int64) {
        clock.advance(ms: ms)
    }

    func client(shop: String = ServiceHarness.shop, staff: String = "owner-1", role: Role = .owner) -> ConversationService.Client {
        let token = TokenSigner(key: Self.key).mint(shopId: shop, staffId: staff, role: role, validFor: 3600, now: Date())
        return ConversationService.Client(channel: InProcessChannel(router: router), defaultOptions: .bearer(token))
    }

    var owner: ConversationService.Client { client() }

    func close() async throws {
        try await database.close()
    }

    // Shortcuts for the setup most tests share.

    @discardableResult
    func connect(_ page: String = "page-1", sync: Bool = false) async throws -> Page {
        try await owner.connectPage(ConnectPageRequest(shopId: Self.shop, pageId: page, name: "Shop thời trang", platform: .facebook, facebookLabelSync: sync))
    }

    @discardableResult
    func customerSays(
        _ text: String, from customer: String = "fb-user-1", name: String = "Nguyễn Thị Hoa", page: String = "page-1", at: Int64? = nil,
        kind: ChatMessage.Kind = .message
    ) async throws -> IngestMessageResponse {
        try await owner.ingestMessage(IngestMessageRequest(
            shopId: Self.shop, pageId: page, customerExternalId: customer, customerName: name, kind: kind, sender: .customer,
            text: text, postId: kind == .comment ? "post-1" : "", sentAtMs: at ?? now
        ))
    }

    @discardableResult
    func staffReplies(
        _ text: String, to customer: String = "fb-user-1", staff: String = "agent-1", page: String = "page-1", at: Int64? = nil,
        kind: ChatMessage.Kind = .message
    ) async throws -> IngestMessageResponse {
        try await owner.ingestMessage(IngestMessageRequest(
            shopId: Self.shop, pageId: page, customerExternalId: customer, kind: kind, sender: .staff, staffId: staff,
            text: text, postId: kind == .comment ? "post-1" : "", sentAtMs: at ?? now
        ))
    }

    func tags(_ page: String = "page-1") async throws -> [Tag] {
        try await owner.listTags(ListTagsRequest(shopId: Self.shop, pageId: page, includeHidden: true)).folders.flatMap(\.tags)
    }

    func tag(named name: String, page: String = "page-1") async throws -> Tag {
        guard let tag = try await tags(page).first(where: { $0.name == name }) else { throw RPCError.notFound(name) }
        return tag
    }

    /// Makes the page 51 tags and attaches the first 50 (R-TAG-4's limit) to `conversation`; returns all 51.
    func attachFiftyTags(to conversation: String) async throws -> [Tag] {
        let folder = try await tags()[0].folderId
        for i in 0..<32 {
            _ = try await owner.createTag(CreateTagRequest(shopId: Self.shop, pageId: "page-1", folderId: folder, name: "Nhãn \(i)", color: "", visible: true))
        }
        let all = try await tags()
        for tag in all.prefix(50) {
            _ = try await owner.attachTag(AttachTagRequest(shopId: Self.shop, conversationId: conversation, tagId: tag.tagId, staffId: "agent-1"))
        }
        return all
    }

    func count(_ table: String) async throws -> Int {
        try await database.read { db in
            try await db.raw("SELECT COUNT(*) AS n FROM \(unsafeRaw: table)").first()!.decode(column: "n", as: Int.self)
        }
    }
}
