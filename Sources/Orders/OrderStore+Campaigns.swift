import ChatMeshAPI
import Foundation
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// Campaigns (R-CAMP-1, R-CAMP-3) and the livestream comments that fill carts (R-CAMP-2).
extension OrderStore {
    // MARK: Campaigns (R-CAMP-1, R-CAMP-3)

    /// Items with no price sell at the catalog price.
    public func createCampaign(shop: String, _ campaign: Campaign, nowMs: Int64) async throws -> Campaign {
        let id = SortableID.make("cmp_", nowMs: nowMs)
        return try await write { db in
            let catalog = try await Self.catalog(db, shop: shop, variants: campaign.items.map(\.variantId))
            try await db.raw("""
                INSERT INTO campaigns (shop_id, campaign_id, page_id, kind, name, post_id, live, created_at_ms)
                VALUES (\(bind: shop), \(bind: id), \(bind: campaign.pageId), \(bind: Int64(campaign.kind.rawValue)), \(bind: campaign.name),
                        \(bind: campaign.postId), \(bind: campaign.live ? 1 : 0 as Int64), \(bind: nowMs))
                """).run()
            for (index, item) in campaign.items.enumerated() {
                guard let entry = catalog[item.variantId] else { throw OrderError.noVariant(field: "items[\(index)]", id: item.variantId) }
                try await db.raw("""
                    INSERT INTO campaign_items (shop_id, campaign_id, code, code_key, variant_id, price_vnd, position)
                    VALUES (\(bind: shop), \(bind: id), \(bind: item.code), \(bind: CommentParser.codeKey(item.code)), \(bind: item.variantId),
                            \(bind: item.priceVnd > 0 ? item.priceVnd : entry.priceVnd), \(bind: Int64(index)))
                    """).run()
            }
            return try await Self.campaign(db, shop: shop, id: id)
        }
    }

    /// A campaign with its items and comment statistics.
    public func campaign(shop: String, id: String) async throws -> Campaign {
        try await db.read { db in try await Self.campaign(db, shop: shop, id: id) }
    }

    static func campaign(_ db: any SQLDatabase, shop: String, id: String) async throws -> Campaign {
        guard let row = try await db.raw("SELECT * FROM campaigns WHERE shop_id = \(bind: shop) AND campaign_id = \(bind: id)").first() else {
            throw OrderError.noCampaign(id)
        }
        var campaign = try campaignRow(row)
        campaign.items = try await db.raw("""
            SELECT code, variant_id, price_vnd FROM campaign_items WHERE shop_id = \(bind: shop) AND campaign_id = \(bind: id) ORDER BY position
            """).all().map { CampaignItem(code: try $0.string("code"), variantId: try $0.string("variant_id"), priceVnd: try $0.int64("price_vnd")) }
        campaign.stats = try await stats(db, shop: shop, campaign: id)
        return campaign
    }

    /// R-CAMP-3: a livestream goes live when the stream starts and stops being live when it ends.
    public func setCampaignLive(shop: String, id: String, live: Bool) async throws -> Campaign {
        return try await write { db in
            let campaign = try await Self.campaign(db, shop: shop, id: id)
            if campaign.kind != .livestream { throw OrderError.notALivestream(campaign: id, kind: campaign.kind.protoName) }
            try await db.raw("""
                UPDATE campaigns SET live = \(bind: live ? 1 : 0 as Int64) WHERE shop_id = \(bind: shop) AND campaign_id = \(bind: id)
                """).run()
            var updated = campaign
            updated.live = live
            return updated
        }
    }

    static func campaignRow(_ row: any SQLRow) throws -> Campaign {
        Campaign(
            campaignId: try row.string("campaign_id"), pageId: try row.string("page_id"), kind: Campaign.Kind(rawValue: Int32(try row.int64("kind"))),
            name: try row.string("name"), postId: try row.string("post_id"), live: try row.int64("live") != 0, createdAtMs: try row.int64("created_at_ms")
        )
    }

