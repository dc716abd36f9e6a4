import ChatMeshAPI
import Foundation
import MeshChanges
import MeshRPC
import MeshStore
import VietnamCommerce

/// chatmesh.v1.LoyaltyService: decodes, checks (statuses name the field),
/// calls the store; referral vouchers go out through `VoucherDelivery`.
public struct LoyaltyServiceHandler: LoyaltyService.Handler, DrainingService {
    let store: LoyaltyStore
    let vouchers: VoucherDelivery?
    /// The change feed (WatchChanges); nil where nothing watches (unit tests).
    let changes: ChangeFeed?
    let stallLimit: Duration
    /// Seals ad account tokens at rest (R-SEG-3); nil where no token may be kept (unit tests).
    let sealer: AdTokenSealer?
    let now: @Sendable () -> Int64

    public init(
        store: LoyaltyStore, vouchers: VoucherDelivery?, changes: ChangeFeed? = nil, stallLimit: Duration = .seconds(60), sealer: AdTokenSealer? = nil,
        now: @escaping @Sendable () -> Int64 = { WallClock.nowMs() }
    ) {
        self.store = store
        self.vouchers = vouchers
        self.sealer = sealer
        self.changes = changes
        self.stallLimit = stallLimit
        self.now = now
    }

    public func beginDraining() async {
        changes?.log.drain()
    }

    /// R-PANEL-4.
    public func watchChanges(_ request: WatchChangesRequest, responses: RPCWriter<WatchChangesResponse>, context: ServerContext) async throws {
        guard let changes else { throw RPCError.unimplemented("this loyalty-svc keeps no change log") }
        try await changes.serve(request, responses: responses, stallLimit: stallLimit)
    }

    static func id(_ value: String, _ field: String) throws(RPCError) -> String { try FieldCheck.id(value, field) }

    // MARK: Program and tiers (R-LOY-2, R-PTS-1..2)

    static func program(_ rules: ProgramRules) -> Program {
        let expiry: PointsExpiry = switch rules.expiry {
        case .never: PointsExpiry(kind: .never)
        case .fixedDate(let y, let m, let d): PointsExpiry(kind: .fixedDate, date: String(format: "%04d-%02d-%02d", y, m, d))
        case .afterMonths(let n): PointsExpiry(kind: .afterMonths, months: Int32(n))
        }
        let cycle: Program.Cycle = switch rules.cycle {
        case .lifetime: .lifetime
        case .rolling12Months: .rolling12Months
        case .calendarYear: .calendarYear
        }
        return Program(
            earnVndPerPoint: rules.earnVndPerPoint, redeemVndPerPoint: rules.redeemVndPerPoint, expiry: expiry, cycle: cycle, cycleStartMs: rules.cycleStartMs
        )
    }

    public func configureProgram(_ request: ConfigureProgramRequest, context: ServerContext) async throws -> Program {
        guard (1...1_000_000_000).contains(request.earnVndPerPoint) else { throw RPCError.invalidArgument("earn_vnd_per_point must be 1 to 1,000,000,000") }
        guard (0...1_000_000_000).contains(request.redeemVndPerPoint) else {
            throw RPCError.invalidArgument("redeem_vnd_per_point must be 0 (no redemption) to 1,000,000,000")
        }
        if request.cycleStartMs < 0 { throw RPCError.invalidArgument("cycle_start_ms must not be negative") }
        var rules = ProgramRules(earnVndPerPoint: request.earnVndPerPoint, redeemVndPerPoint: request.redeemVndPerPoint, cycleStartMs: request.cycleStartMs)
        let expiry = request.expiry ?? PointsExpiry(kind: .never)
        switch expiry.kind {
        case .never, .kindUnspecified:
            rules.expiry = .never
        case .fixedDate:
            guard let date = VietnamTime.parseDate(expiry.date) else { throw RPCError.invalidArgument("expiry.date must be a date as YYYY-MM-DD") }
            if VietnamTime.day(year: date.year, month: date.month, day: date.day).upperBound <= now() {
                throw RPCError.invalidArgument("expiry.date \(expiry.date) has passed")
            }
            rules.expiry = .fixedDate(year: date.year, month: date.month, day: date.day)
        case .afterMonths:
            guard (1...120).contains(expiry.months) else { throw RPCError.invalidArgument("expiry.months must be 1 to 120") }
            rules.expiry = .afterMonths(Int(expiry.months))
        default:
            throw RPCError.invalidArgument("expiry.kind must be NEVER, FIXED_DATE or AFTER_MONTHS")
        }
        switch request.cycle {
        case .lifetime, .cycleUnspecified: rules.cycle = .lifetime
        case .rolling12Months: rules.cycle = .rolling12Months
        case .calendarYear: rules.cycle = .calendarYear
        default: throw RPCError.invalidArgument("cycle must be LIFETIME, ROLLING_12_MONTHS or CALENDAR_YEAR")
        }
        try await store.configureProgram(shop: request.shopId, rules, nowMs: now())
        return Self.program(rules)
    }

