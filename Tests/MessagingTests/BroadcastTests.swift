import ChatMeshAPI
import Foundation
@testable import Messaging
import MeshRPC
import MeshStore
import MeshTestSupport
import SQLKit
import Synchronization
import Testing

/// An adapter that runs `onDelivery` with the running count before answering delivered.
final class HookedAdapter: DeliveryAdapter {
    let name = "hooked"
    let count = Mutex(0)
    let recipients = Mutex<[String]>([])
    let onDelivery: @Sendable (Int) async -> Void

    init(onDelivery: @escaping @Sendable (Int) async -> Void) {
        self.onDelivery = onDelivery
    }

    func deliver(_ delivery: Delivery) async -> DeliveryOutcome {
        let n = count.withLock { $0 += 1; return $0 }
        recipients.withLock { $0.append(delivery.recipient) }
        await onDelivery(n)
        return .delivered(providerId: "h-\(n)")
    }
}

@Suite struct BroadcastTests {
    static let shop = MessagingHarness.shop

    /// `count` members with distinct phones 0900000000 + i.
    static func members(_ count: Int, from start: Int = 0) -> [SegmentMember] {
        (start..<(start + count)).map { i in
            SegmentMember(customerId: "c\(i)", phone: String(format: "09%08d", i), name: "Khách \(i)", email: "k\(i)@example.vn")
        }
    }

    static func messageCount(_ h: MessagingHarness, broadcast: String) async throws -> (rows: Int, distinctCustomers: Int) {
        try await h.database.read { db in
            let row = try await db.raw("""
                SELECT COUNT(*) AS n, COUNT(DISTINCT customer_id) AS d FROM messages WHERE shop_id = \(bind: Self.shop) AND broadcast_id = \(bind: broadcast)
                """).first()!
            return (try row.decode(column: "n", as: Int.self), try row.decode(column: "d", as: Int.self))
        }
    }

