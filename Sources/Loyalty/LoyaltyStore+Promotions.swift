import ChatMeshAPI
import Foundation
import MeshRPC
import MeshStore
import SQLKit

/// R-SEG-4 promotions: kept with their audience (segments and tiers) and window; an
/// order is priced with the best one whose audience holds the customer when it is priced.
extension LoyaltyStore {
    struct StoredPrice: Codable {
        var variantId: String
        var priceVnd: Int64
    }

    /// Saves a promotion (a new one when `promotion.promotionId` is empty). Every segment
    /// and tier it targets must exist.
    public func upsertPromotion(shop: String, _ promotion: Promotion, nowMs: Int64) async throws -> Promotion {
        var made = promotion
        if made.promotionId.isEmpty { made.promotionId = SortableID.make("promo_", nowMs: nowMs) }
        made.updatedAtMs = nowMs
        let prices = String(decoding: try JSONEncoder().encode(promotion.prices.map { StoredPrice(variantId: $0.variantId, priceVnd: $0.priceVnd) }), as: UTF8.self)
        let segments = String(decoding: try JSONEncoder().encode(promotion.segmentIds), as: UTF8.self)
        let tiers = String(decoding: try JSONEncoder().encode(promotion.tierIds), as: UTF8.self)
        let isNew = promotion.promotionId.isEmpty
        let saved = made
        try await write { db in
            for (index, id) in promotion.segmentIds.enumerated() where try await db.raw("""
                SELECT segment_id FROM segments WHERE shop_id = \(bind: shop) AND segment_id = \(bind: id)
                """).first() == nil {
                throw LoyaltyError.noAudience(field: "segment_ids[\(index)]", id: id)
            }
            for (index, id) in promotion.tierIds.enumerated() where try await db.raw("""
                SELECT tier_id FROM tiers WHERE shop_id = \(bind: shop) AND tier_id = \(bind: id)
                """).first() == nil {
                throw LoyaltyError.noAudience(field: "tier_ids[\(index)]", id: id)
            }
            if !isNew, try await db.raw("""
                SELECT promotion_id FROM promotions WHERE shop_id = \(bind: shop) AND promotion_id = \(bind: saved.promotionId)
                """).first() == nil {
                throw LoyaltyError.noPromotion(saved.promotionId)
            }
            try await db.raw("""
                INSERT INTO promotions (shop_id, promotion_id, name, kind, percent, amount_vnd, prices, segment_ids, tier_ids, from_ms, to_ms, updated_at_ms)
                VALUES (\(bind: shop), \(bind: saved.promotionId), \(bind: saved.name), \(bind: Int64(saved.kind.rawValue)), \(bind: Int64(saved.percent)),
                        \(bind: saved.amountVnd), \(bind: prices), \(bind: segments), \(bind: tiers), \(bind: saved.fromMs), \(bind: saved.toMs), \(bind: nowMs))
                ON CONFLICT (shop_id, promotion_id) DO UPDATE SET name = excluded.name, kind = excluded.kind, percent = excluded.percent,
                    amount_vnd = excluded.amount_vnd, prices = excluded.prices, segment_ids = excluded.segment_ids, tier_ids = excluded.tier_ids,
                    from_ms = excluded.from_ms, to_ms = excluded.to_ms, updated_at_ms = excluded.updated_at_ms
                """).run()
        }
        return saved
    }

    /// A page of the shop's promotions in the order they were made, after `after`;
    /// `activeAtMs` > 0 keeps those running then.
    public func promotions(shop: String, activeAtMs: Int64, after: String, limit: Int) async throws -> [Promotion] {
        try await db.read { db in
            var sql: SQLQueryString = "SELECT * FROM promotions WHERE shop_id = \(bind: shop) AND promotion_id > \(bind: after)"
            if activeAtMs > 0 { sql += " AND " + Self.running(at: activeAtMs) }
            return try await db.raw(sql + " ORDER BY promotion_id LIMIT \(literal: limit)").all().map(Self.promotion)
        }
    }

    public func deletePromotion(shop: String, promotionId: String) async throws {
        try await write { db in
            let deleted = try await db.raw("""
                DELETE FROM promotions WHERE shop_id = \(bind: shop) AND promotion_id = \(bind: promotionId) RETURNING promotion_id
                """).all()
            if deleted.isEmpty { throw LoyaltyError.noPromotion(promotionId) }
        }
    }

    static func running(at ms: Int64) -> SQLQueryString {
        "from_ms <= \(bind: ms) AND (to_ms = 0 OR to_ms > \(bind: ms))"
    }

    static func promotion(_ row: any SQLRow) throws -> Promotion {
        let prices = try JSONDecoder().decode([StoredPrice].self, from: Data(try row.string("prices").utf8))
        return Promotion(
            promotionId: try row.string("promotion_id"), name: try row.string("name"), kind: Promotion.Kind(rawValue: Int32(try row.int64("kind"))),
            percent: Int32(try row.int64("percent")), amountVnd: try row.int64("amount_vnd"),
            prices: prices.map { PromotionPrice(variantId: $0.variantId, priceVnd: $0.priceVnd) },
            segmentIds: try JSONDecoder().decode([String].self, from: Data(try row.string("segment_ids").utf8)),
            tierIds: try JSONDecoder().decode([String].self, from: Data(try row.string("tier_ids").utf8)),
            fromMs: try row.int64("from_ms"), toMs: try row.int64("to_ms"), updatedAtMs: try row.int64("updated_at_ms")
        )
    }

    /// R-SEG-4: the promotions running at `nowMs` whose audience holds the customer: their
    /// tier is one of its tiers, or they are a member of one of its segments now.
    static func applicablePromotions(_ db: any SQLDatabase, shop: String, customerId: String, tierId: String, nowMs: Int64) async throws -> [PromotionOffer] {
        let running = try await db.raw("SELECT * FROM promotions WHERE shop_id = \(bind: shop) AND " + running(at: nowMs)).all().map(promotion)
        guard !running.isEmpty else { return [] }
        var membership: [String: Bool] = [:]
        var offers: [PromotionOffer] = []
        for promotion in running {
            var holds = !tierId.isEmpty && promotion.tierIds.contains(tierId)
            for segmentId in promotion.segmentIds where !holds {
                if let known = membership[segmentId] {
                    holds = known
                    continue
                }
                // A segment deleted since stands for nobody.
                var member = false
                if let row = try await db.raw("SELECT * FROM segments WHERE shop_id = \(bind: shop) AND segment_id = \(bind: segmentId)").first(),
                   let rule = try? SegmentRule.checking(try segment(row).match, try segment(row).conditions) {
                    member = try await db.raw("""
                        SELECT m.customer_id FROM members m WHERE m.shop_id = \(bind: shop) AND m.customer_id = \(bind: customerId) AND
                        """ + predicate(rule, shop: shop)).first() != nil
                }
                membership[segmentId] = member
                holds = member
            }
            guard holds else { continue }
            let benefit: PromotionOffer.Benefit = switch promotion.kind {
            case .percent: .percent(Int(promotion.percent))
            case .amount: .amount(promotion.amountVnd)
            default: .priceList(Dictionary(promotion.prices.map { ($0.variantId, $0.priceVnd) }, uniquingKeysWith: min))
            }
            offers.append(PromotionOffer(promotionId: promotion.promotionId, name: promotion.name, benefit: benefit))
        }
        return offers
    }
}