    public func getProgram(_ request: ShopRequest, context: ServerContext) async throws -> Program {
        Self.program(try await store.program(shop: request.shopId))
    }

    public func upsertTier(_ request: UpsertTierRequest, context: ServerContext) async throws -> Tier {
        let name = request.name.trimmingCharacters(in: .whitespacesAndNewlines)
        if let problem = TagName.validate(name) { throw RPCError.invalidArgument(problem) }
        if request.minSpendVnd < 0 { throw RPCError.invalidArgument("min_spend_vnd must not be negative") }
        guard (0...100).contains(request.discountPercent) else { throw RPCError.invalidArgument("discount_percent must be 0 to 100") }
        guard request.pointsMultiplier.isFinite, (0...10).contains(request.pointsMultiplier) else {
            throw RPCError.invalidArgument("points_multiplier must be 0 (meaning 1.0) to 10")
        }
        try FieldCheck.optionalId(request.tierId, "tier_id")
        let tier = Tier(
            tierId: request.tierId, name: name, minSpendVnd: request.minSpendVnd, discountPercent: request.discountPercent,
            pointsMultiplier: request.pointsMultiplier == 0 ? 1 : request.pointsMultiplier, combinable: request.combinable
        )
        return try await store.upsertTier(shop: request.shopId, tier, nowMs: now())
    }

    public func listTiers(_ request: ListTiersRequest, context: ServerContext) async throws -> ListTiersResponse {
        let page = try ListPage.of(try await store.tiers(shop: request.shopId), size: request.pageSize, token: request.pageToken)
        return ListTiersResponse(tiers: page.items, nextPageToken: page.next)
    }

    public func deleteTier(_ request: DeleteTierRequest, context: ServerContext) async throws -> Empty {
        try await store.deleteTier(shop: request.shopId, tierId: try Self.id(request.tierId, "tier_id"), nowMs: now())
        return Empty()
    }

    // MARK: Members (R-LOY-1, R-SEG-1)

    public func getMember(_ request: GetMemberRequest, context: ServerContext) async throws -> Member {
        try await store.member(shop: request.shopId, customerId: try Self.id(request.customerId, "customer_id"))
    }

    public func listMembers(_ request: ListMembersRequest, context: ServerContext) async throws -> ListMembersResponse {
        let size = try FieldCheck.pageSize(request.pageSize, default: 50, max: 500)
        if request.minPoints < 0 { throw RPCError.invalidArgument("min_points must not be negative") }
        try FieldCheck.optionalId(request.pageToken, "page_token")
        let members = try await store.members(
            shop: request.shopId, tierId: request.tierId.isEmpty ? nil : request.tierId, minPoints: request.minPoints, after: request.pageToken, limit: size
        )
        return ListMembersResponse(members: members, nextPageToken: members.count == size ? members.last!.customerId : "")
    }

