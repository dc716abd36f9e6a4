import ChatMeshAPI
import Foundation
import MeshRPC
import Messaging
@testable import MessagingDelivery
import NIOCore
import MeshTestSupport
import Testing

/// R-CONV-9: each reply adapter against a local server speaking its platform's request
/// and error shapes: success, each documented refusal, a rate limit with its retry time,
/// a time-out, and a page with no token (nothing is sent).
@Suite struct PlatformReplyAdapterTests {
    static let tokens = PageTokens(["shop-a/page-1": "EAAB-page-token"])

    static func reply(_ target: ChatMessage.Target = .inbox, platform: Page.Platform = .facebook, page: String = "page-1", humanAgent: Bool = false) -> ReplyDelivery.Reply {
        var reply = ReplyDelivery.Reply(DeliverReplyRequest(
            shopId: "shop-a", deliveryKey: "msg_1#1", pageId: page, platform: platform, target: target, recipient: "24681357", commentId: "111_222",
            text: "Dạ còn size M chị ơi"
        ))
        reply.humanAgent = humanAgent
        return reply
    }

    static func graphError(_ code: Int, subcode: Int? = nil, _ message: String = "x") -> String {
        #"{"error":{"message":"\#(message)","type":"OAuthException","code":\#(code)\#(subcode.map { #","error_subcode":\#($0)"# } ?? "")}}"#
    }

