import ChatMeshAPI
import Foundation
@testable import Messaging
import MeshRPC
import MeshTestSupport
import MeshStore
import Synchronization
import Testing
import VietnamCommerce

/// A provider that records what it was given and answers as scripted.
final class ScriptedAdapter: DeliveryAdapter {
    let name = "scripted"
    private let state = Mutex<(delivered: [Delivery], next: [DeliveryOutcome])>(([], []))

    func answer(_ outcomes: DeliveryOutcome...) {
        state.withLock { $0.next += outcomes }
    }

    var deliveries: [Delivery] { state.withLock { $0.delivered } }

    func deliver(_ delivery: Delivery) async -> DeliveryOutcome {
        state.withLock { state in
            state.delivered.append(delivery)
            return state.next.isEmpty ? .delivered(providerId: "p-\(delivery.messageId)") : state.next.removeFirst()
        }
    }
}

/// A loyalty-svc stand-in: ListSegmentMembers over the segments it is given, paged like the real one.
final class FakeLoyalty: RPCService {
    let segments: Mutex<[String: [SegmentMember]]>
    let calls = Mutex(0)
    /// When set, every call fails with it (loyalty-svc down).
    let failure = Mutex<RPCError?>(nil)

    init(_ segments: [String: [SegmentMember]] = [:]) {
        self.segments = Mutex(segments)
    }

    var routes: [RPCRoute] {
        [RPCRoute.unary(LoyaltyService.Method.listSegmentMembers) { (request: ListSegmentMembersRequest, context) in
            try await self.listSegmentMembers(request, context: context)
        }]
    }

    func listSegmentMembers(_ request: ListSegmentMembersRequest, context: ServerContext) async throws -> ListSegmentMembersResponse {
        calls.withLock { $0 += 1 }
        if let failure = failure.withLock({ $0 }) { throw failure }
        guard let members = segments.withLock({ $0[request.segmentId] }) else { throw RPCError.notFound("segment_id: no segment \(request.segmentId)") }
        let start = Int(request.pageToken) ?? 0
        let size = request.pageSize > 0 ? Int(request.pageSize) : 100
        let end = min(start + size, members.count)
        return ListSegmentMembersResponse(members: Array(members[start..<end]), nextPageToken: end < members.count ? String(end) : "")
    }
}

/// A payment gateway that records its charges and approves or declines as told.
final class ScriptedGateway: PaymentGateway {
    let name = "scripted"
    let charges = Mutex<[(shop: String, amount: Int64, reference: String)]>([])
    let decline = Mutex(false)

    func charge(shop: String, amountVnd: Int64, reference: String) async -> PaymentResult {
        charges.withLock { $0.append((shop, amountVnd, reference)) }
        return decline.withLock { $0 } ? .declined(reason: "card declined") : .approved(transactionId: "tx-" + reference)
    }
}

struct MessagingHarness {
    static let shop = "shop-m"
    static let key = "messaging-tests-key"
    let database: any SQLStore
    let store: MessagingStore
    let zns = ScriptedAdapter()
    let email = ScriptedAdapter()
    let messenger = ScriptedAdapter()
    let loyalty: FakeLoyalty
    let gateway = ScriptedGateway()
    let client: MessagingService.Client
    let sender: MessageSender
    let handler: MessagingServiceHandler
    let runner: BroadcastRunner
    let scheduler: ScenarioScheduler
    /// 2026-11-25 10:00 Vietnam time.
    let clock = TestClock(VietnamTime.ms(year: 2026, month: 11, day: 25, hour: 10))

    static func make(
        zns: ZnsQualityPolicy = ZnsQualityPolicy(), loyalty: FakeLoyalty = FakeLoyalty(), automaticTopUp: Bool = false,
        runner settings: BroadcastRunner.Settings = BroadcastRunner.Settings(), path: String? = nil
    ) async throws -> MessagingHarness {
        var location = path
        if location == nil { location = try await TestDatabase.location("messaging") }
        let database = try await TestDatabase.open(at: location!)
        return try await MessagingHarness(database: database, zns: zns, loyalty: loyalty, automaticTopUp: automaticTopUp, settings: settings)
    }

