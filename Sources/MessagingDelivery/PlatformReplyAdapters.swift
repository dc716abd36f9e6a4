import ChatMeshAPI
import Foundation
import MeshHTTPClient
import Messaging
import MeshRPC
import NIOCore

/// Each connected page's access token, by shop and page (R-CONV-9). Read from the
/// file CHATMESH_PAGE_TOKENS_FILE at start: one `shop_id/page_id token` per line,
/// `#` comments. Tokens live here only: never in a log, a database or an answer.
public struct PageTokens: Sendable {
    let tokens: [String: String]

    public init(_ tokens: [String: String] = [:]) {
        self.tokens = tokens
    }

    /// - Parameter text: the file's contents; `source` names it in errors (never a token).
    public static func parse(_ text: String, source: String) throws(ConfigurationError) -> PageTokens {
        var tokens: [String: String] = [:]
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(whereSeparator: \.isWhitespace)
            guard parts.count == 2, parts[0].split(separator: "/").count == 2 else {
                throw ConfigurationError("\(source) line \(index + 1): expected \"shop_id/page_id token\"")
            }
            tokens[String(parts[0])] = String(parts[1])
        }
        return PageTokens(tokens)
    }

    public func token(shop: String, page: String) -> String? { tokens[shop + "/" + page] }

    func missing(_ reply: ReplyDelivery.Reply) -> ReplyAdapterAnswer {
        .refused(reason: "page \(reply.pageId) has no access token in messaging-svc's configuration (CHATMESH_PAGE_TOKENS_FILE): connect the page's token")
    }
}

/// Where a platform's API is and how it is called: its base URL, the pages' tokens, the
/// HTTP client and how long an answer may take.
public struct PlatformConnection: Sendable {
    let endpoint: URL
    let tokens: PageTokens
    let client: HTTP1Client
    let timeout: TimeAmount

    public init(endpoint: URL, tokens: PageTokens, client: HTTP1Client = HTTP1Client(), timeout: TimeAmount = .seconds(10)) {
        self.endpoint = endpoint
        self.tokens = tokens
        self.client = client
        self.timeout = timeout
    }

    /// POSTs `payload` as JSON to `path` under the endpoint: with the page's token as the
    /// `access_token` query item (Graph API), or as a header (Zalo).
    func post(_ path: [String], _ payload: [String: Any], token: String, tokenInHeader: Bool = false) async throws -> HTTP1Client.Response {
        var url = endpoint
        for part in path { url.appendPathComponent(part) }
        var headers = [("Content-Type", "application/json")]
        if tokenInHeader {
            headers.append(("access_token", token))
        } else {
            var components = URLComponents(url: url, resolvingAgainstBaseURL: false)!
            components.queryItems = [URLQueryItem(name: "access_token", value: token)]
            url = components.url!
        }
        let body = try JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys])
        return try await client.send(method: .POST, url: url, headers: headers, body: Array(body), timeout: timeout)
    }
}

/// Graph API answers (Messenger Send API and comment replies) in words staff understand.
enum GraphAnswer {
    static func answer(_ response: HTTP1Client.Response, platform: String, id: (([String: Any]) -> String?)) -> ReplyAdapterAnswer {
        let json = HTTPOutcome.json(response)
        if (200..<300).contains(response.status), let json, let found = id(json) {
            return .sent(platformMessageId: found)
        }
        guard let error = json?["error"] as? [String: Any], let code = error["code"] as? Int else {
            if response.status == 429 || response.status >= 500 {
                return .temporary(reason: "\(platform) is unavailable (HTTP \(response.status))", afterMs: response.retryAfterMs)
            }
            return .refused(reason: "\(platform) answered HTTP \(response.status) without saying why")
        }
        let subcode = error["error_subcode"] as? Int ?? 0
        let said = (error["message"] as? String).map { " (\(platform): \($0))" } ?? ""
        switch (code, subcode) {
        case (4, _), (17, _), (32, _), (613, _), (80001...80014, _):
            return .temporary(reason: "rate limited: \(platform) is limiting the page's sends for now\(said)", afterMs: response.retryAfterMs)
        case (1, _), (2, _):
            return .temporary(reason: "\(platform) had a temporary problem\(said)", afterMs: response.retryAfterMs)
        case (190, _), (102, _):
            return .refused(reason: "the page's access token has expired or was revoked: reconnect the page\(said)")
        case (10, 2018278), (10, 2018065), (10, 2018108):
            return .refused(reason: "window closed: \(platform) no longer allows messaging this customer\(said)")
        case (10900, _):
            return .alreadyReplied
        case (551, _), (200, 1545041), (10, 1545041):
            return .refused(reason: "the customer blocked the page or cannot receive messages now\(said)")
        case (368, _):
            return .refused(reason: "\(platform) has blocked the page from sending for a while (policy)\(said)")
        case (100, 33):
            return .refused(reason: "the comment no longer exists on \(platform)\(said)")
        case (10, _), (200...299, _):
            return .refused(reason: "the page's token lacks the permission for this reply\(said)")
        default:
            return .refused(reason: "\(platform) refused the reply (error \(code))\(said)")
        }
    }
}