    public func upsertCustomerProfile(_ request: UpsertCustomerProfileRequest, context: ServerContext) async throws -> Empty {
        let customer = try Self.id(request.customerId, "customer_id")
        var phone = ""
        if !request.phone.isEmpty {
            guard let normalized = VietnamPhone.normalize(request.phone) else {
                throw RPCError.invalidArgument("phone must be a Vietnamese mobile number, not \"\(request.phone)\"")
            }
            phone = normalized
        }
        var birthday: (year: Int, month: Int, day: Int)?
        if !request.birthday.isEmpty {
            guard let date = VietnamTime.parseDate(request.birthday), date.year >= 1900,
                  VietnamTime.day(year: date.year, month: date.month, day: date.day).lowerBound <= now() else {
                throw RPCError.invalidArgument("birthday must be a past date as YYYY-MM-DD, not \"\(request.birthday)\"")
            }
            birthday = date
        }
        if request.name.count > 200 { throw RPCError.invalidArgument("name is longer than 200 characters") }
        let email = request.email.trimmingCharacters(in: .whitespaces)
        if !email.isEmpty && (email.utf8.count > 254 || email.split(separator: "@", omittingEmptySubsequences: false).count != 2) {
            throw RPCError.invalidArgument("email must be an e-mail address, not \"\(request.email)\"")
        }
        if request.tags.count > 200 { throw RPCError.invalidArgument("tags: at most 200") }
        var keys: Set<String> = []
        for (index, tag) in request.tags.enumerated() {
            if let problem = TagName.validate(tag) { throw RPCError.invalidArgument("tags[\(index)]: \(problem)") }
            keys.insert(TagName.key(tag))
        }
        try FieldCheck.optionalId(request.eventId, "event_id")
        if request.atMs < 0 { throw RPCError.invalidArgument("at_ms must not be negative") }
        try await store.upsertProfile(
            shop: request.shopId, customerId: customer, phone: phone, name: request.name.trimmingCharacters(in: .whitespacesAndNewlines), email: email,
            birthday: birthday, tagKeys: keys, eventId: request.eventId, atMs: request.atMs, nowMs: now()
        )
        return Empty()
    }

    // MARK: Orders and points (R-LOY-3..4, R-PTS-1..4)

    public func previewOrder(_ request: PreviewOrderRequest, context: ServerContext) async throws -> PreviewOrderResponse {
        let customer = try Self.id(request.customerId, "customer_id")
        if request.subtotalVnd < 0 { throw RPCError.invalidArgument("subtotal_vnd must not be negative") }
        if request.redeemPoints < 0 { throw RPCError.invalidArgument("redeem_points must not be negative") }
        if request.items.count > 500 { throw RPCError.invalidArgument("items: at most 500") }
        var lines: [PromotionOffer.Line] = []
        for (index, item) in request.items.enumerated() {
            let variant = try Self.id(item.variantId, "items[\(index)].variant_id")
            guard item.quantity > 0 else { throw RPCError.invalidArgument("items[\(index)].quantity must be positive") }
            guard item.priceVnd >= 0 else { throw RPCError.invalidArgument("items[\(index)].price_vnd must not be negative") }
            lines.append(PromotionOffer.Line(variantId: variant, quantity: Int64(item.quantity), priceVnd: item.priceVnd))
        }
        if !lines.isEmpty, lines.reduce(0, { $0 + $1.quantity * $1.priceVnd }) != request.subtotalVnd {
            throw RPCError.invalidArgument("subtotal_vnd must be the sum of items (quantity × price_vnd)")
        }
        let voucher = request.voucherCode.isEmpty ? "" : try Self.id(VoucherCode.normalize(request.voucherCode), "voucher_code")
        try FieldCheck.optionalId(request.orderId, "order_id")
        let preview = try await store.preview(
            shop: request.shopId,
            LoyaltyStore.Checkout(
                customerId: customer, subtotalVnd: request.subtotalVnd, lines: lines, hasPromotion: request.hasPromotion, redeemPoints: request.redeemPoints,
                voucherCode: voucher, orderId: request.orderId
            ),
            nowMs: now()
        )
        let quote = preview.quote
        return PreviewOrderResponse(
            tierDiscountVnd: quote.tierDiscountVnd, pointsDiscountVnd: quote.pointsDiscountVnd, pointsToEarn: quote.pointsToEarn,
            tierId: preview.tierId, pointsRedeemed: quote.pointsRedeemed, promotionId: preview.promotion?.promotionId ?? "",
            promotionDiscountVnd: preview.promotionDiscountVnd, promotionName: preview.promotion?.name ?? "",
            voucherDiscountVnd: preview.voucherDiscountVnd, voucherCode: voucher
        )
    }

