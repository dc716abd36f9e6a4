import ChatMeshAPI
import Foundation
import MeshRPC
import MeshHTTPClient
import Messaging
import NIOCore
import NIOHTTP1

/// Turns an HTTP exchange into an outcome: transport failures, time-outs,
/// 429 and 5xx are temporary; other 4xx are for good.
enum HTTPOutcome {
    static func transport(_ error: any Error) -> DeliveryOutcome {
        .failedTemporarily(message: "\(error)")
    }

    static func status(_ response: HTTP1Client.Response, provider: String) -> DeliveryOutcome? {
        switch response.status {
        case 200..<300: return nil
        case 429:
            let retry = response.header("Retry-After").map { " (retry after \($0) s)" } ?? ""
            return .failedTemporarily(message: "\(provider) is rate limiting\(retry)")
        case 500...: return .failedTemporarily(message: "\(provider) answered HTTP \(response.status)")
        default: return .rejected(code: .failedPrecondition, message: "\(provider) refused the request: HTTP \(response.status)")
        }
    }

    static func json(_ response: HTTP1Client.Response) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
    }
}

/// Zalo Notification Service: `POST <endpoint>/message/template` with the OA's
/// access token in the `access_token` header and a JSON body of phone (84…),
/// template id, template data and our message id as `tracking_id`. Zalo
/// answers HTTP 200 with `error` 0 and `data.msg_id`, or a negative error code.
public struct ZnsAdapter: DeliveryAdapter {
    public var name: String { "zalo-zns" }
    let endpoint: URL
    let accessToken: String
    let client: HTTP1Client
    let timeout: TimeAmount

    public init(endpoint: URL = URL(string: "https://business.openapi.zalo.me")!, accessToken: String, client: HTTP1Client = HTTP1Client(), timeout: TimeAmount = .seconds(10)) {
        self.endpoint = endpoint
        self.accessToken = accessToken
        self.client = client
        self.timeout = timeout
    }

    public func deliver(_ delivery: Delivery) async -> DeliveryOutcome {
        // Zalo takes numbers as 84xxxxxxxxx.
        let phone = delivery.recipient.hasPrefix("0") ? "84" + delivery.recipient.dropFirst() : delivery.recipient
        let payload: [String: Any] = [
            "phone": phone, "template_id": delivery.providerTemplateId, "template_data": delivery.params, "tracking_id": delivery.messageId,
        ]
        do {
            let body = try JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys])
            let response = try await client.send(
                method: .POST, url: endpoint.appendingPathComponent("message/template"),
                headers: [("Content-Type", "application/json"), ("access_token", accessToken)], body: Array(body), timeout: timeout
            )
            if let failure = HTTPOutcome.status(response, provider: "Zalo") { return failure }
            guard let json = HTTPOutcome.json(response), let error = json["error"] as? Int else {
                return .failedTemporarily(message: "Zalo answered something that is not its JSON")
            }
            if error == 0 {
                let data = json["data"] as? [String: Any]
                return .sent(providerId: data?["msg_id"] as? String ?? "")
            }
            let outcome = ZaloZnsErrors.outcome(zaloError: error)
            return outcome.retryable ? .failedTemporarily(message: outcome.message) : .rejected(code: outcome.code, message: outcome.message)
        } catch {
            return HTTPOutcome.transport(error)
        }
    }
}

/// An SMS gateway of the eSMS kind (Vietnam's common brand-name SMS API):
/// `POST <endpoint>` JSON with ApiKey, SecretKey, Phone, Content, Brandname,
/// SmsType and RequestId (our message id, so a retried request is not sent
/// twice); it answers `CodeResult` "100" and an `SMSID`, or an error code.
public struct SMSGatewayAdapter: DeliveryAdapter {
    public var name: String { "sms-gateway" }
    let endpoint: URL
    let apiKey: String
    let secretKey: String
    let brandname: String
    let client: HTTP1Client

    public init(endpoint: URL, apiKey: String, secretKey: String, brandname: String, client: HTTP1Client = HTTP1Client()) {
        self.endpoint = endpoint
        self.apiKey = apiKey
        self.secretKey = secretKey
        self.brandname = brandname
        self.client = client
    }

