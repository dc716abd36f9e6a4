import ChatMeshAPI
import Foundation
import MeshHTTPClient
import Messaging
import MeshRPC

/// Which provider delivers each channel, from messaging-svc's environment.
///
/// `CHATMESH_MESSAGING_PROVIDERS` is `sandbox` (every channel through the
/// sandbox: the local demo) or a list such as `zns=zalo,email=smtp,sms=gateway,messenger=facebook`
/// where each provider is `sandbox` or the channel's real one; a channel left
/// out has no provider and its sends are refused. Each real provider reads its
/// own variables (see services/messaging-svc/README.md); one that is missing
/// is an error naming it, at start, not at the first send.
public enum ProviderConfiguration {
    /// The adapter of each channel as CHATMESH_MESSAGING_PROVIDERS configures it; every setting checked now.
    public static func adapters(_ env: [String: String], client: HTTP1Client = HTTP1Client()) throws(ConfigurationError) -> [Template.Channel: any DeliveryAdapter] {
        let spec = (env["CHATMESH_MESSAGING_PROVIDERS"] ?? "sandbox").trimmingCharacters(in: .whitespaces)
        if spec == "sandbox" {
            let sandbox = SandboxAdapter()
            return [.zns: sandbox, .email: sandbox, .sms: sandbox, .messenger: sandbox]
        }
        var adapters: [Template.Channel: any DeliveryAdapter] = [:]
        for item in spec.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else {
                throw ConfigurationError("CHATMESH_MESSAGING_PROVIDERS: \"\(item)\" is not channel=provider (e.g. zns=zalo,email=smtp,sms=gateway,messenger=facebook)")
            }
            let (channel, provider) = (parts[0].lowercased(), parts[1].lowercased())
            switch (channel, provider) {
            case ("zns", "sandbox"): adapters[.zns] = SandboxAdapter()
            case ("email", "sandbox"): adapters[.email] = SandboxAdapter()
            case ("sms", "sandbox"): adapters[.sms] = SandboxAdapter()
            case ("messenger", "sandbox"): adapters[.messenger] = SandboxAdapter()
            case ("zns", "zalo"):
                adapters[.zns] = ZnsAdapter(
                    endpoint: try url(env, "CHATMESH_ZNS_URL", default: "https://business.openapi.zalo.me"),
                    accessToken: try required(env, "CHATMESH_ZNS_ACCESS_TOKEN"), client: client
                )
            case ("email", "smtp"):
                let tls = env["CHATMESH_SMTP_TLS"] ?? "implicit"
                guard tls == "implicit" || tls == "none" else { throw ConfigurationError("CHATMESH_SMTP_TLS=\(tls): expected implicit or none") }
                let portText = env["CHATMESH_SMTP_PORT"] ?? (tls == "implicit" ? "465" : "25")
                guard let port = Int(portText), (1...65535).contains(port) else { throw ConfigurationError("CHATMESH_SMTP_PORT=\(portText): not a port") }
                adapters[.email] = SMTPAdapter(SMTPAdapter.Config(
                    host: try required(env, "CHATMESH_SMTP_HOST"), port: port, implicitTLS: tls == "implicit",
                    username: env["CHATMESH_SMTP_USER"].flatMap { $0.isEmpty ? nil : $0 },
                    password: env["CHATMESH_SMTP_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 },
                    from: try required(env, "CHATMESH_SMTP_FROM")
                ))
            case ("sms", "gateway"):
                adapters[.sms] = SMSGatewayAdapter(
                    endpoint: try url(env, "CHATMESH_SMS_URL", default: nil), apiKey: try required(env, "CHATMESH_SMS_API_KEY"),
                    secretKey: try required(env, "CHATMESH_SMS_SECRET"), brandname: try required(env, "CHATMESH_SMS_BRANDNAME"), client: client
                )
            case ("messenger", "facebook"):
                adapters[.messenger] = MessengerAdapter(
                    endpoint: try url(env, "CHATMESH_MESSENGER_URL", default: "https://graph.facebook.com/v19.0"),
                    pageAccessToken: try required(env, "CHATMESH_MESSENGER_PAGE_TOKEN"), client: client
                )
            case ("zns", _), ("email", _), ("sms", _), ("messenger", _):
                let real = ["zns": "zalo", "email": "smtp", "sms": "gateway", "messenger": "facebook"][channel]!
                throw ConfigurationError("CHATMESH_MESSAGING_PROVIDERS: \(channel) is delivered by sandbox or \(real), not \"\(provider)\"")
            default:
                throw ConfigurationError("CHATMESH_MESSAGING_PROVIDERS: no channel \"\(channel)\" (zns, email, sms, messenger)")
            }
        }
        return adapters
    }