    public func recordOrderEvent(_ request: RecordOrderEventRequest, context: ServerContext) async throws -> RecordOrderEventResponse {
        let event = try Self.id(request.eventId, "event_id")
        let order = try Self.id(request.orderId, "order_id")
        let customer = try Self.id(request.customerId, "customer_id")
        let kind: LoyaltyStore.OrderEvent.Kind
        switch request.kind {
        case .paid:
            if request.amountVnd <= 0 { throw RPCError.invalidArgument("amount_vnd must be positive for a paid order") }
            kind = .paid
        case .cancelled: kind = .cancelled
        case .refunded: kind = .refunded
        default:
            throw RPCError.invalidArgument("kind must be PAID, CANCELLED or REFUNDED")
        }
        if request.amountVnd < 0 { throw RPCError.invalidArgument("amount_vnd must not be negative") }
        if request.district.count > 100 || request.province.count > 100 { throw RPCError.invalidArgument("district and province are at most 100 characters") }
        if request.atMs < 0 { throw RPCError.invalidArgument("at_ms must not be negative") }
        let outcome = try await store.recordOrderEvent(
            shop: request.shopId,
            LoyaltyStore.OrderEvent(
                eventId: event, orderId: order, customerId: customer, kind: kind, amountVnd: request.amountVnd, channel: request.channel,
                district: request.district.trimmingCharacters(in: .whitespaces), province: request.province.trimmingCharacters(in: .whitespaces),
                usedOffer: request.usedOffer, atMs: request.atMs == 0 ? now() : request.atMs, phone: VietnamPhone.normalize(request.phone) ?? ""
            ),
            nowMs: now()
        )
        return RecordOrderEventResponse(applied: outcome.applied, pointsDelta: outcome.pointsDelta, member: outcome.member)
    }

    public func redeemPoints(_ request: RedeemPointsRequest, context: ServerContext) async throws -> Member {
        let customer = try Self.id(request.customerId, "customer_id")
        if request.points <= 0 { throw RPCError.invalidArgument("points must be positive") }
        if request.reason.count > 500 { throw RPCError.invalidArgument("reason is longer than 500 characters") }
        return try await store.redeem(
            shop: request.shopId, customerId: customer, points: request.points, orderId: request.orderId, reason: request.reason,
            staffId: try context.actingStaff(request.staffId), nowMs: now()
        )
    }

    public func adjustPoints(_ request: AdjustPointsRequest, context: ServerContext) async throws -> Member {
        let customer = try Self.id(request.customerId, "customer_id")
        let (reason, staff) = try Self.adjustment(request.points, reason: request.reason, staffId: request.staffId, context, rule: "R-PTS-4")
        return try await store.adjust(
            shop: request.shopId, customerId: customer, points: request.points, orderId: request.orderId, reason: reason, staffId: staff, nowMs: now()
        )
    }

    public func adjustSegmentPoints(_ request: AdjustSegmentPointsRequest, context: ServerContext) async throws -> AdjustSegmentPointsResponse {
        let segment = try Self.id(request.segmentId, "segment_id")
        let (reason, staff) = try Self.adjustment(request.points, reason: request.reason, staffId: request.staffId, context, rule: "R-PTS-5")
        let key = try Self.id(request.idempotencyKey, "idempotency_key")
        let rule = try await store.segmentRule(shop: request.shopId, segmentId: segment)
        let done = try await store.adjustSegment(
            shop: request.shopId, segmentId: segment, rule: rule, points: request.points, reason: reason, staffId: staff, key: key, nowMs: now()
        )
        return AdjustSegmentPointsResponse(membersAdjusted: done.adjusted, members: done.members, pointsTotal: done.pointsTotal)
    }