    public func deliver(_ delivery: Delivery) async -> DeliveryOutcome {
        let payload: [String: Any] = [
            "ApiKey": apiKey, "SecretKey": secretKey, "Phone": delivery.recipient, "Content": delivery.text,
            "Brandname": brandname, "SmsType": "2", "RequestId": delivery.messageId,
        ]
        do {
            let body = try JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys])
            let response = try await client.send(method: .POST, url: endpoint, headers: [("Content-Type", "application/json")], body: Array(body))
            if let failure = HTTPOutcome.status(response, provider: "the SMS gateway") { return failure }
            guard let json = HTTPOutcome.json(response), let code = json["CodeResult"].map({ "\($0)" }) else {
                return .failedTemporarily(message: "the SMS gateway answered something that is not its JSON")
            }
            switch code {
            case "100": return .sent(providerId: json["SMSID"].map { "\($0)" } ?? "")
            case "99": return .rejected(code: .failedPrecondition, message: "recipient: the SMS gateway has this number blocked")
            case "108": return .rejected(code: .invalidArgument, message: "recipient: the SMS gateway says the number is not valid")
            case "101", "104": return .rejected(code: .failedPrecondition, message: "the SMS gateway refused the account or brand name (code \(code))")
            case "103": return .rejected(code: .failedPrecondition, message: "the SMS gateway account has no credit left (code 103)")
            case "124": return .sent(providerId: "")  // RequestId seen before: it was sent then.
            default: return .failedTemporarily(message: "the SMS gateway answered code \(code)")
            }
        } catch {
            return HTTPOutcome.transport(error)
        }
    }
}

/// Messenger Send API: `POST <endpoint>/me/messages?access_token=<page token>`
/// with the page-scoped recipient id and the text. Outside the 24-hour
/// window a human agent's message carries `messaging_type` MESSAGE_TAG and
/// `tag` HUMAN_AGENT (R-MSG-5, decided before the adapter is called).
public struct MessengerAdapter: DeliveryAdapter {
    public var name: String { "messenger" }
    let endpoint: URL
    let pageAccessToken: String
    let client: HTTP1Client

    public init(endpoint: URL = URL(string: "https://graph.facebook.com/v19.0")!, pageAccessToken: String, client: HTTP1Client = HTTP1Client()) {
        self.endpoint = endpoint
        self.pageAccessToken = pageAccessToken
        self.client = client
    }

    public func deliver(_ delivery: Delivery) async -> DeliveryOutcome {
        var payload: [String: Any] = ["recipient": ["id": delivery.recipient], "message": ["text": delivery.text]]
        if delivery.humanAgent {
            payload["messaging_type"] = "MESSAGE_TAG"
            payload["tag"] = "HUMAN_AGENT"
        } else {
            payload["messaging_type"] = "RESPONSE"
        }
        var components = URLComponents(url: endpoint.appendingPathComponent("me/messages"), resolvingAgainstBaseURL: false)!
        components.queryItems = [URLQueryItem(name: "access_token", value: pageAccessToken)]
        do {
            let body = try JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys])
            let response = try await client.send(method: .POST, url: components.url!, headers: [("Content-Type", "application/json")], body: Array(body))
            let json = HTTPOutcome.json(response)
            if (200..<300).contains(response.status) {
                return .delivered(providerId: json?["message_id"] as? String ?? "")
            }
            // Graph errors: {"error": {"message", "code", "error_subcode"}}.
            if let error = json?["error"] as? [String: Any], let code = error["code"] as? Int {
                let message = error["message"] as? String ?? "error \(code)"
                switch code {
                case 4, 32, 613: return .failedTemporarily(message: "Messenger is rate limiting: \(message)")
                case 1, 2: return .failedTemporarily(message: "Messenger: \(message)")
                case 10, 200, 551: return .rejected(code: .failedPrecondition, message: "recipient: Messenger will not deliver to this person now: \(message)")
                case 100: return .rejected(code: .invalidArgument, message: "recipient: Messenger refused the request: \(message)")
                case 190: return .rejected(code: .failedPrecondition, message: "the page's access token is invalid or expired: \(message)")
                default: return .rejected(code: .failedPrecondition, message: "Messenger error \(code): \(message)")
                }
            }
            return HTTPOutcome.status(response, provider: "Messenger") ?? .failedTemporarily(message: "Messenger answered HTTP \(response.status)")
        } catch {
            return HTTPOutcome.transport(error)
        }
    }
}
