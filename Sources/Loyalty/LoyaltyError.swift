import ChatMeshAPI

/// Why loyalty-svc refuses a command, as its rules and store see it; how each is
/// answered over gRPC is said once, in `LoyaltyServiceHandler+Status.swift`.
public enum LoyaltyError: Error, Sendable, Hashable {
    case noTier(String)
    case tierNameTaken(name: String, byTier: String)
    case notAMember(String)
    case noVoucher(String)
    case noSegment(String)
    /// A segment's match or conditions as given cannot be a rule; the text names the field.
    case invalidSegment(String)
    /// R-PTS-3, R-PTS-4: what the points account refused.
    case points(PointsAccount.Refusal)
    /// An order's events name one customer for good.
    case orderOfAnotherCustomer(String)

    // R-REF-1: referrals and their vouchers.
    case orderAlreadyReferred(order: String, friend: String)
    case orderNotPaid(String)
    case orderReversed(String)
    case referringOwnPhone(String)
    case referringOwnEmail(String)
    /// The active campaign sends by `channel`, which needs `field`.
    case referralContactMissing(field: String, channel: Template.Channel)
    case noReferralCampaign
    case voucherRedeemed(code: String, byOrder: String)
    case voucherExpired(code: String, onDay: String)
    /// Two orders took the voucher at the same moment; this one lost.
    case voucherRace(String)

    /// R-ORD-7: a voucher an order cannot use; `problem` says why.
    case voucherAtCheckout(code: String, problem: String)

    // R-SEG-4: promotions.
    case noPromotion(String)
    /// A segment or tier a promotion targets does not exist; `field` names it (segment_ids[1]).
    case noAudience(field: String, id: String)

    // R-PTS-5: the same key was used for another adjustment.
    case adjustmentKeyReused(key: String, segment: String, points: Int64)

    // R-SEG-3: audiences.
    case noAdAccount
    case noAudienceSync(String)
}