    /// A staff adjustment's checks (R-PTS-4, R-PTS-5): some points, a reason and who made it.
    static func adjustment(_ points: Int64, reason: String, staffId: String, _ context: ServerContext, rule: String) throws(RPCError) -> (String, String) {
        if points == 0 { throw .invalidArgument("points must not be zero (positive adds, negative removes)") }
        if abs(points) > 100_000_000 { throw .invalidArgument("points is over 100,000,000 for one adjustment") }
        let reason = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        if reason.isEmpty { throw .invalidArgument("reason is required for an adjustment (\(rule))") }
        if reason.count > 500 { throw .invalidArgument("reason is longer than 500 characters") }
        let staff = try context.actingStaff(staffId)
        if staff.isEmpty { throw .invalidArgument("staff_id is required for an adjustment (\(rule))") }
        return (reason, staff)
    }

    public func listPointsHistory(_ request: ListPointsHistoryRequest, context: ServerContext) async throws -> ListPointsHistoryResponse {
        let customer = try Self.id(request.customerId, "customer_id")
        let size = try FieldCheck.pageSize(request.pageSize, default: 50, max: 500)
        try FieldCheck.optionalId(request.pageToken, "page_token")
        let entries = try await store.history(shop: request.shopId, customerId: customer, before: request.pageToken, limit: size)
        return ListPointsHistoryResponse(entries: entries, nextPageToken: entries.count == size ? entries.last!.entryId : "")
    }

    public func expirePoints(_ request: ExpirePointsRequest, context: ServerContext) async throws -> ExpirePointsResponse {
        let nowMs = now()
        if request.asOfMs < 0 || request.asOfMs > nowMs { throw RPCError.invalidArgument("as_of_ms must not be in the future (0: now)") }
        let expired = try await store.expire(shop: request.shopId, asOfMs: request.asOfMs == 0 ? nowMs : request.asOfMs, nowMs: nowMs)
        return ExpirePointsResponse(expiredPoints: expired)
    }

    // MARK: Segments (R-SEG-1..2)

    public func createSegment(_ request: CreateSegmentRequest, context: ServerContext) async throws -> Segment {
        let name = request.name.trimmingCharacters(in: .whitespacesAndNewlines)
        if name.isEmpty { throw RPCError.invalidArgument("name is required") }
        if name.count > 200 { throw RPCError.invalidArgument("name is longer than 200 characters") }
        _ = try SegmentRule.checking(request.match, request.conditions)
        return try await store.createSegment(shop: request.shopId, name: name, match: request.match, conditions: request.conditions, nowMs: now())
    }

    public func listSegments(_ request: ListSegmentsRequest, context: ServerContext) async throws -> ListSegmentsResponse {
        let page = try ListPage.of(try await store.segments(shop: request.shopId), size: request.pageSize, token: request.pageToken)
        return ListSegmentsResponse(segments: page.items, nextPageToken: page.next)
    }

    public func listSegmentMembers(_ request: ListSegmentMembersRequest, context: ServerContext) async throws -> ListSegmentMembersResponse {
        let rule = try await store.segmentRule(shop: request.shopId, segmentId: try Self.id(request.segmentId, "segment_id"))
        let size = try FieldCheck.pageSize(request.pageSize, default: 100, max: 1_000)
        try FieldCheck.optionalId(request.pageToken, "page_token")
        let members = try await store.segmentMembers(shop: request.shopId, rule: rule, after: request.pageToken, limit: size)
        return ListSegmentMembersResponse(members: members, nextPageToken: members.count == size ? members.last!.customerId : "")
    }