    private init(database: any SQLStore, zns policy: ZnsQualityPolicy, loyalty: FakeLoyalty, automaticTopUp: Bool, settings: BroadcastRunner.Settings) async throws {
        self.database = database
        self.loyalty = loyalty
        store = try await MessagingStore.open(database)
        let clock = self.clock
        let topUps = automaticTopUp ? AutomaticTopUps(store: store, gateway: gateway, now: { clock.now }) : nil
        sender = MessageSender(
            store: store, adapters: [.zns: zns, .email: email, .sms: SandboxAdapter(), .messenger: messenger], zns: policy, topUps: topUps,
            now: { clock.now }
        )
        handler = MessagingServiceHandler(store: store, sender: sender)
        let signer = TokenSigner(key: Self.key)
        let router = RPCRouter(services: [handler], verifier: TokenVerifier(key: Self.key))
        let token = signer.mint(shopId: Self.shop, staffId: "svc", role: .service)
        client = MessagingService.Client(channel: InProcessChannel(router: router), defaultOptions: .bearer(token))
        // The runner reaches loyalty through a router with token checks, as it would over the wire.
        let loyaltyRouter = RPCRouter(services: [loyalty], verifier: TokenVerifier(key: Self.key))
        runner = BroadcastRunner(
            store: store,
            audience: LoyaltySegmentAudience(channel: InProcessChannel(router: loyaltyRouter)) {
                signer.mint(shopId: Principal.anyShop, staffId: "messaging-svc", role: .service)
            },
            sender: sender, settings: settings
        )
        scheduler = ScenarioScheduler(store: store, sender: sender)
    }

    func znsTemplate() async throws -> Template {
        try await client.createTemplate(CreateTemplateRequest(
            shopId: Self.shop, channel: .zns, name: "Xác nhận đơn", body: "Chào {{name}}, đơn {{code}} đã được xác nhận.",
            purpose: .transactionUpdate, providerTemplateId: "zns-229"
        ))
    }

    func send(_ template: Template, key: String, to recipient: String = "0912345678", params: [String: String] = ["name": "Hoa", "code": "DH1"]) async throws -> SendMessageResponse {
        try await client.sendMessage(SendMessageRequest(
            shopId: Self.shop, channel: template.channel, recipient: recipient, templateId: template.templateId, params: params, idempotencyKey: key
        ))
    }

    func expectBalanceMatchesLedger() async throws {
        let balance = try await client.getBalance(ShopRequest(shopId: Self.shop)).balanceVnd
        #expect(balance == (try await store.ledgerSum(shop: Self.shop)))
        #expect(balance >= 0)
    }
}

@Suite struct SendMessageTests {
    static let shop = MessagingHarness.shop

