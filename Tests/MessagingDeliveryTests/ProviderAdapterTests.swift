import ChatMeshAPI
import Foundation
import MeshRPC
import Messaging
@testable import MessagingDelivery
import NIOCore
import MeshTestSupport
import Testing

/// Each adapter against a local server speaking its provider's protocol: what
/// goes on the wire, and every kind of answer (success, provider error, rate
/// limit, time-out).
@Suite struct ProviderAdapterTests {
    static let zns = Delivery(
        messageId: "msg_01", channel: .zns, recipient: "0912345678", text: "Chào Hoa",
        providerTemplateId: "229", params: ["name": "Hoa", "code": "DH1"]
    )

    @Test func znsSendsZalosRequestAndReadsItsAnswers() async throws {
        let server = try await ScriptedHTTPServer.start()
        // Answers get all the time a loaded machine may need; only the silent server meets the short time-out.
        let adapter = ZnsAdapter(endpoint: server.url, accessToken: "oa-token", timeout: .seconds(10))
        let impatient = ZnsAdapter(endpoint: server.url, accessToken: "oa-token", timeout: .milliseconds(500))
        server.json(200, #"{"error":0,"message":"Success","data":{"msg_id":"z-77","sent_time":"1700000000000"}}"#)
        server.json(200, #"{"error":-108,"message":"Phone number invalid"}"#)
        server.json(200, #"{"error":-100,"message":"Unknown error"}"#)
        server.answer(.reply(status: 429, headers: [("Retry-After", "30")], body: ""))
        server.answer(.silence)

        #expect(await adapter.deliver(Self.zns) == .sent(providerId: "z-77"))
        let request = try #require(server.requests.first)
        #expect(request.method == "POST" && request.uri == "/message/template")
        #expect(request.header("access_token") == "oa-token")
        #expect(request.json["phone"] as? String == "84912345678")
        #expect(request.json["template_id"] as? String == "229")
        #expect(request.json["tracking_id"] as? String == "msg_01")
        #expect(request.json["template_data"] as? [String: String] == ["name": "Hoa", "code": "DH1"])

        guard case .rejected(let code, let message) = await adapter.deliver(Self.zns) else { Issue.record("-108 is for good"); return }
        #expect(code == .invalidArgument && message.hasPrefix("recipient"))
        guard case .failedTemporarily = await adapter.deliver(Self.zns) else { Issue.record("-100 is worth retrying"); return }
        guard case .failedTemporarily(let limited) = await adapter.deliver(Self.zns) else { Issue.record("429 is temporary"); return }
        #expect(limited.contains("30"))
        guard case .failedTemporarily(let timeout) = await impatient.deliver(Self.zns) else { Issue.record("silence is a time-out"); return }
        #expect(timeout.contains("no answer"))
        try await server.stop()
    }

    @Test func smsGatewayRequestAndCodes() async throws {
        let server = try await ScriptedHTTPServer.start()
        let adapter = SMSGatewayAdapter(endpoint: server.url.appendingPathComponent("send"), apiKey: "k", secretKey: "s", brandname: "HOAMAI")
        server.json(200, #"{"CodeResult":"100","SMSID":"sms-1"}"#)
        server.json(200, #"{"CodeResult":"103","ErrorMessage":"Balance not enough"}"#)
        server.answer(.reply(status: 503, headers: [], body: ""))
        let sms = Delivery(messageId: "msg_02", channel: .sms, recipient: "0912345678", text: "Mã đơn DH1 đã giao")
        #expect(await adapter.deliver(sms) == .sent(providerId: "sms-1"))
        let sent = try #require(server.requests.first).json
        #expect(sent["Phone"] as? String == "0912345678" && sent["Content"] as? String == "Mã đơn DH1 đã giao")
        #expect(sent["RequestId"] as? String == "msg_02" && sent["Brandname"] as? String == "HOAMAI")
        guard case .rejected(_, let message) = await adapter.deliver(sms) else { Issue.record("no credit is for good"); return }
        #expect(message.contains("103"))
        guard case .failedTemporarily = await adapter.deliver(sms) else { Issue.record("503 is temporary"); return }
        try await server.stop()
    }

    @Test func messengerSendAPIWithAndWithoutTheHumanAgentTag() async throws {
        let server = try await ScriptedHTTPServer.start()
        let adapter = MessengerAdapter(endpoint: server.url.appendingPathComponent("v19.0"), pageAccessToken: "page-token")
        server.json(200, #"{"recipient_id":"123","message_id":"m_1"}"#)
        server.json(200, #"{"recipient_id":"123","message_id":"m_2"}"#)
        server.json(400, #"{"error":{"message":"(#10) This message is sent outside of allowed window.","type":"OAuthException","code":10,"error_subcode":2018278}}"#)
        server.json(400, #"{"error":{"message":"(#613) Calls to this api have exceeded the rate limit.","code":613}}"#)
        var delivery = Delivery(messageId: "msg_03", channel: .messenger, recipient: "123", text: "Dạ shop chào chị")
        #expect(await adapter.deliver(delivery) == .delivered(providerId: "m_1"))
        delivery.humanAgent = true
        #expect(await adapter.deliver(delivery) == .delivered(providerId: "m_2"))
        let requests = server.requests
        #expect(requests[0].uri == "/v19.0/me/messages?access_token=page-token")
        #expect(requests[0].json["messaging_type"] as? String == "RESPONSE")
        #expect((requests[0].json["recipient"] as? [String: String])?["id"] == "123")
        #expect((requests[0].json["message"] as? [String: String])?["text"] == "Dạ shop chào chị")
        #expect(requests[1].json["messaging_type"] as? String == "MESSAGE_TAG" && requests[1].json["tag"] as? String == "HUMAN_AGENT")
        guard case .rejected(_, let window) = await adapter.deliver(delivery) else { Issue.record("outside the window is for good"); return }
        #expect(window.contains("allowed window"))
        guard case .failedTemporarily = await adapter.deliver(delivery) else { Issue.record("613 is a rate limit"); return }
        try await server.stop()
    }

    @Test func aRefusedConnectionIsTemporary() async throws {
        let server = try await ScriptedHTTPServer.start()
        let url = server.url
        try await server.stop()
        guard case .failedTemporarily(let message) = await ZnsAdapter(endpoint: url, accessToken: "t").deliver(Self.zns) else {
            Issue.record("a provider that is down is worth retrying")
            return
        }
        #expect(message.contains("connection"))
    }
}