    public func countSegment(_ request: SegmentRequest, context: ServerContext) async throws -> CountSegmentResponse {
        let rule = try await store.segmentRule(shop: request.shopId, segmentId: try Self.id(request.segmentId, "segment_id"))
        return CountSegmentResponse(count: try await store.countSegment(shop: request.shopId, rule: rule))
    }

    // MARK: Promotions (R-SEG-4)

    public func upsertPromotion(_ request: UpsertPromotionRequest, context: ServerContext) async throws -> Promotion {
        try FieldCheck.optionalId(request.promotionId, "promotion_id")
        let name = request.name.trimmingCharacters(in: .whitespacesAndNewlines)
        if name.isEmpty { throw RPCError.invalidArgument("name is required") }
        if name.count > 200 { throw RPCError.invalidArgument("name is longer than 200 characters") }
        var promotion = Promotion(promotionId: request.promotionId, name: name, kind: request.kind, fromMs: request.fromMs, toMs: request.toMs)
        switch request.kind {
        case .percent:
            guard (1...100).contains(request.percent) else { throw RPCError.invalidArgument("percent must be 1 to 100 for a PERCENT promotion") }
            promotion.percent = request.percent
        case .amount:
            guard (1...1_000_000_000).contains(request.amountVnd) else {
                throw RPCError.invalidArgument("amount_vnd must be 1 to 1,000,000,000 for an AMOUNT promotion")
            }
            promotion.amountVnd = request.amountVnd
        case .priceList:
            if request.prices.isEmpty { throw RPCError.invalidArgument("prices: a PRICE_LIST promotion needs at least one price") }
            if request.prices.count > 1_000 { throw RPCError.invalidArgument("prices: at most 1,000") }
            var seen: Set<String> = []
            for (index, price) in request.prices.enumerated() {
                let variant = try Self.id(price.variantId, "prices[\(index)].variant_id")
                guard seen.insert(variant).inserted else { throw RPCError.invalidArgument("prices[\(index)].variant_id: \(variant) is listed twice") }
                guard (0...1_000_000_000).contains(price.priceVnd) else { throw RPCError.invalidArgument("prices[\(index)].price_vnd must be 0 to 1,000,000,000") }
            }
            promotion.prices = request.prices
        default:
            throw RPCError.invalidArgument("kind must be PERCENT, AMOUNT or PRICE_LIST")
        }
        if request.segmentIds.isEmpty && request.tierIds.isEmpty {
            throw RPCError.invalidArgument("segment_ids or tier_ids: a promotion is for segments and/or tiers (R-SEG-4)")
        }
        if request.segmentIds.count + request.tierIds.count > 50 { throw RPCError.invalidArgument("segment_ids and tier_ids: at most 50 in all") }
        for (index, id) in request.segmentIds.enumerated() { _ = try Self.id(id, "segment_ids[\(index)]") }
        for (index, id) in request.tierIds.enumerated() { _ = try Self.id(id, "tier_ids[\(index)]") }
        var seenSegments: Set<String> = [], seenTiers: Set<String> = []
        promotion.segmentIds = request.segmentIds.filter { seenSegments.insert($0).inserted }
        promotion.tierIds = request.tierIds.filter { seenTiers.insert($0).inserted }
        if request.fromMs < 0 || request.toMs < 0 { throw RPCError.invalidArgument("from_ms and to_ms must not be negative") }
        if request.toMs != 0 && request.toMs <= request.fromMs { throw RPCError.invalidArgument("to_ms must be after from_ms (0: open-ended)") }
        return try await store.upsertPromotion(shop: request.shopId, promotion, nowMs: now())
    }

