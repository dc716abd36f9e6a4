import ChatMeshAPI
import Foundation
@testable import Loyalty
import MeshRPC
import MeshStore
import MeshTestSupport
import SQLKit
import Testing
import VietnamCommerce

/// R-REF-1 through the router, with messaging-svc scripted.
@Suite struct ReferralTests {
    static let shop = LoyaltyHarness.shop

    /// A program, a campaign (10%, 30 days, SMS template "tpl-ref"), and Lan (0912 345 678) with paid order o1.
    static func referralShop(_ h: LoyaltyHarness) async throws {
        _ = try await h.client.configureProgram(ConfigureProgramRequest(shopId: shop, earnVndPerPoint: 10_000))
        _ = try await h.client.createReferralCampaign(CreateReferralCampaignRequest(
            shopId: shop, name: "Bạn mới giảm 10%", offer: ReferralOffer(discountPercent: 10, validDays: 30), channel: .sms, templateId: "tpl-ref"
        ))
        _ = try await h.client.upsertCustomerProfile(UpsertCustomerProfileRequest(shopId: shop, customerId: "lan", phone: "0912 345 678", name: "Nguyễn Thị Lan"))
        try await h.paid("lan", "o1", vnd: 450_000)
    }

    @Test func aPaidOrderRefersOneFriendWhoseVoucherIsSentOnceAndRedeemsOnce() async throws {
        try await LoyaltyHarness.run { h in
            try await Self.referralShop(h)
            let voucher = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendPhone: "+84 987 654 321", customerId: "lan"))
            #expect(voucher.code.hasPrefix("GT") && voucher.code.count == 10)
            #expect(voucher.friendPhone == "0987654321" && voucher.discountPercent == 10 && voucher.referrerCustomerId == "lan")
            #expect(voucher.sent && voucher.messageId == "msg-voucher:" + voucher.code)
            // 30 days from 25 November: the end of 25 December, Vietnam time.
            #expect(voucher.expiresAtMs == VietnamTime.ms(year: 2026, month: 12, day: 26) - 1)

            let sent = h.messenger.requests.withLock { $0 }
            #expect(sent.count == 1)
            #expect(sent[0].channel == .sms && sent[0].templateId == "tpl-ref" && sent[0].recipient == "0987654321")
            #expect(sent[0].idempotencyKey == "voucher:" + voucher.code)
            #expect(sent[0].params == ["code": voucher.code, "discount": "10%", "expires": "25/12/2026", "referrer": "Nguyễn Thị Lan"])

