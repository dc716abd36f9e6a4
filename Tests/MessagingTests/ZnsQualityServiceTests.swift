import ChatMeshAPI
@testable import Messaging
import MeshRPC
import MeshTestSupport
import Testing

/// R-ZNS-1..3 through MessagingService: quota per Vietnam day, purposes unlocked by use,
/// feedback that makes an OA Poor and disables the template that earned it.
@Suite struct ZnsQualityServiceTests {
    static let shop = MessagingHarness.shop
    static let day: Int64 = 86_400_000

    static var smallOA: ZnsQualityPolicy {
        var policy = ZnsQualityPolicy()
        policy.startQuota = 3
        policy.minimumQuota = 1
        return policy
    }

    @Test func theDailyQuotaRenewsAtVietnamMidnight() async throws {
        let h = try await MessagingHarness.make(zns: Self.smallOA)
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 100_000, paymentRef: "r"))
        let template = try await h.znsTemplate()
        for i in 0..<3 { _ = try await h.send(template, key: "d1-\(i)") }
        await expectStatus(.resourceExhausted, naming: "quota") { _ = try await h.send(template, key: "d1-3") }
        var quality = try await h.client.getZnsQuality(ShopRequest(shopId: Self.shop))
        #expect(quality.dailyQuota == 3 && quality.sentToday == 3 && quality.level == .good)
        // 10:00 + 13h59 is 23:59 the same Vietnam day: still used up; a minute later it is a new day.
        h.clock.advance(ms: 13 * 3_600_000 + 59 * 60_000)
        await expectStatus(.resourceExhausted, naming: "quota") { _ = try await h.send(template, key: "d1-4") }
        h.clock.advance(ms: 60_000)
        #expect(try await h.send(template, key: "d2-0").status == "DELIVERED")
        quality = try await h.client.getZnsQuality(ShopRequest(shopId: Self.shop))
        #expect(quality.sentToday == 1)
        try await h.database.close()
    }

    @Test func purposesUnlockWithGoodUseAndPoorFeedbackDisablesTheTemplate() async throws {
        let h = try await MessagingHarness.make(zns: Self.smallOA)
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 1_000_000, paymentRef: "r"))
        let transactional = try await h.znsTemplate()
        let account = try await h.client.createTemplate(CreateTemplateRequest(
            shopId: Self.shop, channel: .zns, name: "Tài khoản", body: "Điểm của {{name}}: {{points}}", purpose: .accountUpdate, providerTemplateId: "zns-300"
        ))
        let params = ["name": "Hoa", "points": "120"]
        // A new OA sends transaction messages only.
        await expectStatus(.failedPrecondition, naming: "ACCOUNT_UPDATE") {
            _ = try await h.client.sendMessage(SendMessageRequest(shopId: Self.shop, channel: .zns, recipient: "0912345678", templateId: account.templateId, params: params, idempotencyKey: "acc-0"))
        }
        // Seven Good days using the whole quota (21 > 2 × 3): the quota doubles and account updates unlock.
        for d in 0..<7 {
            for i in 0..<3 { _ = try await h.send(transactional, key: "t-\(d)-\(i)") }
            h.clock.advance(ms: Self.day)
        }
        var quality = try await h.client.getZnsQuality(ShopRequest(shopId: Self.shop))
        #expect(quality.dailyQuota == 6)
        #expect(quality.allowedPurposes == [.transactionUpdate, .transactionComplete, .accountUpdate])
        var complained: [String] = []
        for i in 0..<6 {
            let sent = try await h.client.sendMessage(SendMessageRequest(
                shopId: Self.shop, channel: .zns, recipient: "0912345678", templateId: account.templateId, params: params, idempotencyKey: "acc-\(i + 1)"
            ))
            #expect(sent.status == "DELIVERED")
            complained.append(sent.messageId)
        }
        // Every recipient of the account template complains (once each, however often it is reported).
        for id in complained {
            _ = try await h.client.recordFeedback(RecordFeedbackRequest(shopId: Self.shop, messageId: id, negative: true))
            _ = try await h.client.recordFeedback(RecordFeedbackRequest(shopId: Self.shop, messageId: id, negative: true))
        }
        h.clock.advance(ms: Self.day)
        quality = try await h.client.getZnsQuality(ShopRequest(shopId: Self.shop))
        // The rolling 7 days up to and including today: 6 complaints over 5 × 3 + 6 + 0 delivered = 28.6 %: Poor.
        #expect(quality.level == .poor)
        #expect(abs(quality.negativeRate - 6.0 / 21.0) < 1e-9)
        let templates = try await h.client.listTemplates(ListTemplatesRequest(shopId: Self.shop, channel: .zns)).templates
        #expect(templates.first { $0.templateId == account.templateId }?.enabled == false)
        #expect(templates.first { $0.templateId == transactional.templateId }?.enabled == true)
        await expectStatus(.failedPrecondition, naming: "disabled") {
            _ = try await h.client.sendMessage(SendMessageRequest(shopId: Self.shop, channel: .zns, recipient: "0912345678", templateId: account.templateId, params: params, idempotencyKey: "acc-after"))
        }
        await expectStatus(.failedPrecondition, naming: "ZNS") {
            let mail = try await h.client.createTemplate(CreateTemplateRequest(shopId: Self.shop, channel: .email, name: "M", body: "Hi", purpose: .marketing))
            let sent = try await h.client.sendMessage(SendMessageRequest(shopId: Self.shop, channel: .email, recipient: "a@b.vn", templateId: mail.templateId, idempotencyKey: "m1"))
            _ = try await h.client.recordFeedback(RecordFeedbackRequest(shopId: Self.shop, messageId: sent.messageId, negative: true))
        }
        try await h.database.close()
    }

    /// R-ZNS-1: feedback counts whenever it arrives, against the day its message was sent:
    /// complaints about a day already judged still count, and today's count at once.
    @Test func lateFeedbackCountsAgainstItsDayAndTodayIsInTheRate() async throws {
        var policy = ZnsQualityPolicy()
        policy.startQuota = 100
        let h = try await MessagingHarness.make(zns: policy)
        _ = try await h.client.topUp(TopUpRequest(shopId: Self.shop, amountVnd: 1_000_000, paymentRef: "r"))
        let template = try await h.znsTemplate()
        var first: [String] = []
        for i in 0..<50 { first.append(try await h.send(template, key: "d0-\(i)").messageId) }
        h.clock.advance(ms: Self.day)
        // Day 0 is judged (Good: no feedback yet).
        #expect(try await h.client.getZnsQuality(ShopRequest(shopId: Self.shop)).level == .good)
        // Today's messages and complaints count at once.
        var today: [String] = []
        for i in 0..<50 { today.append(try await h.send(template, key: "d1-\(i)").messageId) }
        _ = try await h.client.recordFeedback(RecordFeedbackRequest(shopId: Self.shop, messageId: today[0], negative: true))
        var quality = try await h.client.getZnsQuality(ShopRequest(shopId: Self.shop))
        #expect(abs(quality.negativeRate - 1.0 / 100.0) < 1e-9 && quality.level == .good)
        // Late complaints about day 0, after it was judged: they count against day 0.
        for id in first.prefix(4) { _ = try await h.client.recordFeedback(RecordFeedbackRequest(shopId: Self.shop, messageId: id, negative: true)) }
        quality = try await h.client.getZnsQuality(ShopRequest(shopId: Self.shop))
        #expect(abs(quality.negativeRate - 5.0 / 100.0) < 1e-9 && quality.level == .poor)
        // And when day 1 is judged, its window holds them: a Poor day, which disables the template over the limit.
        h.clock.advance(ms: Self.day)
        quality = try await h.client.getZnsQuality(ShopRequest(shopId: Self.shop))
        #expect(quality.level == .poor && abs(quality.negativeRate - 5.0 / 100.0) < 1e-9)
        let templates = try await h.client.listTemplates(ListTemplatesRequest(shopId: Self.shop, channel: .zns)).templates
        #expect(templates.first { $0.templateId == template.templateId }?.enabled == false)
        try await h.database.close()
    }
}
