import ArgumentParser
import ChatMeshAPI
import Foundation
import MeshHTTP2
import MeshRPC

/// `chatmesh inbox`: a page's conversation list as a staff member sees it, newest
/// first; with --watch it stays and follows WatchInbox (R-PANEL-4), reloading the
/// list when told to (RESET) and resuming with its last token when the mesh restarts.
struct InboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inbox",
        abstract: "Show a page's conversation list (one staff member's with --staff); --watch keeps it live."
    )

    @Option(help: "The shop.")
    var shop: String = "demo-shop"

    @Option(help: "The page.")
    var page: String = "demo-page"

    @Option(help: "Only the conversations assigned to this staff member.")
    var staff: String = ""

    @Flag(help: "Stay and redraw the list as conversations change. With --json, one line per change.")
    var watch = false

    @Flag(help: "Print JSON for scripts.")
    var json = false

    @Option(help: "conversation-svc address (default: CHATMESH_CONVERSATION_ADDRS or \(MeshEnvironment.defaultAddress(of: "conversation"))).")
    var conversation: String?

    func run() async throws {
        let env = MeshEnvironment()
        let signer = TokenSigner(key: env.authKey)
        let channel = try HTTP2Channel(addresses: conversation ?? env.addresses(of: "conversation"))
        do {
            try await follow(channel, signer: signer)
        } catch {
            await channel.close()
            throw error
        }
        await channel.close()
    }

    func follow(_ channel: HTTP2Channel, signer: TokenSigner) async throws {
        var rows: [String: Conversation] = [:]
        var token = ""
        var backoff = Duration.milliseconds(200)
        while true {
            let client = ConversationService.Client(channel: channel, defaultOptions: .bearer(signer.mint(shopId: shop, staffId: "cli", role: .agent, validFor: 3600)))
            do {
                if token.isEmpty { rows = try await list(client) }
                if !watch {
                    show(rows, event: nil)
                    return
                }
                try await client.watchInbox(WatchInboxRequest(shopId: shop, pageId: page, staffId: staff, resumeToken: token)) { events in
                    for try await event in events {
                        switch event.kind {
                        case .reset: rows = try await list(client)
                        case .removed: rows[event.conversation?.conversationId ?? ""] = nil
                        case .added, .updated: if let row = event.conversation { rows[row.conversationId] = row }
                        default: break
                        }
                        token = event.resumeToken
                        backoff = .milliseconds(200)
                        show(rows, event: event)
                    }
                }
            } catch let error as RPCError where [.invalidArgument, .notFound, .permissionDenied, .unauthenticated].contains(error.code) {
                throw ValidationError("\(error.code.name): \(error.message)")
            } catch {
                guard watch else { throw error }
                FileHandle.standardError.write(Data("watch interrupted (\(error)); resuming\n".utf8))
            }
            try await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    /// The newest 100 rows of the list.
    func list(_ client: ConversationService.Client) async throws -> [String: Conversation] {
        let listed = try await client.listConversations(ListConversationsRequest(shopId: shop, pageId: page, assignedStaffId: staff, pageSize: 100))
        return Dictionary(listed.conversations.map { ($0.conversationId, $0) }, uniquingKeysWith: { a, _ in a })
    }

    func show(_ rows: [String: Conversation], event: InboxEvent?) {
        let ordered = rows.values.sorted { ($0.lastMessageAtMs, $0.conversationId) > ($1.lastMessageAtMs, $1.conversationId) }
        let text: String
        if json {
            var object: [String: Any] = ["conversations": ordered.map {
                ["conversation_id": $0.conversationId, "customer_name": $0.customerName, "last_message_text": $0.lastMessageText,
                 "unread_count": $0.unreadCount, "assigned_staff_id": $0.assignedStaffId, "tags": $0.tags.map(\.name)] as [String: Any]
            }]
            if let event { object["event"] = ["kind": event.kind.protoName, "conversation_id": event.conversation?.conversationId ?? ""] }
            text = String(decoding: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data(), as: UTF8.self)
        } else {
            let printer = Printer()
            let table = Printer.table(ordered.prefix(50).map { c in
                [c.unreadCount > 0 ? "(\(c.unreadCount))" : "", c.customerName, c.assignedStaffId.isEmpty ? "-" : c.assignedStaffId,
                 Printer.date(c.lastMessageAtMs), c.lastMessageText + (c.tags.isEmpty ? "" : "  [" + c.tags.map(\.name).joined(separator: ", ") + "]")]
            }, rightAligned: [0])
            text = (watch ? (printer.colour ? "\u{1B}[2J\u{1B}[H" : "\n") : "") + printer.heading("Hộp thư \(page)") + "\n" + (ordered.isEmpty ? "  (trống)" : table)
        }
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }
}
