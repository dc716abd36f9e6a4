import MeshRPC

/// How loyalty-svc answers each of its refusals over gRPC: the one place where a
/// domain error becomes a status. The message names the request field first.
extension LoyaltyError: RPCErrorConvertible {
    public var rpcError: RPCError {
        switch self {
        case .noTier(let id): .notFound("tier_id: no tier \(id)")
        case .tierNameTaken(let name, let tier): .alreadyExists("name: tier \(tier) is already called \"\(name)\"")
        case .notAMember(let customer): .notFound("customer_id: \(customer) is not a member")
        case .noVoucher(let code): .notFound("code: no voucher \(code)")
        case .noSegment(let id): .notFound("segment_id: no segment \(id)")
        case .invalidSegment(let why): .invalidArgument(why)
        case .points(.insufficient(let balance)): .failedPrecondition("points: the member has \(balance) points to spend (R-PTS-3)")
        case .points(.notPositive): .invalidArgument("points must be positive")
        case .orderOfAnotherCustomer(let order): .failedPrecondition("customer_id: order \(order) belongs to another customer")
        case .orderAlreadyReferred(let order, let friend): .alreadyExists("order_id: order \(order) already referred \(friend) (one referral per order)")
        case .orderNotPaid(let order): .failedPrecondition("order_id: order \(order) is not paid (loyalty-svc has no PAID event for it)")
        case .orderReversed(let order): .failedPrecondition("order_id: order \(order) was cancelled or refunded")
        case .referringOwnPhone(let phone): .invalidArgument("friend_phone: \(phone) is the customer's own phone")
        case .referringOwnEmail(let email): .invalidArgument("friend_email: \(email) is the customer's own e-mail address")
        case .referralContactMissing(let field, let channel):
            .invalidArgument("\(field) is required: the shop's referral campaign sends its voucher by \(channel.protoName)")
        case .noReferralCampaign: .failedPrecondition("the shop has no referral campaign (CreateReferralCampaign)")
        case .voucherRedeemed(let code, let order): .failedPrecondition("code: voucher \(code) was already redeemed by order \(order)")
        case .voucherExpired(let code, let day): .failedPrecondition("code: voucher \(code) expired on \(day)")
        case .voucherRace(let code): RPCError(.aborted, "code: voucher \(code) was redeemed at the same moment; try again")
        case .voucherAtCheckout(let code, let problem): .failedPrecondition("voucher_code: voucher \(code) \(problem) (R-ORD-7)")
        case .noPromotion(let id): .notFound("promotion_id: no promotion \(id)")
        case .noAudience(let field, let id): .notFound("\(field): no \(field.hasPrefix("tier") ? "tier" : "segment") \(id)")
        case .adjustmentKeyReused(let key, let segment, let points):
            .alreadyExists("idempotency_key: \(key) already adjusted segment \(segment) by \(points) points")
        case .noAdAccount: .failedPrecondition("segment_id: the shop has linked no ad account yet (LinkAdAccount, R-SEG-3)")
        case .noAudienceSync(let segment): .notFound("segment_id: segment \(segment) has never been synced to an audience")
        }
    }
}