    /// How staff replies reach the platforms (R-CONV-9). `CHATMESH_REPLY_PROVIDERS` is `sandbox`
    /// (nothing leaves: the local demo) or a list of `facebook=graph` (Messenger Send API and
    /// comment replies) and `zalo=oa` (Zalo OA consultation messages); a platform left out has
    /// no provider and its replies turn FAILED saying so. Real providers need
    /// CHATMESH_PAGE_TOKENS_FILE (`PageTokens`); CHATMESH_FACEBOOK_GRAPH_URL and CHATMESH_ZALO_OA_URL
    /// point them elsewhere (tests, a proxy).
    public static func replyAdapters(_ env: [String: String], client: HTTP1Client = HTTP1Client()) throws(ConfigurationError) -> ReplyAdapters {
        let spec = (env["CHATMESH_REPLY_PROVIDERS"] ?? "sandbox").trimmingCharacters(in: .whitespaces)
        if spec == "sandbox" { return .sandbox }
        var adapters = ReplyAdapters()
        var tokens: PageTokens?
        func pageTokens() throws(ConfigurationError) -> PageTokens {
            if let tokens { return tokens }
            let path = try required(env, "CHATMESH_PAGE_TOKENS_FILE")
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ConfigurationError("CHATMESH_PAGE_TOKENS_FILE=\(path): cannot be read")
            }
            let parsed = try PageTokens.parse(text, source: "CHATMESH_PAGE_TOKENS_FILE")
            tokens = parsed
            return parsed
        }
        for item in spec.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            switch (parts.first, parts.count == 2 ? parts[1] : nil) {
            case ("facebook", "graph"):
                let graph = try url(env, "CHATMESH_FACEBOOK_GRAPH_URL", default: "https://graph.facebook.com/v19.0")
                let connection = PlatformConnection(endpoint: graph, tokens: try pageTokens(), client: client)
                adapters.messenger = MessengerReplyAdapter(connection)
                adapters.facebookComments = FacebookCommentReplyAdapter(connection)
            case ("facebook", "sandbox"):
                adapters.messenger = SandboxReplyAdapter()
                adapters.facebookComments = SandboxReplyAdapter()
            case ("zalo", "oa"):
                adapters.zalo = ZaloOAReplyAdapter(PlatformConnection(
                    endpoint: try url(env, "CHATMESH_ZALO_OA_URL", default: "https://openapi.zalo.me/v3.0"), tokens: try pageTokens(), client: client
                ))
            case ("zalo", "sandbox"):
                adapters.zalo = SandboxReplyAdapter()
            default:
                throw ConfigurationError("CHATMESH_REPLY_PROVIDERS: \"\(item)\" is not facebook=graph, facebook=sandbox, zalo=oa or zalo=sandbox")
            }
        }
        return adapters
    }

    /// Zalo's reply window (R-CONV-9): CHATMESH_ZALO_REPLY_WINDOW_DAYS, 7 by default.
    public static func zaloReplyWindowMs(_ env: [String: String]) throws(ConfigurationError) -> Int64 {
        guard let text = env["CHATMESH_ZALO_REPLY_WINDOW_DAYS"], !text.isEmpty else { return ReplyDelivery.defaultZaloWindowMs }
        guard let days = Int64(text), (1...365).contains(days) else { throw ConfigurationError("CHATMESH_ZALO_REPLY_WINDOW_DAYS=\(text): expected 1..365 days") }
        return days * 86_400_000
    }

    /// The payment gateway for automatic top-ups: `sandbox` (approves everything), `http` or `none`.
    public static func paymentGateway(_ env: [String: String], client: HTTP1Client = HTTP1Client()) throws(ConfigurationError) -> (any PaymentGateway)? {
        switch env["CHATMESH_PAYMENT_GATEWAY"] ?? "sandbox" {
        case "sandbox": return SandboxPaymentGateway()
        case "none": return nil
        case "http":
            return HTTPPaymentGateway(
                endpoint: try url(env, "CHATMESH_PAYMENT_URL", default: nil), secret: try required(env, "CHATMESH_PAYMENT_SECRET"), client: client
            )
        case let other: throw ConfigurationError("CHATMESH_PAYMENT_GATEWAY=\(other): expected sandbox, http or none")
        }
    }

    static func required(_ env: [String: String], _ name: String) throws(ConfigurationError) -> String {
        guard let value = env[name], !value.isEmpty else { throw ConfigurationError("\(name) is required by the configured provider") }
        return value
    }

    static func url(_ env: [String: String], _ name: String, default fallback: String?) throws(ConfigurationError) -> URL {
        guard let text = env[name] ?? fallback, !text.isEmpty else { throw ConfigurationError("\(name) is required by the configured provider") }
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", url.host != nil else {
            throw ConfigurationError("\(name)=\(text): not an http(s) URL")
        }
        return url
    }
}
