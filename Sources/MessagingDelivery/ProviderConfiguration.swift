import ChatMeshAPI
import Foundation
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
