import ChatMeshAPI
import Foundation
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// The program and its tiers (R-LOY-2, R-PTS-1..2): configuring them re-ranks every member.
extension LoyaltyStore {
    // MARK: Program (R-LOY-2, R-PTS-1..2)

    /// The shop's program rules (earning, redeeming, expiry, tier cycle); defaults when none is configured.
    public func program(shop: String) async throws -> ProgramRules {
        try await db.read { db in try await Self.program(db, shop: shop) }
    }

    static func program(_ db: any SQLDatabase, shop: String) async throws -> ProgramRules {
        guard let row = try await db.raw("SELECT * FROM programs WHERE shop_id = \(bind: shop)").first() else { return ProgramRules() }
        let expiry: ProgramRules.Expiry
        switch try row.int64("expiry_kind") {
        case 2:
            let date = VietnamTime.parseDate(try row.string("expiry_date"))!
            expiry = .fixedDate(year: date.year, month: date.month, day: date.day)
        case 3: expiry = .afterMonths(Int(try row.int64("expiry_months")))
        default: expiry = .never
        }
        let cycle: ProgramRules.Cycle = switch try row.int64("cycle") {
        case Int64(Program.Cycle.rolling12Months.rawValue): .rolling12Months
        case Int64(Program.Cycle.calendarYear.rawValue): .calendarYear
        default: .lifetime
        }
        return ProgramRules(
            earnVndPerPoint: try row.int64("earn_vnd_per_point"), redeemVndPerPoint: try row.int64("redeem_vnd_per_point"),
            expiry: expiry, cycle: cycle, cycleStartMs: try row.int64("cycle_start_ms")
        )
    }

    /// Saves the program and re-ranks every member (the cycle may have changed).
    public func configureProgram(shop: String, _ program: ProgramRules, nowMs: Int64) async throws {
        let (kind, date, months): (Int64, String, Int64) = switch program.expiry {
        case .never: (1, "", 0)
        case .fixedDate(let y, let m, let d): (2, String(format: "%04d-%02d-%02d", y, m, d), 0)
        case .afterMonths(let n): (3, "", Int64(n))
        }
        let cycle: Program.Cycle = switch program.cycle {
        case .lifetime: .lifetime
        case .rolling12Months: .rolling12Months
        case .calendarYear: .calendarYear
        }
        return try await write { db in
            try await db.raw("""
                INSERT INTO programs (shop_id, earn_vnd_per_point, redeem_vnd_per_point, expiry_kind, expiry_date, expiry_months, cycle, cycle_start_ms, updated_at_ms)
                VALUES (\(bind: shop), \(bind: program.earnVndPerPoint), \(bind: program.redeemVndPerPoint), \(bind: kind), \(bind: date), \(bind: months),
                        \(bind: Int64(cycle.rawValue)), \(bind: program.cycleStartMs), \(bind: nowMs))
                ON CONFLICT (shop_id) DO UPDATE SET earn_vnd_per_point = \(bind: program.earnVndPerPoint),
                    redeem_vnd_per_point = \(bind: program.redeemVndPerPoint), expiry_kind = \(bind: kind), expiry_date = \(bind: date),
                    expiry_months = \(bind: months), cycle = \(bind: Int64(cycle.rawValue)), cycle_start_ms = \(bind: program.cycleStartMs),
                    updated_at_ms = \(bind: nowMs)
                """).run()
            try await Self.rerankAll(db, shop: shop, nowMs: nowMs)
        }
    }

    /// The shops that configured a program, with it: the nightly jobs go through them.
    public func programs() async throws -> [(shop: String, program: ProgramRules)] {
        try await db.read { db in
            var result: [(shop: String, program: ProgramRules)] = []
            for row in try await db.raw("SELECT shop_id FROM programs ORDER BY shop_id").all() {
                let shop = try row.string("shop_id")
                result.append((shop, try await Self.program(db, shop: shop)))
            }
            return result
        }
    }

    /// Re-ranks every member of the shop (rolling and calendar cycles move with the date).
    public func rerankAll(shop: String, nowMs: Int64) async throws {
        return try await write { db in try await Self.rerankAll(db, shop: shop, nowMs: nowMs) }
    }

    // MARK: Tiers (R-LOY-2)

    /// The shop's tiers, lowest threshold first.
    public func tiers(shop: String) async throws -> [Tier] {
        try await db.read { db in try await Self.tiers(db, shop: shop) }
    }

    static func tiers(_ db: any SQLDatabase, shop: String) async throws -> [Tier] {
        try await db.raw("SELECT * FROM tiers WHERE shop_id = \(bind: shop) ORDER BY min_spend_vnd, tier_id").all().map { row in
            Tier(
                tierId: try row.string("tier_id"), name: try row.string("name"), minSpendVnd: try row.int64("min_spend_vnd"),
                discountPercent: Int32(try row.int64("discount_percent")), pointsMultiplier: Double(try row.int64("multiplier_hundredths")) / 100,
                combinable: try row.int64("combinable") != 0
            )
        }
    }

    static func rules(_ tiers: [Tier]) -> [TierRule] {
        tiers.map {
            TierRule(tierId: $0.tierId, minSpendVnd: $0.minSpendVnd, discountPercent: Int($0.discountPercent), pointsMultiplier: $0.pointsMultiplier, combinable: $0.combinable)
        }
    }