    @Test func messengerInboxHumanAgentAndPrivateReplies() async throws {
        let server = try await ScriptedHTTPServer.start()
        let adapter = MessengerReplyAdapter(PlatformConnection(endpoint: server.url, tokens: Self.tokens, timeout: .seconds(10)))
        let impatient = MessengerReplyAdapter(PlatformConnection(endpoint: server.url, tokens: Self.tokens, timeout: .milliseconds(500)))
        server.json(200, #"{"recipient_id":"24681357","message_id":"m_AAA"}"#)
        server.json(200, #"{"recipient_id":"24681357","message_id":"m_BBB"}"#)
        server.json(200, #"{"recipient_id":"24681357","message_id":"m_CCC"}"#)
        server.json(400, Self.graphError(10, subcode: 2018278, "Message sent outside of allowed window"))
        server.json(400, Self.graphError(551, "This person isn't available right now"))
        server.json(400, Self.graphError(190, "Error validating access token: Session has expired"))
        server.json(400, Self.graphError(613, "Calls to this api have exceeded the rate limit"), headers: [("Retry-After", "120")])
        server.json(400, Self.graphError(10900, "Activity already replied to"))
        server.answer(.silence)

        #expect(await adapter.send(Self.reply()) == .sent(platformMessageId: "m_AAA"))
        #expect(await adapter.send(Self.reply(humanAgent: true)) == .sent(platformMessageId: "m_BBB"))
        #expect(await adapter.send(Self.reply(.commentPrivate)) == .sent(platformMessageId: "m_CCC"))
        let sent = server.requests
        #expect(sent[0].method == "POST" && sent[0].uri == "/me/messages?access_token=EAAB-page-token")
        #expect(sent[0].json["messaging_type"] as? String == "RESPONSE" && sent[0].json["tag"] == nil)
        #expect(sent[0].json["recipient"] as? [String: String] == ["id": "24681357"])
        #expect((sent[0].json["message"] as? [String: String])?["text"] == "Dạ còn size M chị ơi")
        #expect((sent[0].json["message"] as? [String: String])?["metadata"] == "msg_1#1")
        #expect(sent[1].json["messaging_type"] as? String == "MESSAGE_TAG" && sent[1].json["tag"] as? String == "HUMAN_AGENT")
        #expect(sent[2].json["recipient"] as? [String: String] == ["comment_id": "111_222"])

        guard case .refused(let window) = await adapter.send(Self.reply()), case .refused(let blocked) = await adapter.send(Self.reply()),
              case .refused(let token) = await adapter.send(Self.reply()) else {
            Issue.record("window, unavailable person and expired token are refusals")
            return
        }
        #expect(window.hasPrefix("window closed") && blocked.contains("blocked the page") && token.contains("access token has expired"))
        #expect(await adapter.send(Self.reply()) == .temporary(reason: "rate limited: Messenger is limiting the page's sends for now (Messenger: Calls to this api have exceeded the rate limit)", afterMs: 120_000))
        #expect(await adapter.send(Self.reply(.commentPrivate)) == .alreadyReplied)
        guard case .temporary(let timeout, 0) = await impatient.send(Self.reply()) else { Issue.record("silence is temporary"); return }
        #expect(timeout.contains("could not be reached"))

        // A page without a token: refused before anything is sent.
        let before = server.requests.count
        guard case .refused(let missing) = await adapter.send(Self.reply(page: "page-2")) else { Issue.record("no token"); return }
        #expect(missing.contains("CHATMESH_PAGE_TOKENS_FILE") && !missing.contains("EAAB") && server.requests.count == before)
        try await server.stop()
    }

    @Test func facebookPublicCommentReplies() async throws {
        let server = try await ScriptedHTTPServer.start()
        let adapter = FacebookCommentReplyAdapter(PlatformConnection(endpoint: server.url, tokens: Self.tokens, timeout: .seconds(10)))
        server.json(200, #"{"id":"111_999"}"#)
        server.json(400, Self.graphError(100, subcode: 33, "Unsupported post request. Object with ID '111_222' does not exist"))
        server.json(
            400, Self.graphError(32, "Page request limit reached"),
            headers: [("X-Business-Use-Case-Usage", #"{"123":[{"type":"pages","call_count":100,"estimated_time_to_regain_access":3}]}"#)]
        )
        server.json(500, "")
        #expect(await adapter.send(Self.reply(.commentPublic)) == .sent(platformMessageId: "111_999"))
        let request = try #require(server.requests.first)
        #expect(request.uri == "/111_222/comments?access_token=EAAB-page-token" && request.json["message"] as? String == "Dạ còn size M chị ơi")
        guard case .refused(let gone) = await adapter.send(Self.reply(.commentPublic)) else { Issue.record("a deleted comment"); return }
        #expect(gone.contains("no longer exists"))
        guard case .temporary(_, let after) = await adapter.send(Self.reply(.commentPublic)), case .temporary = await adapter.send(Self.reply(.commentPublic)) else {
            Issue.record("rate limit and 5xx are temporary")
            return
        }
        #expect(after == 180_000)
        try await server.stop()
    }

    @Test func zaloOAConsultationMessages() async throws {
        let server = try await ScriptedHTTPServer.start()
        let adapter = ZaloOAReplyAdapter(PlatformConnection(endpoint: server.url, tokens: Self.tokens, timeout: .seconds(10)))
        server.json(200, #"{"error":0,"message":"Success","data":{"message_id":"z_77","user_id":"24681357"}}"#)
        server.json(200, #"{"error":-216,"message":"Access token is invalid"}"#)
        server.json(200, #"{"error":-213,"message":"User has not followed OA"}"#)
        server.json(200, #"{"error":-230,"message":"User has not interacted with the OA in the past 7 days"}"#)
        server.answer(.reply(status: 429, headers: [("Retry-After", "15")], body: ""))
        let zalo = Self.reply(platform: .zalo)
        #expect(await adapter.send(zalo) == .sent(platformMessageId: "z_77"))
        let request = try #require(server.requests.first)
        #expect(request.uri == "/oa/message/cs" && request.header("access_token") == "EAAB-page-token")
        #expect(request.json["recipient"] as? [String: String] == ["user_id": "24681357"])
        #expect(request.json["message"] as? [String: String] == ["text": "Dạ còn size M chị ơi"])
        guard case .refused(let token) = await adapter.send(zalo), case .refused(let follow) = await adapter.send(zalo),
              case .refused(let window) = await adapter.send(zalo) else {
            Issue.record("token, follow and window are refusals")
            return
        }
        #expect(token.contains("access token") && follow.contains("follow") && window.hasPrefix("window closed"))
        guard case .temporary(_, 15_000) = await adapter.send(zalo) else { Issue.record("429 with Retry-After"); return }
        try await server.stop()
    }

    @Test func configurationNamesWhatIsMissingAndReadsTokens() throws {
        #expect(try ProviderConfiguration.replyAdapters([:]).zalo?.platformName == "the sandbox")
        #expect(throws: ConfigurationError.self) { try ProviderConfiguration.replyAdapters(["CHATMESH_REPLY_PROVIDERS": "facebook=graph"]) }
        #expect(throws: ConfigurationError.self) { try ProviderConfiguration.replyAdapters(["CHATMESH_REPLY_PROVIDERS": "zalo=graph"]) }
        #expect(throws: ConfigurationError.self) { try ProviderConfiguration.zaloReplyWindowMs(["CHATMESH_ZALO_REPLY_WINDOW_DAYS": "0"]) }
        #expect(try ProviderConfiguration.zaloReplyWindowMs(["CHATMESH_ZALO_REPLY_WINDOW_DAYS": "3"]) == 3 * 86_400_000)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("page-tokens-\(UUID().uuidString)")
        try "# shop/page token\nshop-a/page-1 EAAB-secret\n\nshop-a/oa-9 zalo-secret\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let adapters = try ProviderConfiguration.replyAdapters(["CHATMESH_REPLY_PROVIDERS": "facebook=graph,zalo=oa", "CHATMESH_PAGE_TOKENS_FILE": file.path])
        #expect(adapters.messenger?.platformName == "Messenger" && adapters.facebookComments?.platformName == "Facebook" && adapters.zalo?.platformName == "Zalo")
        let tokens = try PageTokens.parse(try String(contentsOf: file, encoding: .utf8), source: "f")
        #expect(tokens.token(shop: "shop-a", page: "oa-9") == "zalo-secret" && tokens.token(shop: "shop-b", page: "page-1") == nil)
        do {
            _ = try PageTokens.parse("shop-a/page-1 EAAB-secret extra\n", source: "f")
            Issue.record("a malformed line")
        } catch {
            #expect(!error.description.contains("EAAB"))
        }
    }
}
