import ChatMeshAPI
import Foundation
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// loyalty-svc's storage. A points change loads the member's lots into a
/// `PointsAccount` inside the write transaction, applies the rule there and
/// writes back what changed (lots, ledger entries, redemptions, the balance),
/// so the store cannot drift from the rule its property tests check. Only the
/// nightly expiry, which touches every member at once, is done in set-based SQL.
public struct LoyaltyStore: Sendable {
    let db: any SQLStore
    /// Rung after every commit, for the change log (R-PANEL-4).
    public let commitBell: CommitBell

    public init(_ db: any SQLStore, commitBell: CommitBell = CommitBell()) {
        self.db = db
        self.commitBell = commitBell
    }

    /// A transaction, then the bell: the changes it committed are looked at now.
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        defer { commitBell.ring() }
        return try await db.write(body)
    }

    /// R-PANEL-4: the members' points, tier or membership changed, for the change log.
    static func membersChanged(_ db: any SQLDatabase, shop: String, _ customers: some Collection<String>, nowMs: Int64) async throws {
        try await ChangeLog.record(db, Set(customers).sorted().map { ChangeLog.Entry(shopId: shop, kind: .member, customerId: $0) }, nowMs: nowMs)
    }

    public static func open(_ db: any SQLStore) async throws -> LoyaltyStore {
        try await db.migrate(LoyaltySchema.migrations)
        return LoyaltyStore(db)
    }

    // MARK: Program (R-LOY-2, R-PTS-1..2)

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

    // MARK: Members (R-LOY-1, R-SEG-1)

    /// Makes sure the customer is a member (since `atMs` when new).
    static func ensureMember(_ db: any SQLDatabase, shop: String, customerId: String, atMs: Int64) async throws {
        try await db.raw("""
            INSERT INTO members (shop_id, customer_id, member_since_ms) VALUES (\(bind: shop), \(bind: customerId), \(bind: atMs))
            ON CONFLICT (shop_id, customer_id) DO NOTHING
            """).run()
    }

    public func member(shop: String, customerId: String) async throws -> Member {
        try await db.read { db in
            guard let member = try await Self.member(db, shop: shop, customerId: customerId) else {
                throw LoyaltyError.notAMember(customerId)
            }
            return member
        }
    }

    static func member(_ db: any SQLDatabase, shop: String, customerId: String) async throws -> Member? {
        guard let row = try await db.raw("""
            SELECT m.*, COALESCE(t.name, '') AS tier_name FROM members m LEFT JOIN tiers t ON t.shop_id = m.shop_id AND t.tier_id = m.tier_id
            WHERE m.shop_id = \(bind: shop) AND m.customer_id = \(bind: customerId)
            """).first() else { return nil }
        var member = try Self.member(row)
        // `+expires_at_ms` keeps the planner off points_lots_expiring (a partial index whose condition this query
        // would otherwise imply): through it, one member's read walked every expiring lot of the shop.
        member.expiring = try await db.raw("""
            SELECT expires_at_ms, SUM(remaining) AS points FROM points_lots
            WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND remaining > 0 AND +expires_at_ms > 0
            GROUP BY expires_at_ms ORDER BY expires_at_ms LIMIT 5
            """).all().map { ExpiringPoints(points: try $0.int64("points"), expiresAtMs: try $0.int64("expires_at_ms")) }
        return member
    }

    static func member(_ row: any SQLRow) throws -> Member {
        Member(
            customerId: try row.string("customer_id"), tierId: try row.string("tier_id"), tierName: try row.string("tier_name"),
            points: try row.int64("points"), orderCount: Int32(try row.int64("order_count")), totalSpentVnd: try row.int64("total_spent_vnd"),
            memberSinceMs: try row.int64("member_since_ms")
        )
    }

    /// R-LOY-1: members by customer id, optionally in a tier and with at least some points.
    public func members(shop: String, tierId: String?, minPoints: Int64, after: String, limit: Int) async throws -> [Member] {
        try await db.read { db in
            var sql: SQLQueryString = """
                SELECT m.*, COALESCE(t.name, '') AS tier_name FROM members m LEFT JOIN tiers t ON t.shop_id = m.shop_id AND t.tier_id = m.tier_id
                WHERE m.shop_id = \(bind: shop) AND m.customer_id > \(bind: after)
                """
            if let tierId { sql += " AND m.tier_id = \(bind: tierId)" }
            if minPoints > 0 { sql += " AND m.points >= \(bind: minPoints)" }
            sql += " ORDER BY m.customer_id LIMIT \(literal: limit)"
            return try await db.raw(sql).all().map(Self.member)
        }
    }

    /// R-SEG-1: the facts conversation-svc knows (phone, name, e-mail, birthday, chat tags by key).
    /// An `eventId` seen before, or a profile read (`atMs`) before the one applied last,
    /// changes nothing; returns whether it was applied.
    @discardableResult
    public func upsertProfile(
        shop: String, customerId: String, phone: String, name: String, email: String, birthday: (year: Int, month: Int, day: Int)?,
        tagKeys: Set<String>, eventId: String = "", atMs: Int64 = 0, nowMs: Int64
    ) async throws -> Bool {
        let birthdayText = birthday.map { String(format: "%04d-%02d-%02d", $0.year, $0.month, $0.day) } ?? ""
        return try await write { db in
            if !eventId.isEmpty {
                let first = try await db.raw("""
                    INSERT INTO seen_events (shop_id, event_id, at_ms) VALUES (\(bind: shop), \(bind: eventId), \(bind: nowMs))
                    ON CONFLICT (shop_id, event_id) DO NOTHING RETURNING event_id
                    """).all()
                if first.isEmpty { return false }
            }
            try await Self.ensureMember(db, shop: shop, customerId: customerId, atMs: nowMs)
            if atMs > 0, let row = try await db.raw("""
                SELECT profile_at_ms FROM members WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
                """).first(), try row.int64("profile_at_ms") > atMs {
                return false
            }
            try await db.raw("""
                UPDATE members SET phone = \(bind: phone), name = \(bind: name), email = \(bind: email), birthday = \(bind: birthdayText),
                    birthday_month = \(bind: Int64(birthday?.month ?? 0)), birthday_md = \(bind: Int64(birthday.map { $0.month * 100 + $0.day } ?? 0)),
                    profile_at_ms = CASE WHEN profile_at_ms > \(bind: atMs) THEN profile_at_ms ELSE \(bind: atMs) END
                WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
                """).run()
            try await db.raw("DELETE FROM member_tags WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)").run()
            for key in tagKeys.sorted() {
                try await db.raw("INSERT INTO member_tags (shop_id, customer_id, tag_key) VALUES (\(bind: shop), \(bind: customerId), \(bind: key))").run()
            }
            try await Self.membersChanged(db, shop: shop, [customerId], nowMs: nowMs)
            return true
        }
    }

    // MARK: Points (R-PTS-1..4)

    /// Loads the member's account, lets `change` act on it, and writes back what changed.
    static func withAccount<T>(
        _ db: any SQLDatabase, shop: String, customerId: String, nowMs: Int64, order: String = "",
        _ change: (inout PointsAccount) throws -> T
    ) async throws -> T {
        let lots = try await db.raw("""
            SELECT * FROM points_lots WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) ORDER BY lot_id
            """).all().map { row in
            let expires = try row.int64("expires_at_ms")
            return PointsAccount.Lot(
                lotId: Int(try row.int64("lot_id")), earnedAtMs: try row.int64("earned_at_ms"), expiresAtMs: expires == 0 ? nil : expires,
                points: try row.int64("points"), remaining: try row.int64("remaining"), orderId: try row.string("order_id")
            )
        }
        var redemptions: [String: [(lot: Int, points: Int64)]] = [:]
        var reversed: Set<String> = []
        if !order.isEmpty {
            for row in try await db.raw("""
                SELECT lot_id, points FROM redemptions WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND order_id = \(bind: order)
                """).all() {
                redemptions[order, default: []].append((Int(try row.int64("lot_id")), try row.int64("points")))
            }
            if try await db.raw("""
                SELECT order_id FROM reversed_orders WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND order_id = \(bind: order)
                """).first() != nil {
                reversed.insert(order)
            }
        }
        var account = PointsAccount(lots: lots, redemptions: redemptions, reversedOrders: reversed)
        let result = try change(&account)

        let before = Dictionary(uniqueKeysWithValues: lots.map { ($0.lotId, $0.remaining) })
        for lot in account.lots {
            if let old = before[lot.lotId] {
                if old != lot.remaining {
                    try await db.raw("""
                        UPDATE points_lots SET remaining = \(bind: lot.remaining)
                        WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND lot_id = \(bind: Int64(lot.lotId))
                        """).run()
                }
            } else {
                try await db.raw("""
                    INSERT INTO points_lots (shop_id, customer_id, lot_id, earned_at_ms, expires_at_ms, points, remaining, order_id)
                    VALUES (\(bind: shop), \(bind: customerId), \(bind: Int64(lot.lotId)), \(bind: lot.earnedAtMs), \(bind: lot.expiresAtMs ?? 0),
                            \(bind: lot.points), \(bind: lot.remaining), \(bind: lot.orderId))
                    """).run()
            }
        }
        for entry in account.entries {
            try await db.raw("""
                INSERT INTO points_ledger (shop_id, entry_id, customer_id, kind, points, at_ms, order_id, reason, staff_id)
                VALUES (\(bind: shop), \(bind: SortableID.make("pts_", nowMs: nowMs)), \(bind: customerId), \(bind: entry.kind.rawValue), \(bind: entry.points),
                        \(bind: entry.atMs), \(bind: entry.orderId), \(bind: entry.reason), \(bind: entry.staffId))
                """).run()
        }
        if !order.isEmpty {
            try await db.raw("""
                DELETE FROM redemptions WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND order_id = \(bind: order)
                """).run()
            for (lot, points) in account.redemptions(of: order) {
                try await db.raw("""
                    INSERT INTO redemptions (shop_id, customer_id, order_id, lot_id, points) VALUES (\(bind: shop), \(bind: customerId), \(bind: order),
                        \(bind: Int64(lot)), \(bind: points))
                    ON CONFLICT (shop_id, customer_id, order_id, lot_id) DO UPDATE SET points = redemptions.points + \(bind: points)
                    """).run()
            }
            if account.reversedOrders.contains(order) && !reversed.contains(order) {
                try await db.raw("""
                    INSERT INTO reversed_orders (shop_id, customer_id, order_id) VALUES (\(bind: shop), \(bind: customerId), \(bind: order))
                    """).run()
            }
        }
        try await db.raw("""
            UPDATE members SET points = \(bind: account.balance) WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
            """).run()
        try await membersChanged(db, shop: shop, [customerId], nowMs: nowMs)
        return result
    }

    /// Runs a points change; its refusal, if any, comes back as a value (the transaction is then rolled back by the caller's throw).
    static func attempt(_ body: () throws(PointsAccount.Refusal) -> Void) -> PointsAccount.Refusal? {
        do {
            try body()
            return nil
        } catch {
            return error
        }
    }

    /// R-PTS-3: points spent at checkout on `orderId`.
    public func redeem(shop: String, customerId: String, points: Int64, orderId: String, reason: String, staffId: String, nowMs: Int64) async throws -> Member {
        return try await write { db in
            guard try await Self.member(db, shop: shop, customerId: customerId) != nil else {
                throw LoyaltyError.notAMember(customerId)
            }
            // An order redeems once: a retried call (order-svc after a time-out) changes nothing.
            if !orderId.isEmpty, try await db.raw("""
                SELECT entry_id FROM points_ledger WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND order_id = \(bind: orderId)
                  AND kind = 'redeem' LIMIT 1
                """).first() != nil {
                return try await Self.member(db, shop: shop, customerId: customerId)!
            }
            let refused = try await Self.withAccount(db, shop: shop, customerId: customerId, nowMs: nowMs, order: orderId) { account in
                Self.attempt { () throws(PointsAccount.Refusal) in try account.spend(points, atMs: nowMs, kind: .redeem, orderId: orderId, reason: reason, staffId: staffId) }
            }
            if let refused { throw LoyaltyError.points(refused) }
            return try await Self.member(db, shop: shop, customerId: customerId)!
        }
    }

    /// R-PTS-4: staff add (positive) or remove (negative) points with a reason.
    public func adjust(shop: String, customerId: String, points: Int64, orderId: String, reason: String, staffId: String, nowMs: Int64) async throws -> Member {
        return try await write { db in
            guard try await Self.member(db, shop: shop, customerId: customerId) != nil else {
                throw LoyaltyError.notAMember(customerId)
            }
            let program = try await Self.program(db, shop: shop)
            let refused = try await Self.withAccount(db, shop: shop, customerId: customerId, nowMs: nowMs) { account in
                Self.attempt { () throws(PointsAccount.Refusal) in
                    if points > 0 {
                        try account.add(points, atMs: nowMs, expiresAtMs: program.expiresAt(earnedAtMs: nowMs), kind: .adjust, orderId: orderId, reason: reason, staffId: staffId)
                    } else {
                        try account.spend(-points, atMs: nowMs, kind: .adjust, orderId: orderId, reason: reason, staffId: staffId)
                    }
                }
            }
            if let refused { throw LoyaltyError.points(refused) }
            return try await Self.member(db, shop: shop, customerId: customerId)!
        }
    }

    /// The member's ledger, oldest first (for tests and operators).
    public func ledger(shop: String, customerId: String) async throws -> [(kind: String, points: Int64, reason: String, staffId: String)] {
        try await db.read { db in
            try await db.raw("""
                SELECT kind, points, reason, staff_id FROM points_ledger WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) ORDER BY entry_id
                """).all().map { (try $0.string("kind"), try $0.int64("points"), try $0.string("reason"), try $0.string("staff_id")) }
        }
    }

    /// R-PTS-2: every lot whose expiry has come by `asOfMs` loses what is left,
    /// for the whole shop in three set-based statements. Returns the points expired.
    public func expire(shop: String, asOfMs: Int64, nowMs: Int64) async throws -> Int64 {
        return try await write { db in
            let due: SQLQueryString = """
                l.shop_id = \(bind: shop) AND l.remaining > 0 AND l.expires_at_ms > 0 AND l.expires_at_ms <= \(bind: asOfMs)
                """
            let total = try await db.raw("SELECT COALESCE(SUM(l.remaining), 0) AS n FROM points_lots l WHERE " + due).first()!.int64("n")
            guard total > 0 else { return 0 }
            let customers = try await db.raw("SELECT DISTINCT l.customer_id FROM points_lots l WHERE " + due).all().map { try $0.string("customer_id") }
            try await Self.membersChanged(db, shop: shop, customers, nowMs: nowMs)
            let run = SortableID.make("pts_", nowMs: nowMs)
            try await db.raw("""
                INSERT INTO points_ledger (shop_id, entry_id, customer_id, kind, points, at_ms, order_id, reason, staff_id)
                SELECT l.shop_id, \(bind: run + "_") || l.customer_id, l.customer_id, 'expire', -SUM(l.remaining), \(bind: asOfMs), '', 'expired', ''
                FROM points_lots l WHERE
                """ + " " + due + " GROUP BY l.shop_id, l.customer_id").run()
            try await db.raw("""
                UPDATE members SET points = points - (SELECT COALESCE(SUM(l.remaining), 0) FROM points_lots l
                                                      WHERE l.customer_id = members.customer_id AND
                """ + " " + due + ") WHERE shop_id = \(bind: shop) AND customer_id IN (SELECT l.customer_id FROM points_lots l WHERE " + due + ")").run()
            try await db.raw("UPDATE points_lots SET remaining = 0 WHERE shop_id = \(bind: shop) AND remaining > 0 AND expires_at_ms > 0 AND expires_at_ms <= \(bind: asOfMs)").run()
            return total
        }
    }

    // MARK: Orders (R-PTS-1, R-LOY-3)

    public struct OrderEvent: Sendable {
        public var eventId: String
        public var orderId: String
        public var customerId: String
        public var kind: RecordOrderEventRequest.Kind
        public var amountVnd: Int64
        public var channel: Order.Channel
        public var district: String
        public var province: String
        public var usedOffer: Bool
        public var atMs: Int64

        public init(eventId: String, orderId: String, customerId: String, kind: RecordOrderEventRequest.Kind, amountVnd: Int64, channel: Order.Channel,
                    district: String, province: String, usedOffer: Bool, atMs: Int64) {
            self.eventId = eventId
            self.orderId = orderId
            self.customerId = customerId
            self.kind = kind
            self.amountVnd = amountVnd
            self.channel = channel
            self.district = district
            self.province = province
            self.usedOffer = usedOffer
            self.atMs = atMs
        }
    }

    /// Applies an order event once by its id: PAID earns points (at the member's tier
    /// before this order) and counts toward the tier; CANCELLED or REFUNDED reverses
    /// both. The same channel rules for every channel (R-LOY-3).
    public func recordOrderEvent(shop: String, _ event: OrderEvent, nowMs: Int64) async throws -> RecordOrderEventResponse {
        return try await write { db in
            let first = try await db.raw("""
                INSERT INTO seen_events (shop_id, event_id, at_ms) VALUES (\(bind: shop), \(bind: event.eventId), \(bind: nowMs))
                ON CONFLICT (shop_id, event_id) DO NOTHING RETURNING event_id
                """).all()
            guard !first.isEmpty else {
                return RecordOrderEventResponse(applied: false, pointsDelta: 0, member: try await Self.member(db, shop: shop, customerId: event.customerId) ?? Member())
            }
            let program = try await Self.program(db, shop: shop)
            let existing = try await db.raw("""
                SELECT customer_id, amount_vnd, reversed FROM orders WHERE shop_id = \(bind: shop) AND order_id = \(bind: event.orderId)
                """).first()
            if let existing, try existing.string("customer_id") != event.customerId {
                throw LoyaltyError.orderOfAnotherCustomer(event.orderId)
            }
            var delta: Int64 = 0
            switch event.kind {
            case .paid:
                guard existing == nil else { break }  // paid once; a second PAID changes nothing
                try await Self.ensureMember(db, shop: shop, customerId: event.customerId, atMs: event.atMs)
                let tierId = try await db.raw("SELECT tier_id FROM members WHERE shop_id = \(bind: shop) AND customer_id = \(bind: event.customerId)")
                    .first()!.string("tier_id")
                let multiplier = Self.rules(try await Self.tiers(db, shop: shop)).first { $0.tierId == tierId }?.pointsMultiplier ?? 1
                try await db.raw("""
                    INSERT INTO orders (shop_id, order_id, customer_id, amount_vnd, channel, district, province, province_key, used_offer, paid_at_ms)
                    VALUES (\(bind: shop), \(bind: event.orderId), \(bind: event.customerId), \(bind: event.amountVnd), \(bind: Int64(event.channel.rawValue)),
                            \(bind: event.district), \(bind: event.province), \(bind: TagName.key(event.province)), \(bind: event.usedOffer ? 1 : 0 as Int64),
                            \(bind: event.atMs))
                    """).run()
                try await db.raw("""
                    UPDATE members SET order_count = order_count + 1, total_spent_vnd = total_spent_vnd + \(bind: event.amountVnd)
                    WHERE shop_id = \(bind: shop) AND customer_id = \(bind: event.customerId)
                    """).run()
                let earned = program.pointsToEarn(paidVnd: event.amountVnd, multiplier: multiplier)
                if earned > 0 {
                    try await Self.withAccount(db, shop: shop, customerId: event.customerId, nowMs: nowMs, order: event.orderId) { account in
                        try? account.add(earned, atMs: event.atMs, expiresAtMs: program.expiresAt(earnedAtMs: event.atMs), orderId: event.orderId, reason: "order paid")
                    }
                    delta = earned
                }
                try await Self.rerank(db, shop: shop, customerId: event.customerId, program: program, nowMs: nowMs)
            case .cancelled, .refunded:
                guard let existing else {
                    // An order that was never paid (order-svc voids one it could not create) still
                    // gives back the points redeemed on it.
                    if try await Self.member(db, shop: shop, customerId: event.customerId) != nil {
                        let reason = event.kind == .cancelled ? "order cancelled" : "order refunded"
                        delta = try await Self.withAccount(db, shop: shop, customerId: event.customerId, nowMs: nowMs, order: event.orderId) { account in
                            account.reverseOrder(event.orderId, atMs: event.atMs, reason: reason)
                        }
                    }
                    break
                }
                guard try existing.int64("reversed") == 0 else { break }
                let amount = try existing.int64("amount_vnd")
                try await db.raw("""
                    UPDATE orders SET reversed = 1, reversed_at_ms = \(bind: event.atMs) WHERE shop_id = \(bind: shop) AND order_id = \(bind: event.orderId)
                    """).run()
                try await db.raw("""
                    UPDATE members SET order_count = order_count - 1, total_spent_vnd = total_spent_vnd - \(bind: amount)
                    WHERE shop_id = \(bind: shop) AND customer_id = \(bind: event.customerId)
                    """).run()
                let reason = event.kind == .cancelled ? "order cancelled" : "order refunded"
                delta = try await Self.withAccount(db, shop: shop, customerId: event.customerId, nowMs: nowMs, order: event.orderId) { account in
                    account.reverseOrder(event.orderId, atMs: event.atMs, reason: reason)
                }
                try await Self.rerank(db, shop: shop, customerId: event.customerId, program: program, nowMs: nowMs)
            default:
                throw LoyaltyError.unknownOrderEventKind
            }
            return RecordOrderEventResponse(
                applied: true, pointsDelta: delta, member: try await Self.member(db, shop: shop, customerId: event.customerId) ?? Member()
            )
        }
    }

    /// R-LOY-4, R-PTS-1, R-PTS-3: what an order would get; writes nothing.
    public func preview(shop: String, customerId: String, subtotalVnd: Int64, hasPromotion: Bool, redeemPoints: Int64, nowMs: Int64) async throws -> PreviewOrderResponse {
        try await db.read { db in
            let program = try await Self.program(db, shop: shop)
            let member = try await db.raw("SELECT tier_id FROM members WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)").first()
            let tierId = try member?.string("tier_id") ?? ""
            let tier = tierId.isEmpty ? nil : Self.rules(try await Self.tiers(db, shop: shop)).first { $0.tierId == tierId }
            // Only points not past their expiry can be spent.
            let balance = try await db.raw("""
                SELECT COALESCE(SUM(remaining), 0) AS n FROM points_lots WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
                  AND remaining > 0 AND (expires_at_ms = 0 OR expires_at_ms > \(bind: nowMs))
                """).first()!.int64("n")
            let quote = program.quote(subtotalVnd: subtotalVnd, hasPromotion: hasPromotion, tier: tier, balance: balance, redeemPoints: redeemPoints)
            return PreviewOrderResponse(
                tierDiscountVnd: quote.tierDiscountVnd, pointsDiscountVnd: quote.pointsDiscountVnd, pointsToEarn: quote.pointsToEarn,
                tierId: tier?.tierId ?? "", pointsRedeemed: quote.pointsRedeemed
            )
        }
    }

    // MARK: Offer dashboard (R-LOY-5)

    /// The value and number of paid, not reversed orders that used an offer, by
    /// district of `province` (matched without accents or case), largest first.
    public func offerRevenueByDistrict(shop: String, province: String, range: DayRange) async throws -> [DistrictRevenue] {
        let ms = range.msRange
        return try await db.read { db in
            var totals: [String: (name: String, revenue: Int64, orders: Int32)] = [:]
            for row in try await db.raw("""
                SELECT district, SUM(amount_vnd) AS revenue, COUNT(*) AS n FROM orders
                WHERE shop_id = \(bind: shop) AND province_key = \(bind: TagName.key(province)) AND used_offer = 1 AND reversed = 0
                  AND paid_at_ms >= \(bind: ms.lowerBound) AND paid_at_ms < \(bind: ms.upperBound)
                GROUP BY district
                """).all() {
                // "Quận 1" and "quan 1" are one district.
                let name = try row.string("district")
                let key = TagName.key(name)
                var total = totals[key] ?? (name, 0, 0)
                total.revenue += try row.int64("revenue")
                total.orders += Int32(try row.int64("n"))
                totals[key] = total
            }
            return totals.values.map { DistrictRevenue(district: $0.name, revenueVnd: $0.revenue, orders: $0.orders) }
                .sorted { ($0.revenueVnd, $1.district) > ($1.revenueVnd, $0.district) }
        }
    }
}
