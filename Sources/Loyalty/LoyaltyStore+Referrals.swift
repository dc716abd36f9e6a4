import ChatMeshAPI
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// R-REF-1: referral campaigns and the vouchers they give. The store only keeps
/// the facts; sending a voucher is `VoucherDelivery`'s job.
extension LoyaltyStore {
    /// A voucher with what it takes to send it.
    public struct PendingVoucher: Sendable {
        public var shop: String
        public var voucher: Voucher
        public var channel: Template.Channel
        public var templateId: String
        public var referrerName: String
    }

    /// Starts a campaign; the one before it (if any) stops giving vouchers.
    public func createReferralCampaign(shop: String, _ campaign: ReferralCampaign, nowMs: Int64) async throws -> ReferralCampaign {
        let id = SortableID.make("ref_", nowMs: nowMs)
        var saved = campaign
        saved.campaignId = id
        saved.active = true
        let offer = campaign.offer ?? ReferralOffer()
        try await write { db in
            try await db.raw("UPDATE referral_campaigns SET active = 0 WHERE shop_id = \(bind: shop) AND active = 1").run()
            try await db.raw("""
                INSERT INTO referral_campaigns (shop_id, campaign_id, name, discount_percent, discount_vnd, valid_days, channel, template_id, active, created_at_ms)
                VALUES (\(bind: shop), \(bind: id), \(bind: campaign.name), \(bind: Int64(offer.discountPercent)), \(bind: offer.discountVnd),
                        \(bind: Int64(offer.validDays)), \(bind: Int64(campaign.channel.rawValue)), \(bind: campaign.templateId), 1, \(bind: nowMs))
                """).run()
        }
        return saved
    }

    /// Makes the voucher for a paid order's referral, or finds the one it already
    /// has (same contact: a retry; another: ALREADY_EXISTS). `friendPhone` is normalised
    /// or empty, `friendEmail` trimmed and lower-cased or empty; the active campaign's
    /// channel says which one it needs.
    public func submitReferral(
        shop: String, orderId: String, friendPhone: String, friendEmail: String = "", customerId: String, staffId: String, nowMs: Int64
    ) async throws -> PendingVoucher {
        return try await write { db in
            if let row = try await db.raw("SELECT * FROM vouchers WHERE shop_id = \(bind: shop) AND order_id = \(bind: orderId)").first() {
                let existing = try Self.pending(row, shop: shop)
                let known = existing.channel == .email ? existing.voucher.friendEmail : existing.voucher.friendPhone
                guard known == (existing.channel == .email ? friendEmail : friendPhone) else {
                    throw LoyaltyError.orderAlreadyReferred(order: orderId, friend: known)
                }
                if !customerId.isEmpty && existing.voucher.referrerCustomerId != customerId {
                    throw LoyaltyError.orderOfAnotherCustomer(orderId)
                }
                return existing
            }
            guard let order = try await db.raw("""
                SELECT customer_id, reversed, phone FROM orders WHERE shop_id = \(bind: shop) AND order_id = \(bind: orderId)
                """).first() else {
                throw LoyaltyError.orderNotPaid(orderId)
            }
            let buyer = try order.string("customer_id")
            if !customerId.isEmpty && buyer != customerId {
                throw LoyaltyError.orderOfAnotherCustomer(orderId)
            }
            if try order.int64("reversed") != 0 {
                throw LoyaltyError.orderReversed(orderId)
            }
            guard let campaign = try await db.raw("""
                SELECT * FROM referral_campaigns WHERE shop_id = \(bind: shop) AND active = 1
                """).first() else {
                throw LoyaltyError.noReferralCampaign
            }
            let channel = Template.Channel(rawValue: Int32(try campaign.int64("channel")))
            let byEmail = channel == .email
            if byEmail ? friendEmail.isEmpty : friendPhone.isEmpty {
                throw LoyaltyError.referralContactMissing(field: byEmail ? "friend_email" : "friend_phone", channel: channel)
            }
            // R-REF-1: never to the buyer's own contact (R-CONV-10: their e-mail address as well as their phone).
            let profile = try await db.raw("SELECT phone, email, name FROM members WHERE shop_id = \(bind: shop) AND customer_id = \(bind: buyer)").first()
            // The phone the order ships to is the buyer's too, whatever the profile says.
            if !friendPhone.isEmpty, try order.string("phone") == friendPhone {
                throw LoyaltyError.referringOwnPhone(friendPhone)
            }
            if let profile, !friendPhone.isEmpty, try profile.string("phone") == friendPhone {
                throw LoyaltyError.referringOwnPhone(friendPhone)
            }
            if let profile, !friendEmail.isEmpty, EmailAddress.normalize(try profile.string("email")) == friendEmail {
                throw LoyaltyError.referringOwnEmail(friendEmail)
            }
            let today = VietnamTime.dayNumber(atMs: nowMs)
            let last = VietnamTime.civil(dayNumber: today + (try campaign.int64("valid_days")))
            var voucher = Voucher(
                code: "", friendPhone: byEmail ? "" : friendPhone, discountPercent: Int32(try campaign.int64("discount_percent")),
                discountVnd: try campaign.int64("discount_vnd"),
                expiresAtMs: VietnamTime.day(year: last.year, month: last.month, day: last.day).upperBound - 1,
                referrerCustomerId: buyer, orderId: orderId, campaignId: try campaign.string("campaign_id"), friendEmail: byEmail ? friendEmail : ""
            )
            let name = try profile?.string("name") ?? ""
            let template = try campaign.string("template_id")
            // A clash of random codes is rare; a new draw settles it.
            while voucher.code.isEmpty {
                let code = VoucherCode.random()
                let inserted = try await db.raw("""
                    INSERT INTO vouchers (shop_id, code, campaign_id, order_id, referrer_customer_id, referrer_name, friend_phone, friend_email,
                                          discount_percent, discount_vnd, expires_at_ms, channel, template_id, staff_id, created_at_ms)
                    VALUES (\(bind: shop), \(bind: code), \(bind: voucher.campaignId), \(bind: orderId), \(bind: buyer), \(bind: name),
                            \(bind: voucher.friendPhone), \(bind: voucher.friendEmail), \(bind: Int64(voucher.discountPercent)), \(bind: voucher.discountVnd),
                            \(bind: voucher.expiresAtMs), \(bind: Int64(channel.rawValue)), \(bind: template), \(bind: staffId), \(bind: nowMs))
                    ON CONFLICT (shop_id, code) DO NOTHING RETURNING code
                    """).all()
                if !inserted.isEmpty { voucher.code = code }
            }
            return PendingVoucher(
                shop: shop, voucher: voucher, channel: channel, templateId: template, referrerName: name
            )
        }
    }