    public func listPromotions(_ request: ListPromotionsRequest, context: ServerContext) async throws -> ListPromotionsResponse {
        let size = try FieldCheck.pageSize(request.pageSize, default: 50, max: 500)
        try FieldCheck.optionalId(request.pageToken, "page_token")
        if request.activeAtMs < 0 { throw RPCError.invalidArgument("active_at_ms must not be negative") }
        let promotions = try await store.promotions(shop: request.shopId, activeAtMs: request.activeAtMs, after: request.pageToken, limit: size)
        return ListPromotionsResponse(promotions: promotions, nextPageToken: promotions.count == size ? promotions.last!.promotionId : "")
    }

    public func deletePromotion(_ request: DeletePromotionRequest, context: ServerContext) async throws -> Empty {
        try await store.deletePromotion(shop: request.shopId, promotionId: try Self.id(request.promotionId, "promotion_id"))
        return Empty()
    }

    // MARK: Audiences (R-SEG-3)

    public func linkAdAccount(_ request: LinkAdAccountRequest, context: ServerContext) async throws -> AdAccount {
        var account = request.adAccountId.trimmingCharacters(in: .whitespaces)
        if account.hasPrefix("act_") { account.removeFirst(4) }
        guard !account.isEmpty, account.count <= 32, account.allSatisfy(\.isASCII), account.allSatisfy(\.isNumber) else {
            throw RPCError.invalidArgument("ad_account_id must be the ad account's number (act_ in front is fine), not \"\(request.adAccountId.prefix(64))\"")
        }
        let token = request.accessToken.trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty else { throw RPCError.invalidArgument("access_token is required") }
        guard token.utf8.count <= 1_000, token.unicodeScalars.allSatisfy({ $0.isASCII && $0.properties.generalCategory != .control && $0 != " " }) else {
            throw RPCError.invalidArgument("access_token is not a Facebook access token (at most 1,000 printable characters, no spaces)")
        }
        guard let sealer else { throw RPCError.unimplemented("this loyalty-svc keeps no ad account tokens") }
        return try await store.linkAdAccount(shop: request.shopId, adAccountId: account, sealedToken: try sealer.seal(token, shop: request.shopId), nowMs: now())
    }

    public func syncSegmentAudience(_ request: SyncSegmentAudienceRequest, context: ServerContext) async throws -> AudienceSync {
        let segment = try Self.id(request.segmentId, "segment_id")
        let schedule: SyncSegmentAudienceRequest.Schedule
        switch request.schedule {
        case .scheduleUnspecified, .daily: schedule = .daily
        case .off: schedule = .off
        default: throw RPCError.invalidArgument("schedule must be DAILY or OFF")
        }
        return try await store.requestAudienceSync(shop: request.shopId, segmentId: segment, schedule: schedule, nowMs: now())
    }

    public func getAudienceSync(_ request: SegmentRequest, context: ServerContext) async throws -> AudienceSync {
        try await store.audienceSync(shop: request.shopId, segmentId: try Self.id(request.segmentId, "segment_id"))
    }

    // MARK: Offer dashboard (R-LOY-5)

    public func getOfferRevenueByDistrict(_ request: GetOfferRevenueByDistrictRequest, context: ServerContext) async throws -> GetOfferRevenueByDistrictResponse {
        let province = request.province.trimmingCharacters(in: .whitespaces)
        if province.isEmpty { throw RPCError.invalidArgument("province is required") }
        guard request.fromMs > 0, request.toMs > 0, let range = DayRange(fromMs: request.fromMs, toMs: request.toMs) else {
            throw RPCError.invalidArgument("from_ms and to_ms are required, from_ms first")
        }
        if range.lastDay - range.firstDay > 3 * 366 { throw RPCError.invalidArgument("to_ms: at most three years at a time") }
        return GetOfferRevenueByDistrictResponse(rows: try await store.offerRevenueByDistrict(shop: request.shopId, province: province, range: range))
    }

    // MARK: Referrals (R-REF-1)

