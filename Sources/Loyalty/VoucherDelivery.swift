import ChatMeshAPI
import MeshRPC
import VietnamCommerce

/// Where a voucher message goes (R-REF-1): messaging-svc's SendMessage in the mesh,
/// a scripted fake in tests.
public protocol VoucherMessenger: Sendable {
    func send(_ request: SendMessageRequest) async throws(RPCError) -> SendMessageResponse
    /// The shop's default template for `use` (FAILED_PRECONDITION naming template_id when it has none).
    func messageDefault(shop: String, use: MessageDefault.Use) async throws(RPCError) -> MessageDefault
}

/// messaging-svc over the wire, with a service token for the voucher's shop.
public struct MessagingVoucherMessenger: VoucherMessenger {
    let client: MessagingService.Client
    let token: @Sendable (_ shop: String) -> String

    /// - Parameter token: a fresh token per call, so a long-running process never sends an expired one.
    public init(channel: any RPCChannel, token: @escaping @Sendable (_ shop: String) -> String) {
        client = MessagingService.Client(channel: channel)
        self.token = token
    }

    public func send(_ request: SendMessageRequest) async throws(RPCError) -> SendMessageResponse {
        try await client.sendMessage(request, options: .bearer(token(request.shopId), timeout: .seconds(10)))
    }

    public func messageDefault(shop: String, use: MessageDefault.Use) async throws(RPCError) -> MessageDefault {
        try await client.getMessageDefault(GetMessageDefaultRequest(shopId: shop, use: use), options: .bearer(token(shop), timeout: .seconds(5)))
    }
}

/// Sends vouchers once: the idempotency key "voucher:<code>" makes a retry —
/// by the caller, by the background job, after a crash — deliver and charge once.
public struct VoucherDelivery: Sendable {
    let store: LoyaltyStore
    let messenger: any VoucherMessenger

    public init(store: LoyaltyStore, messenger: any VoucherMessenger) {
        self.store = store
        self.messenger = messenger
    }

    /// What the friend reads: the template's {{code}}, {{discount}}, {{expires}}, {{referrer}}.
    public static func params(_ pending: LoyaltyStore.PendingVoucher) -> [String: String] {
        let voucher = pending.voucher
        let discount = voucher.discountPercent > 0 ? "\(voucher.discountPercent)%" : VietnameseMoney.format(voucher.discountVnd)
        return ["code": voucher.code, "discount": discount, "expires": VietnamTime.displayDate(atMs: voucher.expiresAtMs), "referrer": pending.referrerName.isEmpty ? "Bạn của bạn" : pending.referrerName]
    }

    /// What became of a voucher's message: sent, or left for the retry with the reason.
    public enum Outcome: Sendable {
        /// messaging-svc accepted the message.
        case sent(Voucher)
        /// messaging-svc could not be reached or was busy; the voucher stays and is sent later.
        case deferred(Voucher, RPCError)
    }

    /// Sends one voucher. A refusal that no retry can mend (the campaign's template
    /// is missing or of the wrong kind) withdraws the voucher and is thrown.
    public func deliver(_ pending: LoyaltyStore.PendingVoucher) async throws -> Outcome {
        var voucher = pending.voucher
        if voucher.sent { return .sent(voucher) }
        let request = SendMessageRequest(
            shopId: pending.shop, channel: pending.channel, recipient: pending.channel == .email ? voucher.friendEmail : voucher.friendPhone,
            templateId: pending.templateId,
            params: Self.params(pending), idempotencyKey: "voucher:" + voucher.code, customerId: ""
        )
        let response: SendMessageResponse
        do {
            response = try await messenger.send(request)
        } catch {
            switch error.code {
            case .invalidArgument, .notFound, .permissionDenied, .unauthenticated:
                try await store.withdrawVoucher(shop: pending.shop, code: voucher.code)
                throw RPCError.failedPrecondition("the referral campaign's template cannot be sent: \(error.code.name): \(error.message)")
            default:
                return .deferred(voucher, error)
            }
        }
        try await store.markVoucherSent(shop: pending.shop, code: voucher.code, messageId: response.messageId)
        voucher.sent = true
        voucher.messageId = response.messageId
        return .sent(voucher)
    }

    /// The background retry: vouchers left unsent for at least `olderThanMs`.
    public func redeliver(nowMs: Int64, olderThanMs: Int64 = 5_000) async throws -> (sent: Int, deferred: Int) {
        var counts = (sent: 0, deferred: 0)
        for pending in try await store.unsentVouchers(beforeMs: nowMs - olderThanMs, limit: 500) {
            do {
                switch try await deliver(pending) {
                case .sent: counts.sent += 1
                case .deferred: counts.deferred += 1
                }
            } catch {
                counts.deferred += 1
            }
        }
        return counts
    }
}