    func smsTemplate(_ h: MessagingHarness, body: String = "Chào {{name}}, {{shop}} giảm 20% hôm nay!") async throws -> Template {
        try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .sms, name: "Khuyến mãi", body: body, purpose: .marketing))
    }

    @Test func aBroadcastReachesItsSegmentWithCountsCostAndReasons() async throws {
        var audience = Self.members(1_230)
        audience[5].phone = ""                                  // no phone
        audience[6].phone = "028 3822 1234"                     // a landline
        audience[7].name = ""                                   // {{name}} has no value
        audience.append(audience[10])                           // listed twice
        var settings = BroadcastRunner.Settings()
        settings.batchSize = 100
        let h = try await MessagingHarness.make(loyalty: FakeLoyalty(["vip": audience]), runner: settings)
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 2_000_000, paymentRef: "napas-7"))
        let template = try await smsTemplate(h)
        let created = try await h.client.createBroadcast(CreateBroadcastRequest(
            shopId: Self.shop, channel: .sms, templateId: template.templateId, segmentId: "vip", params: ["shop": "Shop Hoa"], idempotencyKey: "bc-1"
        ))
        #expect(created.status == .running && created.total == 0)
        // The same key: the same broadcast.
        let again = try await h.client.createBroadcast(CreateBroadcastRequest(
            shopId: Self.shop, channel: .sms, templateId: template.templateId, segmentId: "vip", params: ["shop": "Shop Hoa"], idempotencyKey: "bc-1"
        ))
        #expect(again.broadcastId == created.broadcastId)

        #expect(try await h.runner.runDue() == 1)
        let done = try await h.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: created.broadcastId))
        #expect(done.status == .completed)
        #expect(done.total == 1_231)
        #expect(done.sent == 1_227 && done.failed == 0 && done.skipped == 4)
        #expect(done.sent + done.failed + done.skipped == done.total)
        let reasons = Dictionary(uniqueKeysWithValues: done.skipReasons.map { ($0.reason, $0.count) })
        #expect(reasons == [BroadcastSkip.noPhone: 2, BroadcastSkip.missing(["name"]): 1, BroadcastSkip.duplicate: 1])
        #expect(done.costVnd == 1_227 * 800)
        #expect(done.remainingBalanceVnd == 2_000_000 - 1_227 * 800)
        try await h.expectBalanceMatchesLedger()
        let counted = try await Self.messageCount(h, broadcast: created.broadcastId)
        #expect(counted.rows == 1_227 && counted.distinctCustomers == 1_227)
        let sample = try await h.database.read { db in
            try await db.raw("SELECT body FROM messages WHERE shop_id = \(bind: Self.shop) AND customer_id = 'c42' AND broadcast_id <> ''").first()!.string("body")
        }
        #expect(sample == "Chào Khách 42, Shop Hoa giảm 20% hôm nay!")
        // Nothing is left to run.
        #expect(try await h.runner.runDue() == 0)
        try await h.database.close()
    }

    /// Two delivery reports racing for one broadcast message settle it once: the broadcast's
    /// `sent` goes down by one and the price comes back once (before, each report read SENT
    /// in its own transaction and both settled it).
    @Test func racingUndeliveredReportsSettleABroadcastMessageOnce() async throws {
        let h = try await MessagingHarness.make(loyalty: FakeLoyalty(["vip": Self.members(20)]))
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 100_000, paymentRef: "napas-9"))
        let template = try await h.client.createTemplate(CreateTemplateRequest(
            shopId: Self.shop, channel: .zns, name: "Cập nhật", body: "Đơn của {{name}} đang giao", purpose: .transactionUpdate, providerTemplateId: "z1"
        ))
        // Zalo takes them all; delivery reports follow.
        for index in 0..<20 { h.zns.answer(.sent(providerId: "z\(index)")) }
        let created = try await h.client.createBroadcast(CreateBroadcastRequest(
            shopId: Self.shop, channel: .zns, templateId: template.templateId, segmentId: "vip", idempotencyKey: "bc-race"
        ))
        #expect(try await h.runner.runDue() == 1)
        let ids = try await h.database.read { db in
            try await db.raw("SELECT message_id FROM messages WHERE shop_id = \(bind: Self.shop) AND broadcast_id <> '' ORDER BY message_id LIMIT 20")
                .all().map { try $0.string("message_id") }
        }
        #expect(ids.count == 20)
        let client = h.client
        let answers = await withTaskGroup(of: String.self) { group in
            for id in ids {
                for _ in 0..<2 {
                    group.addTask {
                        (try? await client.recordDeliveryReport(DeliveryReportRequest(shopId: Self.shop, messageId: id, delivered: false, reason: "unreachable")))?.status ?? "ERROR"
                    }
                }
            }
            return await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(answers.count == 40 && answers.allSatisfy { $0 == "FAILED" }, "\(answers)")
        let done = try await h.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: created.broadcastId))
        #expect(done.sent == 0 && done.failed == 20 && done.costVnd == 0, "\(done)")
        #expect(try await h.client.getBalance(ShopRequest(shopId: Self.shop)).balanceVnd == 100_000)
        try await h.expectBalanceMatchesLedger()
        try await h.database.close()
    }

    /// R-MSG-2 profit: an order a recipient pays within the window after their message was
    /// delivered counts for the broadcast (the last one that reached them), once; cancelled,
    /// it leaves again; profit is that revenue less the broadcast's cost.
    @Test func ordersPaidAfterDeliveryAreTheBroadcastsRevenueAndProfit() async throws {
        let h = try await MessagingHarness.make(loyalty: FakeLoyalty(["vip": Self.members(3), "two": Self.members(1, from: 1)]))
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 100_000, paymentRef: "napas-1"))
        let template = try await smsTemplate(h)
        let first = try await h.client.createBroadcast(CreateBroadcastRequest(
            shopId: Self.shop, channel: .sms, templateId: template.templateId, segmentId: "vip", params: ["shop": "Shop Hoa"], idempotencyKey: "p1",
            attributionDays: 3
        ))
        #expect(try await h.runner.runDue() == 1)
        let day: Int64 = 86_400_000
        func event(_ id: String, _ order: String, _ customer: String, _ kind: OnOrderEventRequest.Kind, _ amount: Int64, at: Int64) async throws -> String {
            try await h.client.onOrderEvent(OnOrderEventRequest(
                shopId: Self.shop, eventId: id, orderId: order, customerId: customer, kind: kind, amountVnd: amount, atMs: at
            )).broadcastId
        }
        let sentAt = h.clock.now
        // Paid before the message was delivered: not the broadcast's.
        #expect(try await event("e0", "o0", "c0", .paid, 999_000, at: sentAt - 60_000).isEmpty)
        // c0 pays 2 days later: within the 3 days. Told twice: counted once.
        #expect(try await event("e1", "o1", "c0", .paid, 300_000, at: sentAt + 2 * day) == first.broadcastId)
        #expect(try await event("e1", "o1", "c0", .paid, 300_000, at: sentAt + 2 * day) == first.broadcastId)
        // c1 pays after 4 days: outside the window.
        #expect(try await event("e2", "o2", "c1", .paid, 200_000, at: sentAt + 4 * day).isEmpty)
        // A second broadcast reaches c1 later: c1's next order is the second one's (the last touch).
        h.clock.advance(ms: 5 * day)
        let second = try await h.client.createBroadcast(CreateBroadcastRequest(
            shopId: Self.shop, channel: .sms, templateId: template.templateId, segmentId: "two", params: ["shop": "Shop Hoa"], idempotencyKey: "p2"
        ))
        #expect(try await h.runner.runDue() == 1)
        #expect(try await event("e3", "o3", "c1", .paid, 150_000, at: h.clock.now + day) == second.broadcastId)
        var got = try await h.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: first.broadcastId))
        #expect(got.attributedOrders == 1 && got.attributedRevenueVnd == 300_000 && got.attributionDays == 3)
        #expect(got.costVnd == 3 * 800 && got.profitVnd == 300_000 - 3 * 800)
        #expect(try await h.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: second.broadcastId)).attributionDays == 7)
        // o1 is refunded: it leaves the broadcast's revenue (once).
        #expect(try await event("e4", "o1", "c0", .refunded, 0, at: h.clock.now) == first.broadcastId)
        _ = try await event("e5", "o1", "c0", .cancelled, 0, at: h.clock.now)
        got = try await h.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: first.broadcastId))
        #expect(got.attributedOrders == 0 && got.attributedRevenueVnd == 0 && got.profitVnd == -3 * 800)
        // Only the mesh's services tell messaging-svc about orders.
        let agent = TokenSigner(key: MessagingHarness.key).mint(shopId: Self.shop, staffId: "a", role: .agent)
        let agentClient = MessagingService.Client(
            channel: InProcessChannel(router: RPCRouter(services: [h.handler], verifier: TokenVerifier(key: MessagingHarness.key))), defaultOptions: .bearer(agent)
        )
        await expectStatus(.permissionDenied, naming: "service token") {
            _ = try await agentClient.onOrderEvent(OnOrderEventRequest(shopId: Self.shop, eventId: "x", orderId: "o", customerId: "c0", kind: .paid, atMs: 1))
        }
        await expectStatus(.invalidArgument, naming: "attribution_days") {
            _ = try await h.client.createBroadcast(CreateBroadcastRequest(
                shopId: Self.shop, channel: .sms, templateId: template.templateId, segmentId: "vip", params: ["shop": "Shop Hoa"], attributionDays: 91
            ))
        }
        try await h.database.close()
    }

    @Test func znsBroadcastCountsProviderFailuresRefundsThemAndStopsAtTheQuota() async throws {
        var policy = ZnsQualityPolicy()
        policy.startQuota = 20
        policy.minimumQuota = 1
        let h = try await MessagingHarness.make(zns: policy, loyalty: FakeLoyalty(["s": Self.members(30)]))
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 100_000, paymentRef: "r"))
        let template = try await h.client.createTemplate(CreateTemplateRequest(
            shopId: Self.shop, channel: .zns, name: "Cập nhật", body: "Đơn của {{name}} đang giao", purpose: .transactionUpdate, providerTemplateId: "z1"
        ))
        h.zns.answer(
            .rejected(code: .invalidArgument, message: "-108 invalid phone"), .delivered(providerId: "a"),
            .failedTemporarily(message: "429"), .rejected(code: .invalidArgument, message: "-108 invalid phone")
        )
        var settings = BroadcastRunner.Settings()
        settings.concurrency = 1
        settings.retryBackoff = .milliseconds(1)
        let b = try await h.client.createBroadcast(CreateBroadcastRequest(shopId: Self.shop, channel: .zns, templateId: template.templateId, segmentId: "s"))
        let runner = BroadcastRunner(store: h.store, audience: h.runner.audience, sender: h.sender, settings: settings)
        try await runner.runDue()
        let done = try await h.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: b.broadcastId))
        #expect(done.status == .completed && done.total == 30)
        // Quota 20: 20 reserved, 10 skipped; of the 20, one rejected, the 429 retried and then rejected too.
        #expect(done.skipped == 10 && done.skipReasons == [SkipReason(reason: BroadcastSkip.znsQuota, count: 10)])
        #expect(done.failed == 2 && done.sent == 18)
        #expect(done.costVnd == 18 * 300 && done.remainingBalanceVnd == 100_000 - 18 * 300)
        #expect(h.zns.deliveries.count == 21)
        try await h.expectBalanceMatchesLedger()
        let quality = try await h.client.getZnsQuality(ShopRequest(shopId: Self.shop))
        #expect(quality.sentToday == 18)
        try await h.database.close()
    }

    @Test func cancelStopsABroadcastMidwayAndWhatWasSentStaysSent() async throws {
        let clientBox = Mutex<MessagingService.Client?>(nil)
        let broadcastBox = Mutex("")
        let adapter = HookedAdapter { n in
            if n == 15, let client = clientBox.withLock({ $0 }) {
                _ = try? await client.cancelBroadcast(BroadcastRequest(shopId: BroadcastTests.shop, broadcastId: broadcastBox.withLock { $0 }))
            }
        }
        let h = try await MessagingHarness.make(loyalty: FakeLoyalty(["s": Self.members(100)]))
        clientBox.withLock { $0 = h.client }
        let template = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .email, name: "Tin", body: "Chào {{name}}", purpose: .marketing))
        let b = try await h.client.createBroadcast(CreateBroadcastRequest(shopId: Self.shop, channel: .email, templateId: template.templateId, segmentId: "s"))
        broadcastBox.withLock { $0 = b.broadcastId }
        var settings = BroadcastRunner.Settings()
        settings.batchSize = 10
        let sender = MessageSender(store: h.store, adapters: [.email: adapter], now: { h.clock.now })
        try await BroadcastRunner(store: h.store, audience: h.runner.audience, sender: sender, settings: settings).runDue()
        let done = try await h.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: b.broadcastId))
        // Cancelled during the second batch: that batch finishes, no third one starts.
        #expect(done.status == .cancelled && done.sent == 20 && done.total == 100)
        #expect(adapter.count.withLock { $0 } == 20)
        await expectStatus(.failedPrecondition, naming: "broadcast_id") {
            let other = try await h.client.createBroadcast(CreateBroadcastRequest(
                shopId: Self.shop, channel: .email, templateId: template.templateId, segmentId: "s", idempotencyKey: "second"
            ))
            try await h.runner.runDue()
            _ = try await h.client.cancelBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: other.broadcastId))
        }
        try await h.database.close()
    }

    @Test func aRestartBetweenReserveAndSettleSendsNobodyTwice() async throws {
        let path = try await TestDatabase.location("broadcast-restart")
        var settings = BroadcastRunner.Settings()
        settings.batchSize = 25
        let loyalty = FakeLoyalty(["s": Self.members(110)])
        let first = try await MessagingHarness.make(loyalty: loyalty, runner: settings, path: path)
        let template = try await first.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .email, name: "Tin", body: "Chào {{name}}", purpose: .marketing))
        let b = try await first.client.createBroadcast(CreateBroadcastRequest(shopId: Self.shop, channel: .email, templateId: template.templateId, segmentId: "s"))
        // The first process takes the audience, settles one batch and reserves the next, then dies.
        let job = try #require(try await first.store.broadcastJob(shop: Self.shop, id: b.broadcastId))
        let lease = first.runner.settings.lease
        #expect(try await first.store.claimBroadcast(shop: Self.shop, id: b.broadcastId, lease: lease, nowMs: first.clock.now))
        #expect(try await first.runner.loadAudience(job))
        let loaded = try #require(try await first.store.broadcastJob(shop: Self.shop, id: b.broadcastId))
        let adapter = try #require(first.sender.adapters[.email])
        let held = HeldLease(store: first.store, job: loaded, lease: lease) { first.clock.now }
        for start in [Int64(0), 25] {
            let members = try await first.store.audience(shop: Self.shop, id: b.broadcastId, fromSeq: start, limit: 25)
            let (planned, skipped) = try await first.runner.plan(loaded, template: template, members: members)
            guard case .reserved(let batch) = try await first.store.reserveBatch(
                shop: Self.shop, broadcastId: b.broadcastId, template: template, planned: planned, skipped: skipped, nextSeq: start + 25,
                priceVnd: 0, zns: nil, lease: lease, nowMs: first.clock.now
            ) else { Issue.record("reservation stopped"); return }
            if start == 0 { try await first.runner.deliverAndSettle(loaded, batch, adapter: adapter, held: held) }
        }
        #expect(first.email.deliveries.count == 25)
        try await first.database.close()

        // Restarted in place, it is the same holder (host name and address): it takes its broadcast back at once.
        let second = try await MessagingHarness.make(loyalty: loyalty, runner: settings, path: path)
        #expect(second.runner.settings.lease == lease)
        #expect(try await second.runner.runDue() == 1)
        let done = try await second.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: b.broadcastId))
        #expect(done.status == .completed && done.total == 110 && done.sent == 110 && done.skipped == 0)
        // The reserved batch went first, then the rest: 85 new deliveries, each member once over both lives.
        #expect(second.email.deliveries.count == 85)
        #expect(Set(first.email.deliveries.map(\.recipient)).isDisjoint(with: second.email.deliveries.map(\.recipient)))
        let counted = try await Self.messageCount(second, broadcast: b.broadcastId)
        #expect(counted.rows == 110 && counted.distinctCustomers == 110)
        // The sandbox-style resend of QUEUED messages leaves broadcast messages to the runner.
        #expect(try await second.sender.redeliverQueued(after: 0) == 0)
        try await second.database.close()
    }

    /// Two replicas' runners on one database: one works the broadcast while its lease holds; the other takes
    /// it over when the lease runs out and delivers what the first left reserved; a late write of the first
    /// (it stalled, it did not die) is refused and changes nothing.
    @Test func anotherReplicaTakesABroadcastOverWhenItsLeaseRunsOutAndTheStalledOneChangesNothing() async throws {
        var settings = BroadcastRunner.Settings()
        settings.batchSize = 20
        let h = try await MessagingHarness.make(loyalty: FakeLoyalty(["s": Self.members(70)]), runner: settings)
        var other = settings
        other.lease = RunnerLease(holder: "replica-b", durationMs: settings.lease.durationMs)
        let b2 = BroadcastRunner(store: h.store, audience: h.runner.audience, sender: h.sender, settings: other)
        let template = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .email, name: "Tin", body: "Chào {{name}}", purpose: .marketing))
        let b = try await h.client.createBroadcast(CreateBroadcastRequest(shopId: Self.shop, channel: .email, templateId: template.templateId, segmentId: "s"))
        let lease = h.runner.settings.lease
        #expect(lease.holder != other.lease.holder)

        // Replica A takes it, loads the audience and reserves a batch; then it stalls.
        #expect(try await h.store.claimBroadcast(shop: Self.shop, id: b.broadcastId, lease: lease, nowMs: h.clock.now))
        #expect(try await !h.store.claimBroadcast(shop: Self.shop, id: b.broadcastId, lease: other.lease, nowMs: h.clock.now))
        #expect(try await b2.runDue() == 0)
        let job = try #require(try await h.store.broadcastJob(shop: Self.shop, id: b.broadcastId))
        #expect(try await h.runner.loadAudience(job))
        let loaded = try #require(try await h.store.broadcastJob(shop: Self.shop, id: b.broadcastId))
        let members = try await h.store.audience(shop: Self.shop, id: b.broadcastId, fromSeq: 0, limit: 20)
        let (planned, skipped) = try await h.runner.plan(loaded, template: template, members: members)
        guard case .reserved(let batch) = try await h.store.reserveBatch(
            shop: Self.shop, broadcastId: b.broadcastId, template: template, planned: planned, skipped: skipped, nextSeq: 20,
            priceVnd: 0, zns: nil, lease: lease, nowMs: h.clock.now
        ) else { Issue.record("reservation stopped"); return }

        // Writes of A renewed the lease; just before it runs out B still waits, once it has B takes over.
        h.clock.advance(ms: lease.durationMs - 1)
        #expect(try await b2.runDue() == 0)
        h.clock.advance(ms: 2)
        #expect(try await b2.runDue() == 1)
        let done = try await h.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: b.broadcastId))
        #expect(done.status == .completed && done.total == 70 && done.sent == 70)
        #expect(h.email.deliveries.count == 70 && Set(h.email.deliveries.map(\.recipient)).count == 70)

        // A wakes up with its batch delivered: its settlement and any other write are refused, the counts stay.
        let results = batch.map { ($0.delivery, $0.costVnd, $0.day, DeliveryOutcome.delivered(providerId: "late")) }
        await #expect(throws: MessagingError.leaseLost(broadcastId: b.broadcastId)) {
            try await h.store.settleBatch(
                shop: Self.shop, broadcastId: b.broadcastId, results: results, provider: "email", lease: lease, nowMs: h.clock.now
            )
        }
        let held = HeldLease(store: h.store, job: loaded, lease: lease) { h.clock.now }
        await #expect(throws: MessagingError.leaseLost(broadcastId: b.broadcastId)) {
            try await h.runner.deliverAndSettle(loaded, batch, adapter: h.email, held: held)
        }
        #expect(try await !h.store.renewBroadcast(shop: Self.shop, id: b.broadcastId, lease: lease, nowMs: h.clock.now))
        let after = try await h.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: b.broadcastId))
        #expect(after.sent == 70 && after.failed == 0)
        #expect(try await Self.messageCount(h, broadcast: b.broadcastId) == (70, 70))
        try await h.database.close()
    }

    @Test func aScheduledBroadcastWaitsAndAnUnreachableLoyaltyIsRetriedWithBackoff() async throws {
        let loyalty = FakeLoyalty(["s": Self.members(5)])
        let h = try await MessagingHarness.make(loyalty: loyalty)
        let template = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .email, name: "Tin", body: "Chào {{name}}", purpose: .marketing))
        let b = try await h.client.createBroadcast(CreateBroadcastRequest(
            shopId: Self.shop, channel: .email, templateId: template.templateId, segmentId: "s", scheduleAtMs: h.clock.now + 3_600_000
        ))
        #expect(b.status == .scheduled)
        #expect(try await h.runner.runDue() == 0)
        h.clock.advance(ms: 3_600_000)
        loyalty.failure.withLock { $0 = .unavailable("loyalty-svc is down") }
        #expect(try await h.runner.runDue() == 1)
        var now = try await h.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: b.broadcastId))
        #expect(now.status == .running && now.sent == 0)
        // Within the back-off nothing is tried; after it, with loyalty back, the broadcast completes.
        h.clock.advance(ms: 500)
        #expect(try await h.runner.runDue() == 0)
        loyalty.failure.withLock { $0 = nil }
        h.clock.advance(ms: 1_000)
        #expect(try await h.runner.runDue() == 1)
        now = try await h.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: b.broadcastId))
        #expect(now.status == .completed && now.sent == 5)
        // A segment loyalty-svc does not know fails the broadcast at once.
        let lost = try await h.client.createBroadcast(CreateBroadcastRequest(shopId: Self.shop, channel: .email, templateId: template.templateId, segmentId: "gone"))
        try await h.runner.runDue()
        #expect(try await h.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: lost.broadcastId)).status == .failed)
        try await h.database.close()
    }

    @Test func messengerBroadcastsReachOnlyCustomersInsideTheWindow() async throws {
        let h = try await MessagingHarness.make(loyalty: FakeLoyalty(["s": Self.members(3)]))
        let hour: Int64 = 3_600_000
        for (i, ago) in [(0, 2 * hour), (1, 30 * hour)] {
            _ = try await h.client.onCustomerMessage(OnCustomerMessageRequest(
                shopId: Self.shop, eventId: "m\(i)", pageId: "p1", customerId: "c\(i)", recipient: "7000\(i)", atMs: h.clock.now - ago
            ))
        }
        let template = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .messenger, name: "Live", body: "Tối nay live nhé {{name}}!", purpose: .marketing))
        let b = try await h.client.createBroadcast(CreateBroadcastRequest(shopId: Self.shop, channel: .messenger, templateId: template.templateId, segmentId: "s"))
        try await h.runner.runDue()
        let done = try await h.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: b.broadcastId))
        #expect(done.sent == 1 && done.skipped == 2)
        #expect(Set(done.skipReasons.map(\.reason)) == [BroadcastSkip.outsideWindow, BroadcastSkip.neverMessaged])
        #expect(h.messenger.deliveries.map(\.recipient) == ["70000"] && h.messenger.deliveries[0].humanAgent == false)
        try await h.database.close()
    }

    @Test func aBroadcastTheBalanceCannotCoverSkipsTheRestUnlessAutomaticTopUpPays() async throws {
        let h = try await MessagingHarness.make(loyalty: FakeLoyalty(["s": Self.members(10)]))
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 4_000, paymentRef: "r"))
        let template = try await smsTemplate(h, body: "Chào {{name}}")
        let b = try await h.client.createBroadcast(CreateBroadcastRequest(shopId: Self.shop, channel: .sms, templateId: template.templateId, segmentId: "s"))
        try await h.runner.runDue()
        let done = try await h.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: b.broadcastId))
        #expect(done.sent == 5 && done.skipped == 5 && done.skipReasons == [SkipReason(reason: BroadcastSkip.balance, count: 5)])
        #expect(done.remainingBalanceVnd == 0)
        try await h.expectBalanceMatchesLedger()

        let paid = try await MessagingHarness.make(loyalty: FakeLoyalty(["s": Self.members(10)]), automaticTopUp: true)
        _ = try await paid.client.setAutoTopUp(SetAutoTopUpRequest(shopId: Self.shop, enabled: true, thresholdVnd: 1_000, amountVnd: 5_000))
        let t2 = try await smsTemplate(paid, body: "Chào {{name}}")
        let b2 = try await paid.client.createBroadcast(CreateBroadcastRequest(shopId: Self.shop, channel: .sms, templateId: t2.templateId, segmentId: "s"))
        try await paid.runner.runDue()
        let done2 = try await paid.client.getBroadcast(BroadcastRequest(shopId: Self.shop, broadcastId: b2.broadcastId))
        #expect(done2.sent == 10 && done2.skipped == 0)
        // 8,000 VND needed with 1,000 kept: two top-ups of 5,000, numbered.
        #expect(paid.gateway.charges.withLock { $0.map(\.reference) } == ["auto-shop-m-1", "auto-shop-m-2"])
        #expect(done2.remainingBalanceVnd == 2_000)
        try await paid.expectBalanceMatchesLedger()
        try await h.database.close()
        try await paid.database.close()
    }

    @Test func badBroadcastRequestsAreRefusedNamingTheField() async throws {
        let h = try await MessagingHarness.make()
        let sms = try await smsTemplate(h)
        let c = h.client
        let s = Self.shop
        let cases: [(RPCError.Code, String, () async throws -> Void)] = [
            (.invalidArgument, "channel", { _ = try await c.createBroadcast(CreateBroadcastRequest(shopId: s, templateId: sms.templateId, segmentId: "x")) }),
            (.invalidArgument, "template_id", { _ = try await c.createBroadcast(CreateBroadcastRequest(shopId: s, channel: .sms, segmentId: "x")) }),
            (.notFound, "template_id", { _ = try await c.createBroadcast(CreateBroadcastRequest(shopId: s, channel: .sms, templateId: "tpl_nope", segmentId: "x")) }),
            (.invalidArgument, "template_id", { _ = try await c.createBroadcast(CreateBroadcastRequest(shopId: s, channel: .email, templateId: sms.templateId, segmentId: "x")) }),
            (.invalidArgument, "segment_id", { _ = try await c.createBroadcast(CreateBroadcastRequest(shopId: s, channel: .sms, templateId: sms.templateId, segmentId: " ", params: ["shop": "A"])) }),
            (.invalidArgument, "{{shop}}", { _ = try await c.createBroadcast(CreateBroadcastRequest(shopId: s, channel: .sms, templateId: sms.templateId, segmentId: "x")) }),
            (.invalidArgument, "schedule_at_ms", { _ = try await c.createBroadcast(CreateBroadcastRequest(shopId: s, channel: .sms, templateId: sms.templateId, segmentId: "x", scheduleAtMs: -1, params: ["shop": "A"])) }),
            (.invalidArgument, "broadcast_id", { _ = try await c.getBroadcast(BroadcastRequest(shopId: s)) }),
            (.notFound, "broadcast_id", { _ = try await c.getBroadcast(BroadcastRequest(shopId: s, broadcastId: "bc_nope")) }),
            (.notFound, "broadcast_id", { _ = try await c.cancelBroadcast(BroadcastRequest(shopId: s, broadcastId: "bc_nope")) }),
        ]
        for (code, field, call) in cases {
            await expectStatus(code, naming: field, call)
        }
        // Another shop's token cannot read this shop's broadcast.
        let b = try await c.createBroadcast(CreateBroadcastRequest(shopId: s, channel: .sms, templateId: sms.templateId, segmentId: "x", params: ["shop": "A"]))
        let other = TokenSigner(key: MessagingHarness.key).mint(shopId: "shop-other", staffId: "s", role: .owner)
        await expectStatus(.permissionDenied, naming: "shop_id") {
            _ = try await c.getBroadcast(BroadcastRequest(shopId: s, broadcastId: b.broadcastId), options: .bearer(other))
        }
        await expectStatus(.notFound, naming: "broadcast_id") {
            _ = try await c.getBroadcast(BroadcastRequest(shopId: "shop-other", broadcastId: b.broadcastId), options: .bearer(other))
        }
        try await h.database.close()
    }
}
