import ArgumentParser
import ChatMeshAPI
import Foundation
import MeshHTTP2
import MeshRPC

/// A look at a page's conversations from the terminal: what a staff member's
/// list would show, optionally filtered by tag names (R-TAG-5).
struct ListConversationsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conversations",
        abstract: "List a page's conversations, newest first, with their tags."
    )

    @Option(help: "The shop.")
    var shop: String = "demo-shop"

    @Option(help: "The page.")
    var page: String = "demo-page"

    @Option(help: "Only conversations carrying any of these tag names (repeatable).")
    var tag: [String] = []

    @Option(help: "conversation-svc address (default: CHATMESH_CONVERSATION_ADDRS or \(MeshEnvironment.defaultAddress(of: "conversation"))).")
    var conversation: String?

    func run() async throws {
        let env = MeshEnvironment()
        let token = TokenSigner(key: env.authKey).mint(shopId: shop, staffId: "cli", role: .agent, validFor: 300)
        let channel = try HTTP2Channel(addresses: conversation ?? env.addresses(of: "conversation"))
        let client = ConversationService.Client(channel: channel, defaultOptions: .bearer(token, timeout: .seconds(10)))
        do {
            let tags = try await client.listTags(ListTagsRequest(shopId: shop, pageId: page, includeHidden: true)).folders.flatMap(\.tags)
            var ids: [String] = []
            for name in tag {
                guard let found = tags.first(where: { $0.name.lowercased() == name.lowercased() }) else {
                    throw ValidationError("page \(page) has no tag named \(name)")
                }
                ids.append(found.tagId)
            }
            let list = try await client.listConversations(ListConversationsRequest(shopId: shop, pageId: page, tagIdsAny: ids, pageSize: 50))
            for c in list.conversations {
                let names = c.tags.map(\.name).joined(separator: ", ")
                print("\(c.conversationId)  \(c.status.protoName.padding(toLength: 6, withPad: " ", startingAt: 0))  \(c.assignedStaffId.isEmpty ? "-" : c.assignedStaffId)  \(c.customerName): \(c.lastMessageText)\(names.isEmpty ? "" : "  [\(names)]")")
            }
            if list.conversations.isEmpty { print("no conversations") }
        } catch let error as RPCError {
            await channel.close()
            throw ValidationError("\(error.code.name): \(error.message)")
        }
        await channel.close()
    }
}