    public func createReferralCampaign(_ request: CreateReferralCampaignRequest, context: ServerContext) async throws -> ReferralCampaign {
        let name = request.name.trimmingCharacters(in: .whitespacesAndNewlines)
        if name.isEmpty { throw RPCError.invalidArgument("name is required") }
        if name.count > 200 { throw RPCError.invalidArgument("name is longer than 200 characters") }
        guard let offer = request.offer else { throw RPCError.invalidArgument("offer is required") }
        switch (offer.discountPercent, offer.discountVnd) {
        case (1...100, 0), (0, 1...1_000_000_000): break
        case (0, 0): throw RPCError.invalidArgument("offer: one of discount_percent and discount_vnd is required")
        case (_, 0), (0, _):
            throw RPCError.invalidArgument(offer.discountVnd == 0 ? "offer.discount_percent must be 1 to 100" : "offer.discount_vnd must be 1 to 1,000,000,000")
        default: throw RPCError.invalidArgument("offer: discount_percent and discount_vnd cannot both be set")
        }
        guard (1...365).contains(offer.validDays) else { throw RPCError.invalidArgument("offer.valid_days must be 1 to 365") }
        var request = request
        // No template named: the shop's REFERRAL_OFFER default (and its channel), from messaging-svc.
        if request.templateId.isEmpty {
            guard let vouchers else { throw RPCError.unavailable("referrals need messaging-svc, which this loyalty-svc is not configured to reach") }
            let fallback = try await vouchers.messenger.messageDefault(shop: request.shopId, use: .referralOffer)
            if request.channel != .channelUnspecified && request.channel != fallback.channel {
                throw RPCError.failedPrecondition(
                    "template_id: none given, and the shop's default referral offer is a \(fallback.channel.protoName) template, not \(request.channel.protoName)"
                )
            }
            request.channel = fallback.channel
            request.templateId = fallback.templateId
        }
        guard request.channel == .zns || request.channel == .sms || request.channel == .email else {
            throw RPCError.invalidArgument("channel must be ZNS or SMS (the voucher goes to the friend's phone) or EMAIL (to their e-mail address)")
        }
        let template = try Self.id(request.templateId, "template_id")
        return try await store.createReferralCampaign(
            shop: request.shopId,
            ReferralCampaign(name: name, offer: offer, channel: request.channel, templateId: template),
            nowMs: now()
        )
    }

    public func submitReferral(_ request: SubmitReferralRequest, context: ServerContext) async throws -> Voucher {
        let order = try Self.id(request.orderId, "order_id")
        if request.friendPhone.isEmpty && request.friendEmail.isEmpty { throw RPCError.invalidArgument("friend_phone is required (friend_email for an EMAIL campaign)") }
        var phone = ""
        if !request.friendPhone.isEmpty {
            guard let normalized = VietnamPhone.normalize(request.friendPhone) else {
                throw RPCError.invalidArgument("friend_phone must be a Vietnamese mobile number, not \"\(request.friendPhone)\"")
            }
            phone = normalized
        }
        var email = ""
        if !request.friendEmail.isEmpty {
            guard let normalized = EmailAddress.normalize(request.friendEmail) else {
                throw RPCError.invalidArgument("friend_email must be an e-mail address, not \"\(request.friendEmail.prefix(254))\"")
            }
            email = normalized
        }
        try FieldCheck.optionalId(request.customerId, "customer_id")
        guard let vouchers else { throw RPCError.unavailable("referrals need messaging-svc, which this loyalty-svc is not configured to reach") }
        let pending = try await store.submitReferral(
            shop: request.shopId, orderId: order, friendPhone: phone, friendEmail: email, customerId: request.customerId,
            staffId: try context.actingStaff(request.staffId), nowMs: now()
        )
        switch try await vouchers.deliver(pending) {
        case .sent(let voucher), .deferred(let voucher, _): return voucher
        }
    }

    public func redeemVoucher(_ request: RedeemVoucherRequest, context: ServerContext) async throws -> Voucher {
        let code = try Self.id(VoucherCode.normalize(request.code), "code")
        let order = try Self.id(request.orderId, "order_id")
        return try await store.redeemVoucher(shop: request.shopId, code: code, orderId: order, nowMs: now())
    }
}