    /// R-CAMP-3: revenue and count of the campaign's carts, distinct commenters and those who gave a phone.
    static func stats(_ db: any SQLDatabase, shop: String, campaign: String) async throws -> CampaignStats {
        let carts = try await db.raw("""
            SELECT COUNT(DISTINCT c.cart_id) AS carts, COALESCE(SUM(i.quantity * i.price_vnd), 0) AS revenue
            FROM carts c LEFT JOIN cart_items i ON i.shop_id = c.shop_id AND i.cart_id = c.cart_id
            WHERE c.shop_id = \(bind: shop) AND c.campaign_id = \(bind: campaign)
            """).first()!
        let people = try await db.raw("""
            SELECT COUNT(DISTINCT customer_id) AS customers,
                   COUNT(DISTINCT CASE WHEN phone <> '' THEN customer_id END) AS with_phone
            FROM comments WHERE shop_id = \(bind: shop) AND campaign_id = \(bind: campaign)
            """).first()!
        return CampaignStats(
            estimatedRevenueVnd: try carts.int64("revenue"), draftOrders: Int32(try carts.int64("carts")),
            customers: Int32(try people.int64("customers")), customersWithPhone: Int32(try people.int64("with_phone"))
        )
    }

    /// Newest first, after the campaign id `after` (a page token).
    public func campaigns(shop: String, pageId: String, after: String, limit: Int) async throws -> [Campaign] {
        try await db.read { db in
            var sql: SQLQueryString = "SELECT campaign_id FROM campaigns WHERE shop_id = \(bind: shop)"
            if !pageId.isEmpty { sql += " AND page_id = \(bind: pageId)" }
            if !after.isEmpty { sql += " AND campaign_id < \(bind: after)" }
            sql += " ORDER BY campaign_id DESC LIMIT \(literal: limit)"
            var out: [Campaign] = []
            for row in try await db.raw(sql).all() {
                out.append(try await Self.campaign(db, shop: shop, id: try row.string("campaign_id")))
            }
            return out
        }
    }

    /// R-CAMP-1: a new price for every variant sold under `code`, also in the campaign's open carts.
    public func updateCampaignItemPrice(shop: String, campaign: String, code: String, priceVnd: Int64, staffId: String, nowMs: Int64) async throws -> Campaign {
        return try await write { db in
            _ = try await Self.campaign(db, shop: shop, id: campaign)
            let variants = try await db.raw("""
                UPDATE campaign_items SET price_vnd = \(bind: priceVnd)
                WHERE shop_id = \(bind: shop) AND campaign_id = \(bind: campaign) AND code_key = \(bind: CommentParser.codeKey(code)) RETURNING variant_id
                """).all().map { try $0.string("variant_id") }
            if variants.isEmpty { throw OrderError.noCampaignCode(campaign: campaign, code: code) }
            let carts = try await db.raw("""
                UPDATE cart_items SET price_vnd = \(bind: priceVnd)
                WHERE shop_id = \(bind: shop) AND variant_id IN (\(binds: variants))
                  AND cart_id IN (SELECT cart_id FROM carts WHERE shop_id = \(bind: shop) AND campaign_id = \(bind: campaign) AND order_id = '')
                RETURNING cart_id
                """).all().map { try $0.string("cart_id") }
            if !carts.isEmpty {
                let customers = try await db.raw("""
                    UPDATE carts SET updated_by_staff_id = \(bind: staffId), updated_at_ms = \(bind: nowMs)
                    WHERE shop_id = \(bind: shop) AND cart_id IN (\(binds: Array(Set(carts)))) RETURNING customer_id
                    """).all().map { try $0.string("customer_id") }
                try await Self.changed(db, shop: shop, [.carts], customers: customers, nowMs: nowMs)
            }
            return try await Self.campaign(db, shop: shop, id: campaign)
        }
    }

