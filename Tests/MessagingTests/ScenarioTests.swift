import ChatMeshAPI
@testable import Messaging
import MeshRPC
import MeshTestSupport
import Testing

/// R-BOT-1 chatbot scenarios and R-MSG-5 for staff and bots, through MessagingService.
@Suite struct ScenarioTests {
    static let shop = MessagingHarness.shop
    static let hour: Int64 = 3_600_000

    func considering(_ h: MessagingHarness, channel: Template.Channel = .sms) async throws -> Scenario {
        let body = "Shop giữ hàng cho bạn ({{tag_name}}), bạn chốt đơn nhé?"
        let first = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: channel, name: "Nhắc 1", body: body, purpose: .marketing))
        let second = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: channel, name: "Nhắc 2", body: "Còn 2 giờ ưu đãi!", purpose: .marketing))
        return try await h.client.createScenario(CreateScenarioRequest(
            shopId: Self.shop, triggerTagName: "Đang cân nhắc",
            steps: [ScenarioStep(delayMs: 0, templateId: first.templateId), ScenarioStep(delayMs: 1 * Self.hour, templateId: second.templateId),
                    ScenarioStep(delayMs: 22 * Self.hour, templateId: second.templateId)],
            channel: channel
        ))
    }

    func attach(_ h: MessagingHarness, event: String, tag: String = "dang can nhac", customer: String = "c1", recipient: String = "0912345678") async throws -> [String] {
        try await h.client.onTagAttached(OnTagAttachedRequest(
            shopId: Self.shop, eventId: event, pageId: "p1", customerId: customer, tagName: tag, atMs: h.clock.now, recipient: recipient
        )).scenarioIds
    }

    func statuses(_ h: MessagingHarness, customer: String = "c1") async throws -> [String] {
        try await h.store.steps(shop: Self.shop, customerId: customer).map(\.status.rawValue)
    }

    @Test func aTagStartsTheScenarioAndStepsGoAtTheirTimesAcrossARestart() async throws {
        let path = try await TestDatabase.location("scenarios")
        let h = try await MessagingHarness.make(path: path)
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 10_000, paymentRef: "r"))
        let scenario = try await considering(h)
        #expect(try await h.client.listScenarios(ListScenariosRequest(shopId: Self.shop)).scenarios == [scenario])
        // The tag's name matches without accents or case (R-TAG-3); the same event again starts nothing.
        #expect(try await attach(h, event: "e1") == [scenario.scenarioId])
        #expect(try await attach(h, event: "e1").isEmpty)
        // Attached again under a new event while it runs: not started twice.
        #expect(try await attach(h, event: "e2", tag: "ĐANG CÂN NHẮC").isEmpty)
        #expect(try await statuses(h) == ["PENDING", "PENDING", "PENDING"])
        #expect(try await h.scheduler.sendDue() == 1)
        #expect(try await statuses(h) == ["SENT", "PENDING", "PENDING"])
        h.clock.advance(ms: Self.hour - 1)
        #expect(try await h.scheduler.sendDue() == 0)
        h.clock.advance(ms: 1)
        #expect(try await h.scheduler.sendDue() == 1)
        try await h.database.close()

        // messaging-svc restarts; the last step fell due while it was down and goes when it is back.
        let again = try await MessagingHarness.make(path: path)
        again.clock.advance(ms: 30 * Self.hour)
        #expect(try await again.scheduler.sendDue() == 1)
        #expect(try await statuses(again) == ["SENT", "SENT", "SENT"])
        let bodies = try await again.database.read { db in
            try await db.raw("SELECT body FROM messages WHERE shop_id = \(bind: Self.shop) ORDER BY message_id").all().map { try $0.string("body") }
        }
        #expect(bodies == ["Shop giữ hàng cho bạn (dang can nhac), bạn chốt đơn nhé?", "Còn 2 giờ ưu đãi!", "Còn 2 giờ ưu đãi!"])
        #expect(try await again.client.getBalance(ShopRequest(shopId: Self.shop)).balanceVnd == 10_000 - 3 * 800)
        try await again.database.close()
    }

    /// The shop's default templates: set by owners and admins, used by a scenario that names
    /// no channel or template, and refused naming template_id while there is none.
    @Test func aScenarioWithoutTemplatesTakesTheShopsDefault() async throws {
        let h = try await MessagingHarness.make()
        let steps = [ScenarioStep(delayMs: 0), ScenarioStep(delayMs: Self.hour)]
        await expectStatus(.failedPrecondition, naming: "template_id") {
            _ = try await h.client.createScenario(CreateScenarioRequest(shopId: Self.shop, triggerTagName: "Đang cân nhắc", steps: steps))
        }
        await expectStatus(.failedPrecondition, naming: "template_id") {
            _ = try await h.client.getMessageDefault(GetMessageDefaultRequest(shopId: Self.shop, use: .scenarioStep))
        }
        let nudge = try await h.client.createTemplate(CreateTemplateRequest(
            shopId: Self.shop, channel: .sms, name: "Nhắc", body: "Shop giữ hàng cho bạn nhé", purpose: .transactionUpdate
        ))
        let messenger = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .messenger, name: "M", body: "Hi", purpose: .marketing))
        // Agents may not choose them; a referral offer cannot go by Messenger.
        let agent = MessagingService.Client(
            channel: InProcessChannel(router: RPCRouter(services: [h.handler], verifier: TokenVerifier(key: MessagingHarness.key))),
            defaultOptions: .bearer(TokenSigner(key: MessagingHarness.key).mint(shopId: Self.shop, staffId: "a", role: .agent))
        )
        await expectStatus(.permissionDenied, naming: "owner or admins") {
            _ = try await agent.setMessageDefault(SetMessageDefaultRequest(shopId: Self.shop, use: .scenarioStep, templateId: nudge.templateId))
        }
        await expectStatus(.invalidArgument, naming: "template_id") {
            _ = try await h.client.setMessageDefault(SetMessageDefaultRequest(shopId: Self.shop, use: .referralOffer, templateId: messenger.templateId))
        }
        await expectStatus(.notFound, naming: "template_id") {
            _ = try await h.client.setMessageDefault(SetMessageDefaultRequest(shopId: Self.shop, use: .scenarioStep, templateId: "tpl_nope"))
        }
        let set = try await h.client.setMessageDefault(SetMessageDefaultRequest(shopId: Self.shop, use: .scenarioStep, templateId: nudge.templateId))
        #expect(set == MessageDefault(use: .scenarioStep, channel: .sms, templateId: nudge.templateId))
        #expect(try await h.client.listMessageDefaults(ListMessageDefaultsRequest(shopId: Self.shop)).defaults == [set])
        let scenario = try await h.client.createScenario(CreateScenarioRequest(shopId: Self.shop, triggerTagName: "Đang cân nhắc", steps: steps))
        #expect(scenario.channel == .sms && scenario.steps.map(\.templateId) == [nudge.templateId, nudge.templateId])
        // Removed: refused again.
        _ = try await h.client.setMessageDefault(SetMessageDefaultRequest(shopId: Self.shop, use: .scenarioStep))
        await expectStatus(.failedPrecondition, naming: "template_id") {
            _ = try await h.client.getMessageDefault(GetMessageDefaultRequest(shopId: Self.shop, use: .scenarioStep))
        }
        try await h.database.close()
    }

    @Test func aDetachedTagOrACustomerReplyCancelsTheRemainingSteps() async throws {
        let h = try await MessagingHarness.make()
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 10_000, paymentRef: "r"))
        _ = try await considering(h)
        _ = try await attach(h, event: "a1", customer: "c1")
        _ = try await attach(h, event: "a2", customer: "c2", recipient: "0987654321")
        #expect(try await h.scheduler.sendDue() == 2)
        let detached = try await h.client.onTagDetached(OnTagDetachedRequest(
            shopId: Self.shop, eventId: "d1", pageId: "p1", customerId: "c1", tagName: "Đang cân nhắc", atMs: h.clock.now
        ))
        #expect(detached.cancelledSteps == 2)
        h.clock.advance(ms: 10 * 60_000)
        let replied = try await h.client.onCustomerMessage(OnCustomerMessageRequest(
            shopId: Self.shop, eventId: "m1", pageId: "p1", customerId: "c2", recipient: "123456", atMs: h.clock.now
        ))
        #expect(replied.cancelledSteps == 2)
        // Delivered again by the outbox: applied once.
        #expect(try await h.client.onCustomerMessage(OnCustomerMessageRequest(
            shopId: Self.shop, eventId: "m1", pageId: "p1", customerId: "c2", recipient: "123456", atMs: h.clock.now
        )).cancelledSteps == 0)
        h.clock.advance(ms: 30 * Self.hour)
        #expect(try await h.scheduler.sendDue() == 0)
        #expect(try await statuses(h, customer: "c1") == ["SENT", "CANCELLED", "CANCELLED"])
        #expect(try await statuses(h, customer: "c2") == ["SENT", "CANCELLED", "CANCELLED"])
        // The tag attached again later starts the scenario afresh.
        #expect(try await attach(h, event: "a3", customer: "c1").count == 1)
        try await h.database.close()
    }

    /// A reply that arrives while a step is going out cancels the steps after it, not that one:
    /// it is recorded as sent, as it was.
    @Test func aReplyWhileAStepIsBeingSentLeavesThatStepSent() async throws {
        let h = try await MessagingHarness.make()
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 10_000, paymentRef: "r"))
        _ = try await considering(h)
        _ = try await attach(h, event: "a1", customer: "c1")
        let due = try await h.store.dueSteps(nowMs: h.clock.now, limit: 10)
        #expect(due.count == 1)
        // The scheduler has taken the step and is sending it when the customer writes.
        #expect(try await h.store.claimStep(shop: Self.shop, stepId: due[0].stepId, nowMs: h.clock.now, claimMs: RunnerLease.defaultDurationMs))
        // Another replica's scheduler leaves a step claimed by this one alone.
        #expect(try await h.scheduler.sendDue() == 0)
        #expect(try await !h.store.claimStep(shop: Self.shop, stepId: due[0].stepId, nowMs: h.clock.now, claimMs: RunnerLease.defaultDurationMs))
        h.clock.advance(ms: 1_000)
        let replied = try await h.client.onCustomerMessage(OnCustomerMessageRequest(
            shopId: Self.shop, eventId: "m1", pageId: "p1", customerId: "c1", recipient: "123456", atMs: h.clock.now
        ))
        #expect(replied.cancelledSteps == 2)
        #expect(try await statuses(h) == ["SENDING", "CANCELLED", "CANCELLED"])
        // The sender died with it: once its claim has run out, the scheduler's next round takes the step up again, once.
        #expect(try await h.scheduler.sendDue() == 0)
        h.clock.advance(ms: RunnerLease.defaultDurationMs)
        #expect(try await h.scheduler.sendDue() == 1)
        #expect(try await statuses(h) == ["SENT", "CANCELLED", "CANCELLED"])
        #expect(try await h.scheduler.sendDue() == 0)
        #expect(try await h.client.getBalance(ShopRequest(shopId: Self.shop)).balanceVnd == 10_000 - 800)
        try await h.database.close()
    }

    @Test func aBotMessagesOnMessengerOnlyInsideTheWindow() async throws {
        let h = try await MessagingHarness.make()
        _ = try await considering(h, channel: .messenger)
        _ = try await h.client.onCustomerMessage(OnCustomerMessageRequest(
            shopId: Self.shop, eventId: "m0", pageId: "p1", customerId: "c1", recipient: "551", atMs: h.clock.now - 2 * Self.hour
        ))
        // The tag is attached after the customer's message, so the message does not cancel it; the recipient comes from the contact.
        _ = try await attach(h, event: "a1", recipient: "")
        h.clock.advance(ms: Self.hour)
        #expect(try await h.scheduler.sendDue() == 2)
        h.clock.advance(ms: 22 * Self.hour)
        #expect(try await h.scheduler.sendDue() == 1)
        let steps = try await h.store.steps(shop: Self.shop, customerId: "c1")
        #expect(steps.map(\.status.rawValue) == ["SENT", "SENT", "SKIPPED"])
        #expect(steps[2].reason.contains("not a bot"))
        #expect(h.messenger.deliveries.map(\.recipient) == ["551", "551"])
        try await h.database.close()
    }

    @Test func staffMessengerSendsFollowTheWindowAndTheHumanAgentTag() async throws {
        let h = try await MessagingHarness.make()
        let template = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .messenger, name: "M", body: "Dạ shop đây ạ", purpose: .transactionUpdate))
        func send(_ key: String) async throws -> SendMessageResponse {
            try await h.client.sendMessage(SendMessageRequest(shopId: Self.shop, channel: .messenger, recipient: "777", templateId: template.templateId, idempotencyKey: key))
        }
        _ = try await h.client.onCustomerMessage(OnCustomerMessageRequest(
            shopId: Self.shop, eventId: "m0", pageId: "p1", customerId: "c1", recipient: "777", atMs: h.clock.now
        ))
        _ = try await send("k1")
        h.clock.advance(ms: 3 * 24 * Self.hour)
        _ = try await send("k2")
        #expect(h.messenger.deliveries.map(\.humanAgent) == [false, true])
        h.clock.advance(ms: 5 * 24 * Self.hour)
        await expectStatus(.failedPrecondition, naming: "recipient") { _ = try await send("k3") }
        #expect(h.messenger.deliveries.count == 2)
        // R-MSG-5: a comment, even one that names the recipient, opens no window.
        _ = try await h.client.onCustomerMessage(OnCustomerMessageRequest(
            shopId: Self.shop, eventId: "m1", pageId: "p1", customerId: "c1", recipient: "777", atMs: h.clock.now, comment: true
        ))
        await expectStatus(.failedPrecondition, naming: "recipient") { _ = try await send("k4") }
        // An inbox message does.
        _ = try await h.client.onCustomerMessage(OnCustomerMessageRequest(
            shopId: Self.shop, eventId: "m2", pageId: "p1", customerId: "c1", recipient: "777", atMs: h.clock.now
        ))
        _ = try await send("k5")
        #expect(h.messenger.deliveries.count == 3)
        try await h.database.close()
    }

    @Test func automaticTopUpPaysThroughTheGatewayOncePerTopUp() async throws {
        let h = try await MessagingHarness.make(automaticTopUp: true)
        _ = try await h.client.setAutoTopUp(SetAutoTopUpRequest(shopId: Self.shop, enabled: true, thresholdVnd: 2_000, amountVnd: 3_000))
        let sms = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .sms, name: "S", body: "Mã {{code}}", purpose: .transactionUpdate))
        func send(_ key: String) async throws -> SendMessageResponse {
            try await h.client.sendMessage(SendMessageRequest(shopId: Self.shop, channel: .sms, recipient: "0912345678", templateId: sms.templateId, params: ["code": "1"], idempotencyKey: key))
        }
        // 0 VND: topped up to 3,000, the send leaves 2,200 (over the 2,000 threshold).
        _ = try await send("s1")
        #expect(try await h.client.getBalance(ShopRequest(shopId: Self.shop)).balanceVnd == 2_200)
        // 2,200 − 800 would fall under 2,000: topped up first.
        _ = try await send("s2")
        #expect(try await h.client.getBalance(ShopRequest(shopId: Self.shop)).balanceVnd == 4_400)
        #expect(h.gateway.charges.withLock { $0.map(\.reference) } == ["auto-shop-m-1", "auto-shop-m-2"])
        // A declined card: the send goes against what is left, and when that runs out it is refused.
        h.gateway.decline.withLock { $0 = true }
        for i in 0..<5 { _ = try await send("d\(i)") }
        await expectStatus(.resourceExhausted, naming: "balance") { _ = try await send("d5") }
        try await h.expectBalanceMatchesLedger()
        try await h.database.close()
    }

    @Test func badScenariosAndEventsAreRefusedNamingTheField() async throws {
        let h = try await MessagingHarness.make()
        let sms = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .sms, name: "S", body: "Chào {{name}}", purpose: .marketing))
        let plain = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .sms, name: "P", body: "Chào bạn", purpose: .marketing))
        let mail = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .email, name: "E", body: "Chào bạn", purpose: .marketing))
        let c = h.client
        let s = Self.shop
        let cases: [(RPCError.Code, String, () async throws -> Void)] = [
            (.invalidArgument, "trigger_tag_name", { _ = try await c.createScenario(CreateScenarioRequest(shopId: s, triggerTagName: " ", steps: [ScenarioStep(templateId: plain.templateId)], channel: .sms)) }),
            (.invalidArgument, "steps", { _ = try await c.createScenario(CreateScenarioRequest(shopId: s, triggerTagName: "A", channel: .sms)) }),
            (.invalidArgument, "steps[1].delay_ms", { _ = try await c.createScenario(CreateScenarioRequest(shopId: s, triggerTagName: "A", steps: [ScenarioStep(templateId: plain.templateId), ScenarioStep(delayMs: -5, templateId: plain.templateId)], channel: .sms)) }),
            (.invalidArgument, "steps[0].template_id", { _ = try await c.createScenario(CreateScenarioRequest(shopId: s, triggerTagName: "A", steps: [ScenarioStep(templateId: sms.templateId)], channel: .sms)) }),
            (.invalidArgument, "steps[0].template_id", { _ = try await c.createScenario(CreateScenarioRequest(shopId: s, triggerTagName: "A", steps: [ScenarioStep(templateId: mail.templateId)], channel: .sms)) }),
            (.notFound, "steps[0].template_id", { _ = try await c.createScenario(CreateScenarioRequest(shopId: s, triggerTagName: "A", steps: [ScenarioStep(templateId: "tpl_x")], channel: .sms)) }),
            // No channel: the first step's template's (SMS), which the e-mail step then contradicts.
            (.invalidArgument, "steps[1].template_id", { _ = try await c.createScenario(CreateScenarioRequest(shopId: s, triggerTagName: "A", steps: [ScenarioStep(templateId: plain.templateId), ScenarioStep(templateId: mail.templateId)])) }),
            (.failedPrecondition, "template_id", { _ = try await c.createScenario(CreateScenarioRequest(shopId: s, triggerTagName: "A", steps: [ScenarioStep()])) }),
            (.invalidArgument, "event_id", { _ = try await c.onTagAttached(OnTagAttachedRequest(shopId: s, customerId: "c", tagName: "A", atMs: 1)) }),
            (.invalidArgument, "customer_id", { _ = try await c.onTagAttached(OnTagAttachedRequest(shopId: s, eventId: "e", tagName: "A", atMs: 1)) }),
            (.invalidArgument, "tag_name", { _ = try await c.onTagDetached(OnTagDetachedRequest(shopId: s, eventId: "e", customerId: "c", atMs: 1)) }),
            (.invalidArgument, "at_ms", { _ = try await c.onCustomerMessage(OnCustomerMessageRequest(shopId: s, eventId: "e", customerId: "c")) }),
            (.invalidArgument, "recipient", { _ = try await c.onCustomerMessage(OnCustomerMessageRequest(shopId: s, eventId: "e", customerId: "c", recipient: "abc", atMs: 1)) }),
        ]
        for (code, field, call) in cases {
            await expectStatus(code, naming: field, call)
        }
        #expect(try await c.listScenarios(ListScenariosRequest(shopId: s)).scenarios.isEmpty)
        try await h.database.close()
    }
}