            // The same referral again (a retried call): the same voucher, no second message.
            let again = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendPhone: "0987654321"))
            #expect(again.code == voucher.code)
            #expect(h.messenger.requests.withLock { $0.count } == 1)
            // One referral per order.
            await expectStatus(.alreadyExists, naming: "order_id") {
                _ = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendPhone: "0977000111"))
            }

            let redeemed = try await h.client.redeemVoucher(RedeemVoucherRequest(shopId: Self.shop, code: voucher.code.lowercased(), orderId: "o-friend"))
            #expect(redeemed.redeemed && redeemed.redeemedOrderId == "o-friend")
            // A retry for the same order is the same answer; another order is refused.
            #expect(try await h.client.redeemVoucher(RedeemVoucherRequest(shopId: Self.shop, code: voucher.code, orderId: "o-friend")).redeemed)
            await expectStatus(.failedPrecondition, naming: "code") {
                _ = try await h.client.redeemVoucher(RedeemVoucherRequest(shopId: Self.shop, code: voucher.code, orderId: "o-other"))
            }
            await expectStatus(.notFound, naming: "code") {
                _ = try await h.client.redeemVoucher(RedeemVoucherRequest(shopId: Self.shop, code: "GTNOPE", orderId: "o-other"))
            }
            // Another shop cannot see it.
            await expectStatus(.notFound, naming: "code") {
                _ = try await h.client(shop: "shop-x").redeemVoucher(RedeemVoucherRequest(shopId: "shop-x", code: voucher.code, orderId: "o-x"))
            }
        }
    }

    @Test func anEmailCampaignSendsToTheFriendsAddressNeverTheBuyersOwn() async throws {
        try await LoyaltyHarness.run { h in
            _ = try await h.client.configureProgram(ConfigureProgramRequest(shopId: Self.shop, earnVndPerPoint: 10_000))
            _ = try await h.client.createReferralCampaign(CreateReferralCampaignRequest(
                shopId: Self.shop, name: "Bạn mới giảm 50k", offer: ReferralOffer(discountVnd: 50_000, validDays: 30), channel: .email, templateId: "tpl-mail"
            ))
            _ = try await h.client.upsertCustomerProfile(UpsertCustomerProfileRequest(
                shopId: Self.shop, customerId: "lan", phone: "0912 345 678", name: "Nguyễn Thị Lan", email: "lan@shop.vn"
            ))
            try await h.paid("lan", "o1", vnd: 450_000)
            await expectStatus(.invalidArgument, naming: "friend_email") {
                _ = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendPhone: "0987654321"))
            }
            await expectStatus(.invalidArgument, naming: "friend_email") {
                _ = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendEmail: " LAN@shop.vn "))  // her own
            }
            #expect(h.messenger.requests.withLock { $0.isEmpty })
            let voucher = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendEmail: "Hoa@Gmail.com"))
            #expect(voucher.friendEmail == "hoa@gmail.com" && voucher.friendPhone.isEmpty && voucher.sent)
            let sent = h.messenger.requests.withLock { $0 }
            #expect(sent.map(\.channel) == [.email] && sent.map(\.recipient) == ["hoa@gmail.com"] && sent[0].templateId == "tpl-mail")
            // The same referral again is the same voucher; another address is another referral, refused.
            #expect(try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendEmail: "hoa@gmail.com")).code == voucher.code)
            await expectStatus(.alreadyExists, naming: "order_id") {
                _ = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendEmail: "minh@gmail.com"))
            }
            // A profile without an e-mail address keeps the one loyalty-svc has (R-CONV-10).
            _ = try await h.client.upsertCustomerProfile(UpsertCustomerProfileRequest(shopId: Self.shop, customerId: "lan", phone: "0912 345 678", name: "Lan"))
            #expect(try await h.store.segmentMembers(
                shop: Self.shop, rule: SegmentRule.checking(.all, [SegmentCondition(kind: .pointsAtLeast, points: 0)]), after: "", limit: 10
            ).first { $0.customerId == "lan" }?.email == "lan@shop.vn")
        }
    }

    @Test func refusalsNameTheFieldAndWriteNothing() async throws {
        try await LoyaltyHarness.run { h in
            try await Self.referralShop(h)
            let before = try await h.rowCounts()
            await expectStatus(.invalidArgument, naming: "friend_phone") {
                _ = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendPhone: "+84 912.345.678"))  // her own
            }
            await expectStatus(.invalidArgument, naming: "friend_phone") {
                _ = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendPhone: "024 3825 1234"))   // a landline
            }
            await expectStatus(.failedPrecondition, naming: "order_id") {
                _ = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o-unpaid", friendPhone: "0987654321"))
            }
            await expectStatus(.failedPrecondition, naming: "customer_id") {
                _ = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendPhone: "0987654321", customerId: "minh"))
            }
            await expectStatus(.invalidArgument, naming: "offer") {
                _ = try await h.client.createReferralCampaign(CreateReferralCampaignRequest(
                    shopId: Self.shop, name: "Sai", offer: ReferralOffer(discountPercent: 10, discountVnd: 50_000, validDays: 30), channel: .sms, templateId: "t"
                ))
            }
            await expectStatus(.invalidArgument, naming: "channel") {
                _ = try await h.client.createReferralCampaign(CreateReferralCampaignRequest(
                    shopId: Self.shop, name: "Sai", offer: ReferralOffer(discountVnd: 50_000, validDays: 30), channel: .messenger, templateId: "t"
                ))
            }
            // messaging-svc refuses the template for good: the voucher is taken back.
            h.messenger.failure.withLock { $0 = RPCError.notFound("template_id: no template tpl-ref") }
            await expectStatus(.failedPrecondition, naming: "template") {
                _ = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendPhone: "0987654321"))
            }
            #expect(try await h.rowCounts() == before)
            // A cancelled order refers no one.
            _ = try await h.client.recordOrderEvent(RecordOrderEventRequest(shopId: Self.shop, eventId: "c1", orderId: "o1", customerId: "lan", kind: .cancelled))
            h.messenger.failure.withLock { $0 = nil }
            await expectStatus(.failedPrecondition, naming: "order_id") {
                _ = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendPhone: "0987654321"))
            }
        }
    }

    /// R-REF-1: the phone the order shipped to is the buyer's own too, and a chat profile
    /// without a phone (a page that never learnt it) does not blank the one loyalty-svc has.
    @Test func neitherTheShippingPhoneNorAProfileSyncedWithoutAPhoneLetsABuyerReferThemself() async throws {
        try await LoyaltyHarness.run { h in
            try await Self.referralShop(h)
            _ = try await h.client.recordOrderEvent(RecordOrderEventRequest(
                shopId: Self.shop, eventId: "paid-o2", orderId: "o2", customerId: "lan", kind: .paid, amountVnd: 300_000, channel: .social,
                atMs: h.clock.now, phone: "+84 977 000 111"
            ))
            await expectStatus(.invalidArgument, naming: "friend_phone") {
                _ = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o2", friendPhone: "0977000111"))
            }
            // The chat profile arrives without a phone: Lan's 0912 345 678 is still hers.
            _ = try await h.client.upsertCustomerProfile(UpsertCustomerProfileRequest(shopId: Self.shop, customerId: "lan", name: "Nguyễn Thị Lan", atMs: h.clock.now))
            await expectStatus(.invalidArgument, naming: "friend_phone") {
                _ = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendPhone: "0912345678"))
            }
        }
    }

    /// API.md: a campaign that names no template takes the shop's REFERRAL_OFFER default, and its channel.
    @Test func aReferralCampaignWithoutATemplateTakesTheShopsDefault() async throws {
        try await LoyaltyHarness.run { h in
            let offer = ReferralOffer(discountPercent: 10, validDays: 30)
            await expectStatus(.failedPrecondition, naming: "template_id") {
                _ = try await h.client.createReferralCampaign(CreateReferralCampaignRequest(shopId: Self.shop, name: "Bạn mới", offer: offer))
            }
            h.messenger.defaults.withLock { $0[.referralOffer] = MessageDefault(use: .referralOffer, channel: .zns, templateId: "tpl-zns-ref") }
            let campaign = try await h.client.createReferralCampaign(CreateReferralCampaignRequest(shopId: Self.shop, name: "Bạn mới", offer: offer))
            #expect(campaign.channel == .zns && campaign.templateId == "tpl-zns-ref")
            await expectStatus(.failedPrecondition, naming: "template_id") {
                _ = try await h.client.createReferralCampaign(CreateReferralCampaignRequest(shopId: Self.shop, name: "Bạn mới", offer: offer, channel: .email))
            }
        }
    }

    @Test func aVoucherMadeWhileMessagingIsDownIsSentLaterOnce() async throws {
        try await LoyaltyHarness.run { h in
            try await Self.referralShop(h)
            h.messenger.failure.withLock { $0 = RPCError.unavailable("connection refused") }
            let voucher = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendPhone: "0987654321"))
            #expect(!voucher.sent)
            // Still down: the retry leaves it waiting.
            var counts = try await h.vouchers.redeliver(nowMs: h.clock.now + 60_000)
            #expect(counts.sent == 0 && counts.deferred == 1)
            h.messenger.failure.withLock { $0 = nil }
            counts = try await h.vouchers.redeliver(nowMs: h.clock.now + 60_000)
            #expect(counts.sent == 1)
            #expect(try await h.vouchers.redeliver(nowMs: h.clock.now + 120_000).sent == 0)
            #expect(try await h.store.voucher(shop: Self.shop, code: voucher.code).sent)
            // Every attempt carried the same idempotency key, so messaging-svc delivers it once.
            #expect(Set(h.messenger.requests.withLock { $0.map(\.idempotencyKey) }) == ["voucher:" + voucher.code])
        }
    }

    @Test func aFixedAmountVoucherExpiresAtTheEndOfItsLastDay() async throws {
        try await LoyaltyHarness.run { h in
            try await Self.referralShop(h)
            _ = try await h.client.createReferralCampaign(CreateReferralCampaignRequest(
                shopId: Self.shop, name: "Giảm 50k", offer: ReferralOffer(discountVnd: 50_000, validDays: 1), channel: .zns, templateId: "tpl-zns"
            ))
            let voucher = try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o1", friendPhone: "0987654321"))
            #expect(voucher.discountVnd == 50_000 && voucher.discountPercent == 0)
            #expect(h.messenger.requests.withLock { $0.last?.params["discount"] } == "50.000đ")
            #expect(h.messenger.requests.withLock { $0.last?.channel } == .zns)
            h.clock.advance(ms: VietnamTime.ms(year: 2026, month: 11, day: 27) - h.clock.now - 1)   // 26 Nov 23:59:59.999
            #expect(try await h.client.redeemVoucher(RedeemVoucherRequest(shopId: Self.shop, code: voucher.code, orderId: "late")).redeemed)
            let second = try await {
                try await h.paid("lan", "o2", vnd: 300_000)
                return try await h.client.submitReferral(SubmitReferralRequest(shopId: Self.shop, orderId: "o2", friendPhone: "0987654322"))
            }()
            h.clock.advance(ms: 2 * VietnamTime.dayMs)
            await expectStatus(.failedPrecondition, naming: "code") {
                _ = try await h.client.redeemVoucher(RedeemVoucherRequest(shopId: Self.shop, code: second.code, orderId: "too-late"))
            }
        }
    }
}