    // MARK: Comments (R-CAMP-2)

    /// A livestream or post comment to read (R-CAMP-2).
    public struct Comment: Sendable {
        public var campaignId: String
        public var customerId: String
        public var text: String
        public var atMs: Int64

        public init(campaignId: String, customerId: String, text: String, atMs: Int64) {
            self.campaignId = campaignId
            self.customerId = customerId
            self.text = text
            self.atMs = atMs
        }
    }

    /// What a comment did: intents read, a phone, the cart it filled.
    public struct CommentResult: Sendable {
        public var intents: [CommentParser.Intent]
        public var phone: String?
        public var cartId: String
    }

    /// Reads and keeps comments, several in one transaction (a livestream sends
    /// thousands a second) and a handful of statements whatever their number; the
    /// intents go into each customer's open cart for the campaign. A comment to an
    /// unknown campaign fails alone.
    public func ingest(shop: String, _ comments: [Comment], nowMs: Int64) async throws -> [Result<CommentResult, OrderError>] {
        return try await write { db in
            var campaigns: [String: CampaignReader] = [:]
            for id in Set(comments.map(\.campaignId)) {
                if let reader = try await Self.reader(db, shop: shop, campaign: id) { campaigns[id] = reader }
            }
            struct Pair: Hashable { var customer: String; var campaign: String }
            var readings: [CommentParser.Reading?] = []
            var rows: [SQLQueryString] = []
            var wanted: Set<Pair> = []
            for comment in comments {
                guard let reader = campaigns[comment.campaignId] else {
                    readings.append(nil)
                    continue
                }
                let reading = reader.parser.read(comment.text)
                readings.append(reading)
                rows.append("""
                    (\(bind: shop), \(bind: SortableID.make("cmt_", nowMs: nowMs)), \(bind: comment.campaignId), \(bind: comment.customerId),
                     \(bind: comment.text), \(bind: reading.phone ?? ""), \(bind: Int64(reading.intents.count)), \(bind: comment.atMs))
                    """)
                if !reading.intents.isEmpty { wanted.insert(Pair(customer: comment.customerId, campaign: comment.campaignId)) }
            }
            for start in stride(from: 0, to: rows.count, by: 500) {
                try await db.raw("""
                    INSERT INTO comments (shop_id, comment_id, campaign_id, customer_id, text, phone, intents, commented_at_ms) VALUES
                    """ + " " + rows[start..<min(start + 500, rows.count)].joined(separator: ", ")).run()
            }
            // The open carts of the pairs, made where missing.
            var carts: [Pair: String] = [:]
            if !wanted.isEmpty {
                let customers = Array(Set(wanted.map(\.customer)))
                for chunk in stride(from: 0, to: customers.count, by: 500) {
                    for row in try await db.raw("""
                        SELECT cart_id, customer_id, campaign_id FROM carts
                        WHERE shop_id = \(bind: shop) AND order_id = '' AND campaign_id IN (\(binds: Array(Set(wanted.map(\.campaign)))))
                          AND customer_id IN (\(binds: Array(customers[chunk..<min(chunk + 500, customers.count)])))
                        """).all() {
                        carts[Pair(customer: try row.string("customer_id"), campaign: try row.string("campaign_id"))] = try row.string("cart_id")
                    }
                }
                var created: [SQLQueryString] = []
                for pair in wanted where carts[pair] == nil {
                    let id = SortableID.make("cart_", nowMs: nowMs)
                    carts[pair] = id
                    created.append("""
                        (\(bind: shop), \(bind: id), \(bind: pair.customer), \(bind: pair.campaign), \(bind: campaigns[pair.campaign]!.name), '', \(bind: nowMs))
                        """)
                }
                for start in stride(from: 0, to: created.count, by: 500) {
                    try await db.raw("""
                        INSERT INTO carts (shop_id, cart_id, customer_id, campaign_id, name, updated_by_staff_id, updated_at_ms) VALUES
                        """ + " " + created[start..<min(start + 500, created.count)].joined(separator: ", ")).run()
                }
            }
            // Every intent of the batch, summed per cart and variant, in one upsert.
            struct Line: Hashable { var cart: String; var variant: String }
            var added: [Line: (quantity: Int64, price: Int64)] = [:]
            var results: [Result<CommentResult, OrderError>] = []
            for (comment, reading) in zip(comments, readings) {
                guard let reading else {
                    results.append(.failure(.noCampaign(comment.campaignId)))
                    continue
                }
                var cartId = ""
                if !reading.intents.isEmpty {
                    cartId = carts[Pair(customer: comment.customerId, campaign: comment.campaignId)]!
                    for intent in reading.intents {
                        let line = Line(cart: cartId, variant: intent.variantId)
                        let price = campaigns[comment.campaignId]!.prices[intent.variantId] ?? 0
                        added[line, default: (0, price)].quantity += Int64(intent.quantity)
                    }
                }
                results.append(.success(CommentResult(intents: reading.intents, phone: reading.phone, cartId: cartId)))
            }
            let cap = Int64(CommentParser.maxQuantity)
            let lines: [SQLQueryString] = added.map { line, value in
                "(\(bind: shop), \(bind: line.cart), \(bind: line.variant), \(bind: min(value.quantity, cap)), \(bind: value.price))"
            }
            for start in stride(from: 0, to: lines.count, by: 500) {
                try await db.raw("""
                    INSERT INTO cart_items (shop_id, cart_id, variant_id, quantity, price_vnd) VALUES
                    """ + " " + lines[start..<min(start + 500, lines.count)].joined(separator: ", ") + """
                     ON CONFLICT (shop_id, cart_id, variant_id) DO UPDATE SET quantity =
                        CASE WHEN cart_items.quantity + excluded.quantity > \(bind: cap) THEN \(bind: cap) ELSE cart_items.quantity + excluded.quantity END
                    """).run()
            }
            let touched = Array(Set(added.keys.map(\.cart)))
            for start in stride(from: 0, to: touched.count, by: 500) {
                try await db.raw("""
                    UPDATE carts SET updated_by_staff_id = '', updated_at_ms = \(bind: nowMs)
                    WHERE shop_id = \(bind: shop) AND cart_id IN (\(binds: Array(touched[start..<min(start + 500, touched.count)])))
                    """).run()
            }
            try await Self.changed(db, shop: shop, [.carts], customers: wanted.map(\.customer), nowMs: nowMs)
            return results
        }
    }