/// Messenger Send API replies: inbox messages (`recipient.id`, messaging_type RESPONSE, or
/// MESSAGE_TAG with tag HUMAN_AGENT outside the 24-hour window, R-MSG-5) and private replies to
/// comments (`recipient.comment_id`). `POST <graph>/me/messages?access_token=<page token>`.
/// The Send API takes no idempotency key; the delivery key goes in `message.metadata`, which
/// Facebook echoes back with the page's own message (message_echoes), so a reply can be matched.
public struct MessengerReplyAdapter: ReplyAdapter {
    public var platformName: String { "Messenger" }
    let platform: PlatformConnection

    public init(_ platform: PlatformConnection) {
        self.platform = platform
    }

    public func send(_ reply: ReplyDelivery.Reply) async -> ReplyAdapterAnswer {
        guard let token = platform.tokens.token(shop: reply.shopId, page: reply.pageId) else { return platform.tokens.missing(reply) }
        var payload: [String: Any] = ["message": ["text": reply.text, "metadata": reply.deliveryKey]]
        if reply.target == .commentPrivate {
            payload["recipient"] = ["comment_id": reply.commentId]
            payload["messaging_type"] = "RESPONSE"
        } else {
            payload["recipient"] = ["id": reply.recipient]
            payload["messaging_type"] = reply.humanAgent ? "MESSAGE_TAG" : "RESPONSE"
            if reply.humanAgent { payload["tag"] = "HUMAN_AGENT" }
        }
        do {
            let response = try await platform.post(["me", "messages"], payload, token: token)
            return GraphAnswer.answer(response, platform: platformName) { $0["message_id"] as? String }
        } catch {
            return .temporary(reason: "Messenger could not be reached: \(error)", afterMs: 0)
        }
    }
}

/// Public replies under a Facebook comment: `POST <graph>/<comment id>/comments` with the
/// message and the page's token; Facebook answers the new comment's `id`. No idempotency key.
public struct FacebookCommentReplyAdapter: ReplyAdapter {
    public var platformName: String { "Facebook" }
    let platform: PlatformConnection

    public init(_ platform: PlatformConnection) {
        self.platform = platform
    }

    public func send(_ reply: ReplyDelivery.Reply) async -> ReplyAdapterAnswer {
        guard let token = platform.tokens.token(shop: reply.shopId, page: reply.pageId) else { return platform.tokens.missing(reply) }
        guard !reply.commentId.isEmpty, reply.commentId.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "_") }) else {
            return .refused(reason: "\"\(reply.commentId.prefix(64))\" is not a Facebook comment id")
        }
        do {
            let response = try await platform.post([reply.commentId, "comments"], ["message": reply.text], token: token)
            return GraphAnswer.answer(response, platform: platformName) { $0["id"] as? String }
        } catch {
            return .temporary(reason: "Facebook could not be reached: \(error)", afterMs: 0)
        }
    }
}

/// Zalo OA consultation messages: `POST <openapi>/oa/message/cs` with the OA's token in the
/// `access_token` header and `{"recipient": {"user_id"}, "message": {"text"}}`; Zalo answers
/// HTTP 200 with `error` 0 and `data.message_id`, or a negative error. No idempotency key.
public struct ZaloOAReplyAdapter: ReplyAdapter {
    public var platformName: String { "Zalo" }
    let platform: PlatformConnection

    public init(_ platform: PlatformConnection) {
        self.platform = platform
    }

    public func send(_ reply: ReplyDelivery.Reply) async -> ReplyAdapterAnswer {
        guard let token = platform.tokens.token(shop: reply.shopId, page: reply.pageId) else { return platform.tokens.missing(reply) }
        let payload: [String: Any] = ["recipient": ["user_id": reply.recipient], "message": ["text": reply.text]]
        do {
            let response = try await platform.post(["oa", "message", "cs"], payload, token: token, tokenInHeader: true)
            if response.status == 429 || response.status >= 500 {
                return .temporary(reason: "Zalo is unavailable (HTTP \(response.status))", afterMs: response.retryAfterMs)
            }
            guard let json = HTTPOutcome.json(response), let error = json["error"] as? Int else {
                return .temporary(reason: "Zalo answered something that is not its JSON (HTTP \(response.status))", afterMs: 0)
            }
            let said = (json["message"] as? String).map { " (Zalo: \($0))" } ?? ""
            switch error {
            case 0:
                let data = json["data"] as? [String: Any]
                return .sent(platformMessageId: data?["message_id"] as? String ?? "")
            case -216, -124, -14003:
                return .refused(reason: "the official account's access token has expired or is invalid: reconnect the OA\(said)")
            case -213:
                return .refused(reason: "the customer does not follow the official account or has blocked it\(said)")
            case -230, -232:
                return .refused(reason: "window closed: Zalo no longer allows a consultation message to this customer\(said)")
            case -32, -240:
                return .temporary(reason: "rate limited: Zalo is limiting the official account's sends for now\(said)", afterMs: response.retryAfterMs)
            case -211:
                return .refused(reason: "the official account has used its Zalo message quota\(said)")
            default:
                return .refused(reason: "Zalo refused the reply (error \(error))\(said)")
            }
        } catch {
            return .temporary(reason: "Zalo could not be reached: \(error)", afterMs: 0)
        }
    }
}