    static func pending(_ row: any SQLRow, shop: String) throws -> PendingVoucher {
        let voucher = Voucher(
            code: try row.string("code"), friendPhone: try row.string("friend_phone"), discountPercent: Int32(try row.int64("discount_percent")),
            discountVnd: try row.int64("discount_vnd"), expiresAtMs: try row.int64("expires_at_ms"),
            redeemed: !(try row.string("redeemed_order_id")).isEmpty, referrerCustomerId: try row.string("referrer_customer_id"),
            orderId: try row.string("order_id"), sent: try row.int64("sent") != 0, messageId: try row.string("message_id"),
            redeemedOrderId: try row.string("redeemed_order_id"), campaignId: try row.string("campaign_id"), friendEmail: try row.string("friend_email")
        )
        return PendingVoucher(
            shop: shop, voucher: voucher, channel: Template.Channel(rawValue: Int32(try row.int64("channel"))),
            templateId: try row.string("template_id"), referrerName: try row.string("referrer_name")
        )
    }

    /// A referral voucher by its code.
    public func voucher(shop: String, code: String) async throws -> Voucher {
        try await db.read { db in
            guard let row = try await db.raw("SELECT * FROM vouchers WHERE shop_id = \(bind: shop) AND code = \(bind: code)").first() else {
                throw LoyaltyError.noVoucher(code)
            }
            return try Self.pending(row, shop: shop).voucher
        }
    }

    /// Records that messaging-svc accepted the voucher's message (its message id), so it is never sent again.
    public func markVoucherSent(shop: String, code: String, messageId: String) async throws {
        return try await write { db in
            try await db.raw("""
                UPDATE vouchers SET sent = 1, message_id = \(bind: messageId) WHERE shop_id = \(bind: shop) AND code = \(bind: code)
                """).run()
        }
    }

    /// Takes back a voucher that could never be sent (the campaign's template is
    /// wrong), so that the refused SubmitReferral leaves nothing behind.
    public func withdrawVoucher(shop: String, code: String) async throws {
        return try await write { db in
            try await db.raw("DELETE FROM vouchers WHERE shop_id = \(bind: shop) AND code = \(bind: code) AND sent = 0").run()
        }
    }

    /// Vouchers, every shop, made before `beforeMs` and not yet accepted by messaging-svc.
    public func unsentVouchers(beforeMs: Int64, limit: Int) async throws -> [PendingVoucher] {
        try await db.read { db in
            try await db.raw("""
                SELECT * FROM vouchers WHERE sent = 0 AND created_at_ms < \(bind: beforeMs) ORDER BY created_at_ms LIMIT \(literal: limit)
                """).all().map { try Self.pending($0, shop: try $0.string("shop_id")) }
        }
    }

    /// R-REF-1: once, for one order, before the voucher expires.
    public func redeemVoucher(shop: String, code: String, orderId: String, nowMs: Int64) async throws -> Voucher {
        return try await write { db in
            guard let row = try await db.raw("SELECT * FROM vouchers WHERE shop_id = \(bind: shop) AND code = \(bind: code)").first() else {
                throw LoyaltyError.noVoucher(code)
            }
            var voucher = try Self.pending(row, shop: shop).voucher
            if voucher.redeemed {
                if voucher.redeemedOrderId == orderId { return voucher }
                throw LoyaltyError.voucherRedeemed(code: code, byOrder: voucher.redeemedOrderId)
            }
            if nowMs > voucher.expiresAtMs {
                throw LoyaltyError.voucherExpired(code: code, onDay: VietnamTime.dateString(atMs: voucher.expiresAtMs))
            }
            let updated = try await db.raw("""
                UPDATE vouchers SET redeemed_order_id = \(bind: orderId), redeemed_at_ms = \(bind: nowMs)
                WHERE shop_id = \(bind: shop) AND code = \(bind: code) AND redeemed_order_id = '' RETURNING code
                """).all()
            guard !updated.isEmpty else { throw LoyaltyError.voucherRace(code) }
            voucher.redeemed = true
            voucher.redeemedOrderId = orderId
            return voucher
        }
    }
}

/// Voucher codes: 8 characters a customer can read out and type (no 0/O, 1/I/L).
public enum VoucherCode {
    static let alphabet = Array("ABCDEFGHJKMNPQRSTUVWXYZ23456789")

    /// A new voucher code: short, unambiguous letters and digits a customer can type.
    public static func random() -> String {
        var generator = SystemRandomNumberGenerator()
        return "GT" + String((0..<8).map { _ in alphabet.randomElement(using: &generator)! })
    }

    /// A code as a customer might type it (spaces, dashes, lower case), as stored.
    public static func normalize(_ raw: String) -> String {
        raw.trimmingCharacters(in: .whitespaces).uppercased()
    }
}