    /// What reading a campaign's comments needs: its parser, prices and name.
    struct CampaignReader {
        var parser: CommentParser
        var prices: [String: Int64]
        var name: String
    }

    static func reader(_ db: any SQLDatabase, shop: String, campaign: String) async throws -> CampaignReader? {
        guard let row = try await db.raw("SELECT name FROM campaigns WHERE shop_id = \(bind: shop) AND campaign_id = \(bind: campaign)").first() else {
            return nil
        }
        var items: [CommentParser.Item] = []
        var prices: [String: Int64] = [:]
        for item in try await db.raw("""
            SELECT i.code, i.variant_id, i.price_vnd, COALESCE(v.title, '') AS title FROM campaign_items i
            LEFT JOIN variants v ON v.shop_id = i.shop_id AND v.variant_id = i.variant_id
            WHERE i.shop_id = \(bind: shop) AND i.campaign_id = \(bind: campaign) ORDER BY i.position
            """).all() {
            items.append(CommentParser.Item(code: try item.string("code"), variantId: try item.string("variant_id"), variantTitle: try item.string("title")))
            prices[try item.string("variant_id")] = try item.int64("price_vnd")
        }
        return CampaignReader(parser: CommentParser(items: items), prices: prices, name: try row.string("name"))
    }
}
