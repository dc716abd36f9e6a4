import ArgumentParser
import ChatMeshAPI
import Foundation
import MeshHTTP2
import MeshRPC

/// R-CONV-9 from the terminal: a staff reply sent to a conversation's customer
/// through the page, then followed until the platform took it or refused it.
struct ReplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reply",
        abstract: "Send a staff reply to a conversation (inbox, or under a comment) and show how its delivery ends.",
        discussion: """
            The reply is recorded PENDING and delivered by messaging-svc through the platform; this waits up to \
            --wait seconds for SENT or FAILED. --retry MESSAGE_ID sends a FAILED reply again.
            """
    )

    @Argument(help: "The conversation (chatmesh conversations lists them); with --retry, nothing.")
    var conversationId: String?

    @Argument(help: "What to send.")
    var text: String?

    @Option(help: "The shop.")
    var shop: String = "demo-shop"

    @Option(help: "Who sends it.")
    var staff: String = "cli"

    @Option(help: "Answer this comment (its message id) instead of writing to the inbox.")
    var comment: String?

    @Flag(help: "With --comment: a private reply to the commenter's inbox instead of a public one.")
    var `private` = false

    @Option(help: "Send this FAILED reply again.")
    var retry: String?

    @Option(help: "Seconds to wait for the delivery's outcome (0: do not wait).")
    var wait: Double = 10

    @Option(help: "conversation-svc address (default: CHATMESH_CONVERSATION_ADDRS or \(MeshEnvironment.defaultAddress(of: "conversation"))).")
    var conversation: String?

    func validate() throws {
        if retry == nil && (conversationId == nil || text == nil) { throw ValidationError("give a conversation id and the text, or --retry MESSAGE_ID") }
        if `private` && comment == nil { throw ValidationError("--private answers a comment: give --comment MESSAGE_ID") }
    }

    func run() async throws {
        let env = MeshEnvironment()
        let token = TokenSigner(key: env.authKey).mint(shopId: shop, staffId: staff, role: .agent, validFor: 300)
        let channel = try HTTP2Channel(addresses: conversation ?? env.addresses(of: "conversation"))
        let client = ConversationService.Client(channel: channel, defaultOptions: .bearer(token, timeout: .seconds(10)))
        let message: ChatMessage
        do {
            message = try await follow(client)
        } catch let error as RPCError {
            await channel.close()
            throw ValidationError("\(error.code.name): \(error.message)")
        }
        await channel.close()
        if message.delivery == .failed { throw ExitCode(3) }
    }

    /// Sends (or retries) the reply and prints each delivery state it reaches within --wait.
    func follow(_ client: ConversationService.Client) async throws -> ChatMessage {
        var message: ChatMessage
        if let retry {
            message = try await client.retryReply(RetryReplyRequest(shopId: shop, messageId: retry, staffId: staff))
        } else {
            let target: ChatMessage.Target = comment == nil ? .inbox : (`private` ? .commentPrivate : .commentPublic)
            message = try await client.sendReply(SendReplyRequest(
                shopId: shop, conversationId: conversationId!, staffId: staff, text: text!, target: target, commentMessageId: comment ?? "",
                idempotencyKey: "cli-" + UUID().uuidString.lowercased()
            ))
        }
        print("\(message.messageId)  \(Self.deliveryText(message))")
        let deadline = Date().addingTimeInterval(wait)
        while message.delivery == .pending && Date() < deadline {
            try await Task.sleep(for: .milliseconds(200))
            let context = try await client.getConversationContext(GetConversationContextRequest(
                shopId: shop, conversationId: message.conversationId, messagesLimit: 100, messagesOnly: true
            ))
            if let now = context.messages.first(where: { $0.messageId == message.messageId }), now.delivery != message.delivery {
                message = now
                print("\(message.messageId)  \(Self.deliveryText(message))")
            }
        }
        return message
    }

    /// A reply's delivery as staff read it; empty for messages that are not replies.
    static func deliveryText(_ message: ChatMessage) -> String {
        switch message.delivery {
        case .pending: "PENDING"
        case .sent: "SENT" + (message.platformMessageId.isEmpty ? "" : " (\(message.platformMessageId))")
        case .failed: "FAILED: " + message.failureReason
        default: ""
        }
    }
}
