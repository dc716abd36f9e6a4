import ChatMeshAPI
import Crypto
import Foundation
import Messaging
@testable import MessagingDelivery
import MeshRPC
import MeshTestSupport
import Testing

@Suite struct ProviderConfigurationTests {
    @Test func sandboxServesEveryChannelByDefault() throws {
        let adapters = try ProviderConfiguration.adapters([:])
        #expect(Set(adapters.keys) == [.zns, .email, .sms, .messenger])
        #expect(adapters.values.allSatisfy { $0.name == "sandbox" })
    }

    @Test func eachChannelGetsItsConfiguredProvider() throws {
        let adapters = try ProviderConfiguration.adapters([
            "CHATMESH_MESSAGING_PROVIDERS": "zns=zalo, email=smtp, sms=gateway, messenger=sandbox",
            "CHATMESH_ZNS_ACCESS_TOKEN": "oa", "CHATMESH_SMTP_HOST": "mail.example.vn", "CHATMESH_SMTP_FROM": "shop@example.vn",
            "CHATMESH_SMS_URL": "https://rest.esms.vn/MainService.svc/json/SendMultipleMessage_V4_post_json/",
            "CHATMESH_SMS_API_KEY": "k", "CHATMESH_SMS_SECRET": "s", "CHATMESH_SMS_BRANDNAME": "HOAMAI",
        ])
        #expect(adapters[.zns]?.name == "zalo-zns" && adapters[.email]?.name == "smtp")
        #expect(adapters[.sms]?.name == "sms-gateway" && adapters[.messenger]?.name == "sandbox")
        // A channel left out has no provider at all.
        #expect(try ProviderConfiguration.adapters(["CHATMESH_MESSAGING_PROVIDERS": "email=sandbox"]).keys.sorted { $0.rawValue < $1.rawValue } == [.email])
    }

    @Test(arguments: [
        (["CHATMESH_MESSAGING_PROVIDERS": "zns=zalo"], "CHATMESH_ZNS_ACCESS_TOKEN"),
        (["CHATMESH_MESSAGING_PROVIDERS": "email=smtp", "CHATMESH_SMTP_HOST": "h"], "CHATMESH_SMTP_FROM"),
        (["CHATMESH_MESSAGING_PROVIDERS": "email=smtp", "CHATMESH_SMTP_HOST": "h", "CHATMESH_SMTP_FROM": "a@b.vn", "CHATMESH_SMTP_PORT": "x"], "CHATMESH_SMTP_PORT"),
        (["CHATMESH_MESSAGING_PROVIDERS": "sms=gateway", "CHATMESH_SMS_URL": "ftp://x"], "CHATMESH_SMS_URL"),
        (["CHATMESH_MESSAGING_PROVIDERS": "sms=zalo"], "sms"),
        (["CHATMESH_MESSAGING_PROVIDERS": "fax=sandbox"], "fax"),
        (["CHATMESH_MESSAGING_PROVIDERS": "zns"], "channel=provider"),
    ])
    func aMissingOrWrongSettingIsNamedAtStart(env: [String: String], named: String) {
        #expect {
            _ = try ProviderConfiguration.adapters(env)
        } throws: { error in
            "\(error)".contains(named)
        }
    }

    @Test func paymentGatewayChoice() throws {
        #expect(try ProviderConfiguration.paymentGateway([:])?.name == "sandbox")
        #expect(try ProviderConfiguration.paymentGateway(["CHATMESH_PAYMENT_GATEWAY": "none"]) == nil)
        #expect(throws: ConfigurationError.self) { try ProviderConfiguration.paymentGateway(["CHATMESH_PAYMENT_GATEWAY": "http"]) }
        #expect(throws: ConfigurationError.self) { try ProviderConfiguration.paymentGateway(["CHATMESH_PAYMENT_GATEWAY": "paypal"]) }
    }
}

@Suite struct HTTPPaymentGatewayTests {
    @Test func chargesAreSignedAndAnswersRead() async throws {
        let server = try await ScriptedHTTPServer.start()
        // Answers get all the time a loaded machine may need; only the silent server meets the short time-out.
        let gateway = HTTPPaymentGateway(endpoint: server.url.appendingPathComponent("charges"), secret: "merchant-secret", timeout: .seconds(10))
        let impatient = HTTPPaymentGateway(endpoint: server.url.appendingPathComponent("charges"), secret: "merchant-secret", timeout: .milliseconds(500))
        server.json(200, #"{"status":"approved","transaction_id":"NP-1001"}"#)
        server.json(402, #"{"status":"declined","reason":"insufficient funds"}"#)
        server.answer(.reply(status: 503, headers: [], body: ""))
        server.answer(.silence)
        #expect(await gateway.charge(shop: "shop-1", amountVnd: 500_000, reference: "auto-shop-1-1") == .approved(transactionId: "NP-1001"))
        let request = try #require(server.requests.first)
        #expect(request.method == "POST" && request.uri == "/charges")
        #expect(request.json["merchant_ref"] as? String == "auto-shop-1-1" && request.json["amount_vnd"] as? Int == 500_000)
        let expected = HMAC<SHA256>.authenticationCode(for: Data(request.body), using: SymmetricKey(data: Data("merchant-secret".utf8)))
        #expect(request.header("X-Signature") == expected.map { String(format: "%02x", $0) }.joined())
        #expect(await gateway.charge(shop: "shop-1", amountVnd: 500_000, reference: "auto-shop-1-2") == .declined(reason: "insufficient funds"))
        guard case .unavailable = await gateway.charge(shop: "shop-1", amountVnd: 1, reference: "r3") else { Issue.record("5xx is unavailable"); return }
        guard case .unavailable = await impatient.charge(shop: "shop-1", amountVnd: 1, reference: "r4") else { Issue.record("a time-out is unavailable"); return }
    }
}