    @Test func aSendIsRenderedDeliveredAndChargedOnceByKey() async throws {
        let h = try await MessagingHarness.make()
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 1_000, paymentRef: "napas-1"))
        let template = try await h.znsTemplate()
        #expect(template.placeholders == ["name", "code"] && template.enabled)
        let first = try await h.send(template, key: "order-DH1-confirm", to: "+84 912 345 678")
        #expect(first.status == "DELIVERED" && first.costVnd == 300)
        // The same key again: the same answer, nothing delivered or charged twice.
        let again = try await h.send(template, key: "order-DH1-confirm")
        #expect(again == first)
        #expect(h.zns.deliveries.count == 1)
        #expect(h.zns.deliveries[0].text == "Chào Hoa, đơn DH1 đã được xác nhận.")
        #expect(h.zns.deliveries[0].recipient == "0912345678" && h.zns.deliveries[0].providerTemplateId == "zns-229")
        #expect(try await h.client.getBalance(ShopRequest(shopId: Self.shop)).balanceVnd == 700)
        try await h.expectBalanceMatchesLedger()
        try await h.database.close()
    }

    @Test func aMissingParameterSendsNothing() async throws {
        let h = try await MessagingHarness.make()
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 1_000, paymentRef: "r"))
        let template = try await h.znsTemplate()
        await expectStatus(.invalidArgument, naming: "{{code}}") {
            _ = try await h.send(template, key: "k1", params: ["name": "Hoa"])
        }
        await expectStatus(.invalidArgument, naming: "{{name}}") {
            _ = try await h.send(template, key: "k2", params: ["name": "", "code": "DH1"])
        }
        #expect(h.zns.deliveries.isEmpty)
        #expect(try await h.client.getBalance(ShopRequest(shopId: Self.shop)).balanceVnd == 1_000)
        try await h.database.close()
    }

    @Test func aSendTheBalanceCannotCoverIsNotSent() async throws {
        let h = try await MessagingHarness.make()
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 500, paymentRef: "r1"))
        let template = try await h.znsTemplate()
        _ = try await h.send(template, key: "a")
        await expectStatus(.resourceExhausted, naming: "balance") {
            _ = try await h.send(template, key: "b")
        }
        #expect(h.zns.deliveries.count == 1)
        // After a top-up the same key goes through: the refusal recorded nothing.
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 1_000, paymentRef: "r2"))
        #expect(try await h.send(template, key: "b").status == "DELIVERED")
        try await h.expectBalanceMatchesLedger()
        try await h.database.close()
    }

    @Test func aRejectedSendGivesItsHoldBackAndATemporaryFailureStaysQueued() async throws {
        let h = try await MessagingHarness.make()
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 1_000, paymentRef: "r"))
        let template = try await h.znsTemplate()
        h.zns.answer(.rejected(code: .invalidArgument, message: "recipient: Zalo says the phone number is invalid (error -108)"), .failedTemporarily(message: "time-out"))
        let rejected = try await h.send(template, key: "x")
        #expect(rejected.status == "FAILED" && rejected.costVnd == 0)
        let queued = try await h.send(template, key: "y")
        #expect(queued.status == "QUEUED" && queued.costVnd == 300)
        #expect(try await h.client.getBalance(ShopRequest(shopId: Self.shop)).balanceVnd == 700)
        let pending = try await h.store.queued(beforeMs: h.clock.now + 1, limit: 10)
        #expect(pending.map(\.delivery.messageId) == [queued.messageId])
        #expect(pending.first?.delivery.params == ["name": "Hoa", "code": "DH1"])
        // The worker leaves it alone while it may still be in flight, then delivers it once.
        #expect(try await h.sender.redeliverQueued(after: 60_000) == 0)
        h.clock.advance(ms: 61_000)
        #expect(try await h.sender.redeliverQueued(after: 60_000) == 1)
        #expect(h.zns.deliveries.count == 3)
        #expect(try await h.sender.redeliverQueued(after: 60_000) == 0)
        #expect(try await h.send(template, key: "y").status == "DELIVERED")
        try await h.expectBalanceMatchesLedger()
        try await h.database.close()
    }

    @Test func topUpsCountOncePerPaymentReference() async throws {
        let h = try await MessagingHarness.make()
        for _ in 0..<3 { _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 50_000, paymentRef: "napas-77")) }
        #expect(try await h.client.getBalance(ShopRequest(shopId: Self.shop)).balanceVnd == 50_000)
        await expectStatus(.failedPrecondition, naming: "payment_ref") {
            _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 90_000, paymentRef: "napas-77"))
        }
        let auto = try await h.client.setAutoTopUp(SetAutoTopUpRequest(shopId: Self.shop, enabled: true, thresholdVnd: 10_000, amountVnd: 100_000))
        #expect(auto.autoTopUp == AutoTopUp(enabled: true, thresholdVnd: 10_000, amountVnd: 100_000))
        #expect(auto.balanceVnd == 50_000)
        try await h.expectBalanceMatchesLedger()
        try await h.database.close()
    }

    @Test func aZnsSendIsChargedOnlyOnceDeliveryIsReported() async throws {
        let h = try await MessagingHarness.make()
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 1_000, paymentRef: "r"))
        let template = try await h.znsTemplate()
        h.zns.answer(.sent(providerId: "z1"), .sent(providerId: "z2"))
        let first = try await h.send(template, key: "a")
        let second = try await h.send(template, key: "b")
        #expect(first.status == "SENT" && first.costVnd == 300)
        // Held while Zalo has it.
        #expect(try await h.client.getBalance(ShopRequest(shopId: Self.shop)).balanceVnd == 400)
        let delivered = try await h.client.recordDeliveryReport(DeliveryReportRequest(shopId: Self.shop, messageId: first.messageId, delivered: true))
        #expect(delivered.status == "DELIVERED" && delivered.costVnd == 300)
        let lost = try await h.client.recordDeliveryReport(DeliveryReportRequest(
            shopId: Self.shop, messageId: second.messageId, delivered: false, reason: "user blocked the OA"
        ))
        #expect(lost.status == "FAILED" && lost.costVnd == 0)
        #expect(try await h.client.getBalance(ShopRequest(shopId: Self.shop)).balanceVnd == 700)
        // The same report again answers the same; a contradicting one is refused.
        #expect(try await h.client.recordDeliveryReport(DeliveryReportRequest(shopId: Self.shop, messageId: second.messageId, delivered: false)) == lost)
        await expectStatus(.failedPrecondition, naming: "message_id") {
            _ = try await h.client.recordDeliveryReport(DeliveryReportRequest(shopId: Self.shop, messageId: first.messageId, delivered: false))
        }
        await expectStatus(.notFound, naming: "message_id") {
            _ = try await h.client.recordDeliveryReport(DeliveryReportRequest(shopId: Self.shop, messageId: "msg_nope", delivered: true))
        }
        // Only the delivered one counts toward the OA's quality (R-ZNS-1): it can take feedback, the lost one cannot.
        _ = try await h.client.recordFeedback(RecordFeedbackRequest(shopId: Self.shop, messageId: first.messageId, negative: false))
        await expectStatus(.failedPrecondition, naming: "message_id") {
            _ = try await h.client.recordFeedback(RecordFeedbackRequest(shopId: Self.shop, messageId: second.messageId, negative: true))
        }
        try await h.expectBalanceMatchesLedger()
        try await h.database.close()
    }

    @Test func badInputIsRefusedNamingTheField() async throws {
        let h = try await MessagingHarness.make()
        let zns = try await h.znsTemplate()
        let mail = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .email, name: "Mail", body: "Hi {{name}}", purpose: .marketing))
        let messenger = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .messenger, name: "M", body: "Chào bạn", purpose: .transactionUpdate))
        let c = h.client
        let s = Self.shop
        let cases: [(RPCError.Code, String, () async throws -> Void)] = [
            (.invalidArgument, "body", { _ = try await c.createTemplate(CreateTemplateRequest(shopId: s, channel: .sms, name: "x", body: "Hi {{name", purpose: .transactionUpdate)) }),
            (.invalidArgument, "channel", { _ = try await c.createTemplate(CreateTemplateRequest(shopId: s, name: "x", body: "Hi", purpose: .transactionUpdate)) }),
            (.invalidArgument, "purpose", { _ = try await c.createTemplate(CreateTemplateRequest(shopId: s, channel: .zns, name: "x", body: "Hi", purpose: .marketing, providerTemplateId: "1")) }),
            (.invalidArgument, "provider_template_id", { _ = try await c.createTemplate(CreateTemplateRequest(shopId: s, channel: .zns, name: "x", body: "Hi", purpose: .transactionUpdate)) }),
            (.invalidArgument, "recipient", { _ = try await h.send(zns, key: "a", to: "12345") }),
            (.invalidArgument, "recipient", { _ = try await h.send(mail, key: "b", to: "not-an-address", params: ["name": "x"]) }),
            (.invalidArgument, "idempotency_key", { _ = try await h.send(zns, key: "") }),
            (.notFound, "template_id", { _ = try await c.sendMessage(SendMessageRequest(shopId: s, channel: .zns, recipient: "0912345678", templateId: "tpl_x", idempotencyKey: "k")) }),
            (.invalidArgument, "template_id", { _ = try await c.sendMessage(SendMessageRequest(shopId: s, channel: .sms, recipient: "0912345678", templateId: zns.templateId, params: ["name": "a", "code": "b"], idempotencyKey: "k")) }),
            (.failedPrecondition, "recipient", { _ = try await c.sendMessage(SendMessageRequest(shopId: s, channel: .messenger, recipient: "123", templateId: messenger.templateId, idempotencyKey: "k")) }),
            (.invalidArgument, "idempotency_key", { _ = try await h.send(zns, key: "bc:x:y") }),
            (.invalidArgument, "amount_vnd", { _ = try await c.topUp(TopUpRequest(shopId: s, amountVnd: 0, paymentRef: "r")) }),
            (.invalidArgument, "payment_ref", { _ = try await c.topUp(TopUpRequest(shopId: s, amountVnd: 10, paymentRef: "")) }),
        ]
        for (code, field, call) in cases {
            await expectStatus(code, naming: field, call)
        }
        #expect(h.zns.deliveries.isEmpty && h.email.deliveries.isEmpty)
        try await h.database.close()
    }
}