    /// Creates (empty id) or replaces a tier, then re-ranks every member.
    public func upsertTier(shop: String, _ tier: Tier, nowMs: Int64) async throws -> Tier {
        return try await write { db in
            var saved = tier
            let key = TagName.key(tier.name)
            if saved.tierId.isEmpty {
                saved.tierId = SortableID.make("tier_", nowMs: nowMs)
            } else if try await db.raw("SELECT tier_id FROM tiers WHERE shop_id = \(bind: shop) AND tier_id = \(bind: tier.tierId)").first() == nil {
                throw LoyaltyError.noTier(tier.tierId)
            }
            if let clash = try await db.raw("""
                SELECT tier_id FROM tiers WHERE shop_id = \(bind: shop) AND name_key = \(bind: key) AND tier_id <> \(bind: saved.tierId)
                """).first() {
                throw LoyaltyError.tierNameTaken(name: tier.name, byTier: try clash.string("tier_id"))
            }
            let hundredths = Int64((tier.pointsMultiplier * 100).rounded())
            try await db.raw("""
                INSERT INTO tiers (shop_id, tier_id, name, name_key, min_spend_vnd, discount_percent, multiplier_hundredths, combinable)
                VALUES (\(bind: shop), \(bind: saved.tierId), \(bind: tier.name), \(bind: key), \(bind: tier.minSpendVnd), \(bind: Int64(tier.discountPercent)),
                        \(bind: hundredths), \(bind: tier.combinable ? 1 : 0 as Int64))
                ON CONFLICT (shop_id, tier_id) DO UPDATE SET name = \(bind: tier.name), name_key = \(bind: key), min_spend_vnd = \(bind: tier.minSpendVnd),
                    discount_percent = \(bind: Int64(tier.discountPercent)), multiplier_hundredths = \(bind: hundredths),
                    combinable = \(bind: tier.combinable ? 1 : 0 as Int64)
                """).run()
            saved.pointsMultiplier = Double(hundredths) / 100
            try await Self.rerankAll(db, shop: shop, nowMs: nowMs)
            return saved
        }
    }

    /// Removes a tier; its members are re-ranked at once (R-LOY-2).
    public func deleteTier(shop: String, tierId: String, nowMs: Int64) async throws {
        return try await write { db in
            let deleted = try await db.raw("DELETE FROM tiers WHERE shop_id = \(bind: shop) AND tier_id = \(bind: tierId) RETURNING tier_id").all()
            if deleted.isEmpty { throw LoyaltyError.noTier(tierId) }
            try await Self.rerankAll(db, shop: shop, nowMs: nowMs)
        }
    }

    /// R-LOY-2: every member's tier from their spend in the program's cycle. Only
    /// members whose tier changes are written, a statement per new tier.
    static func rerankAll(_ db: any SQLDatabase, shop: String, nowMs: Int64) async throws {
        let program = try await program(db, shop: shop)
        let rules = rules(try await tiers(db, shop: shop))
        var spend: [String: Int64] = [:]
        for row in try await db.raw("""
            SELECT customer_id, SUM(amount_vnd) AS spend FROM orders
            WHERE shop_id = \(bind: shop) AND reversed = 0 AND paid_at_ms >= \(bind: program.spendWindowStart(nowMs: nowMs))
            GROUP BY customer_id
            """).all() {
            spend[try row.string("customer_id")] = try row.int64("spend")
        }
        var moves: [String: [String]] = [:]
        for row in try await db.raw("SELECT customer_id, tier_id FROM members WHERE shop_id = \(bind: shop)").all() {
            let customer = try row.string("customer_id")
            let tier = TierRule.rank(spendVnd: spend[customer] ?? 0, in: rules)?.tierId ?? ""
            if tier != (try row.string("tier_id")) { moves[tier, default: []].append(customer) }
        }
        for (tier, customers) in moves {
            for start in stride(from: 0, to: customers.count, by: 500) {
                let chunk = Array(customers[start..<min(start + 500, customers.count)])
                try await db.raw("UPDATE members SET tier_id = \(bind: tier) WHERE shop_id = \(bind: shop) AND customer_id IN (\(binds: chunk))").run()
            }
            try await membersChanged(db, shop: shop, customers, nowMs: nowMs)
        }
    }

    /// One member's tier from their spend in the cycle.
    static func rerank(_ db: any SQLDatabase, shop: String, customerId: String, program: ProgramRules, nowMs: Int64) async throws {
        let spend = try await db.raw("""
            SELECT COALESCE(SUM(amount_vnd), 0) AS spend FROM orders
            WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND reversed = 0 AND paid_at_ms >= \(bind: program.spendWindowStart(nowMs: nowMs))
            """).first()!.int64("spend")
        let tier = TierRule.rank(spendVnd: spend, in: rules(try await tiers(db, shop: shop)))?.tierId ?? ""
        try await db.raw("UPDATE members SET tier_id = \(bind: tier) WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)").run()
        try await membersChanged(db, shop: shop, [customerId], nowMs: nowMs)
    }
}
