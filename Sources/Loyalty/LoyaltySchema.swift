import MeshStore

/// loyalty-svc's tables; every key starts with shop_id.
public enum LoyaltySchema {
    public static let migrations: [Migration] = [
        Migration(version: 1, name: "loyalty", statements: [
            // R-LOY-2, R-PTS-1..2. expiry_kind: 1 never, 2 fixed date, 3 after months; cycle as Program.Cycle.
            """
            CREATE TABLE programs (
                shop_id TEXT NOT NULL PRIMARY KEY, earn_vnd_per_point BIGINT NOT NULL, redeem_vnd_per_point BIGINT NOT NULL,
                expiry_kind BIGINT NOT NULL, expiry_date TEXT NOT NULL DEFAULT '', expiry_months BIGINT NOT NULL DEFAULT 0,
                cycle BIGINT NOT NULL, cycle_start_ms BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL)
            """,
            // The multiplier is kept in hundredths (1.5 → 150) so that points never depend on floating point.
            """
            CREATE TABLE tiers (
                shop_id TEXT NOT NULL, tier_id TEXT NOT NULL, name TEXT NOT NULL, name_key TEXT NOT NULL, min_spend_vnd BIGINT NOT NULL,
                discount_percent BIGINT NOT NULL, multiplier_hundredths BIGINT NOT NULL, combinable BIGINT NOT NULL,
                PRIMARY KEY (shop_id, tier_id),
                UNIQUE (shop_id, name_key))
            """,
            // R-LOY-1, R-SEG-1. points is the sum of the member's lots; birthday_md is month × 100 + day.
            """
            CREATE TABLE members (
                shop_id TEXT NOT NULL, customer_id TEXT NOT NULL, tier_id TEXT NOT NULL DEFAULT '', points BIGINT NOT NULL DEFAULT 0,
                order_count BIGINT NOT NULL DEFAULT 0, total_spent_vnd BIGINT NOT NULL DEFAULT 0,
                member_since_ms BIGINT NOT NULL, phone TEXT NOT NULL DEFAULT '', name TEXT NOT NULL DEFAULT '', email TEXT NOT NULL DEFAULT '',
                birthday TEXT NOT NULL DEFAULT '', birthday_month BIGINT NOT NULL DEFAULT 0, birthday_md BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (shop_id, customer_id))
            """,
            "CREATE INDEX members_by_tier ON members (shop_id, tier_id, customer_id)",
            "CREATE INDEX members_by_points ON members (shop_id, points)",
            "CREATE INDEX members_by_birthday ON members (shop_id, birthday_md)",
            "CREATE INDEX members_by_since ON members (shop_id, member_since_ms)",
            "CREATE TABLE member_tags (shop_id TEXT NOT NULL, customer_id TEXT NOT NULL, tag_key TEXT NOT NULL, PRIMARY KEY (shop_id, tag_key, customer_id))",
            // R-PTS-1, R-LOY-3..5: paid orders as loyalty saw them; a cancelled or refunded one is reversed.
            """
            CREATE TABLE orders (
                shop_id TEXT NOT NULL, order_id TEXT NOT NULL, customer_id TEXT NOT NULL, amount_vnd BIGINT NOT NULL, channel BIGINT NOT NULL,
                district TEXT NOT NULL, province TEXT NOT NULL, province_key TEXT NOT NULL, used_offer BIGINT NOT NULL, paid_at_ms BIGINT NOT NULL,
                reversed BIGINT NOT NULL DEFAULT 0, reversed_at_ms BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (shop_id, order_id))
            """,
            "CREATE INDEX orders_by_customer ON orders (shop_id, customer_id, paid_at_ms)",
            "CREATE INDEX orders_by_province ON orders (shop_id, province_key, paid_at_ms)",
            // R-PTS-2: a lot of points; expires_at_ms 0 means never.
            """
            CREATE TABLE points_lots (
                shop_id TEXT NOT NULL, customer_id TEXT NOT NULL, lot_id BIGINT NOT NULL, earned_at_ms BIGINT NOT NULL, expires_at_ms BIGINT NOT NULL,
                points BIGINT NOT NULL, remaining BIGINT NOT NULL, order_id TEXT NOT NULL,
                PRIMARY KEY (shop_id, customer_id, lot_id))
            """,
            "CREATE INDEX points_lots_expiring ON points_lots (shop_id, expires_at_ms) WHERE remaining > 0 AND expires_at_ms > 0",
            // R-PTS-4: every change to a balance, with its reason and staff.
            """
            CREATE TABLE points_ledger (
                shop_id TEXT NOT NULL, entry_id TEXT NOT NULL, customer_id TEXT NOT NULL, kind TEXT NOT NULL, points BIGINT NOT NULL,
                at_ms BIGINT NOT NULL, order_id TEXT NOT NULL, reason TEXT NOT NULL, staff_id TEXT NOT NULL,
                PRIMARY KEY (shop_id, entry_id))
            """,
            "CREATE INDEX points_ledger_by_customer ON points_ledger (shop_id, customer_id, entry_id)",
            // What each order's redemption took from which lot, to give it back on cancellation.
            """
            CREATE TABLE redemptions (
                shop_id TEXT NOT NULL, customer_id TEXT NOT NULL, order_id TEXT NOT NULL, lot_id BIGINT NOT NULL, points BIGINT NOT NULL,
                PRIMARY KEY (shop_id, customer_id, order_id, lot_id))
            """,
            "CREATE TABLE reversed_orders (shop_id TEXT NOT NULL, customer_id TEXT NOT NULL, order_id TEXT NOT NULL, PRIMARY KEY (shop_id, customer_id, order_id))",
            // RecordOrderEvent is applied once per event_id.
            "CREATE TABLE seen_events (shop_id TEXT NOT NULL, event_id TEXT NOT NULL, at_ms BIGINT NOT NULL, PRIMARY KEY (shop_id, event_id))",
            // R-SEG-1: conditions as JSON; membership is evaluated when asked, so it is always current.
            """
            CREATE TABLE segments (
                shop_id TEXT NOT NULL, segment_id TEXT NOT NULL, name TEXT NOT NULL, match BIGINT NOT NULL, conditions TEXT NOT NULL,
                created_at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, segment_id))
            """,
        ]),
        // R-REF-1. One active campaign per shop; a voucher keeps the offer, channel and template it was made with.
        Migration(version: 2, name: "referrals", statements: [
            """
            CREATE TABLE referral_campaigns (
                shop_id TEXT NOT NULL, campaign_id TEXT NOT NULL, name TEXT NOT NULL, discount_percent BIGINT NOT NULL, discount_vnd BIGINT NOT NULL,
                valid_days BIGINT NOT NULL, channel BIGINT NOT NULL, template_id TEXT NOT NULL, active BIGINT NOT NULL, created_at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, campaign_id))
            """,
            """
            CREATE TABLE vouchers (
                shop_id TEXT NOT NULL, code TEXT NOT NULL, campaign_id TEXT NOT NULL, order_id TEXT NOT NULL, referrer_customer_id TEXT NOT NULL,
                referrer_name TEXT NOT NULL, friend_phone TEXT NOT NULL, discount_percent BIGINT NOT NULL, discount_vnd BIGINT NOT NULL,
                expires_at_ms BIGINT NOT NULL, channel BIGINT NOT NULL, template_id TEXT NOT NULL, staff_id TEXT NOT NULL, created_at_ms BIGINT NOT NULL,
                sent BIGINT NOT NULL DEFAULT 0, message_id TEXT NOT NULL DEFAULT '', redeemed_order_id TEXT NOT NULL DEFAULT '',
                redeemed_at_ms BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (shop_id, code),
                UNIQUE (shop_id, order_id))
            """,
            "CREATE INDEX vouchers_unsent ON vouchers (sent, created_at_ms)",
        ]),
        // Segment conditions on orders read a time range of the shop's orders as one list.
        Migration(version: 3, name: "orders by time", statements: [
            "CREATE INDEX orders_by_time ON orders (shop_id, paid_at_ms, customer_id, reversed, used_offer)",
        ]),
        // When the profile conversation-svc sent was read, so an older one never replaces it.
        Migration(version: 4, name: "profile time", statements: [
            "ALTER TABLE members ADD COLUMN profile_at_ms BIGINT NOT NULL DEFAULT 0",
        ]),
        // R-PANEL-4: members changed, in order, for the live panel (ChangeLog).
        Migration(version: 5, name: "change log", statements: ChangeLog.schema),
        // R-SEG-3: the shop's ad account, each synced segment's audience and what it was sent.
        Migration(version: 6, name: "audiences", statements: [
            """
            CREATE TABLE ad_accounts (
                shop_id TEXT NOT NULL PRIMARY KEY, ad_account_id TEXT NOT NULL, sealed_token TEXT NOT NULL, linked_at_ms BIGINT NOT NULL)
            """,
            """
            CREATE TABLE audience_syncs (
                shop_id TEXT NOT NULL, segment_id TEXT NOT NULL, audience_id TEXT NOT NULL DEFAULT '', schedule BIGINT NOT NULL,
                status BIGINT NOT NULL, next_run_at_ms BIGINT NOT NULL, claimed_until_ms BIGINT NOT NULL DEFAULT 0,
                last_run_at_ms BIGINT NOT NULL DEFAULT 0, uploaded BIGINT NOT NULL DEFAULT 0, removed BIGINT NOT NULL DEFAULT 0,
                skipped BIGINT NOT NULL DEFAULT 0, audience_size BIGINT NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (shop_id, segment_id))
            """,
            "CREATE INDEX audience_syncs_due ON audience_syncs (next_run_at_ms)",
            """
            CREATE TABLE audience_members (
                shop_id TEXT NOT NULL, segment_id TEXT NOT NULL, customer_id TEXT NOT NULL, phone_hash TEXT NOT NULL, email_hash TEXT NOT NULL,
                PRIMARY KEY (shop_id, segment_id, customer_id))
            """,
        ]),
        // R-REF-1 / R-CONV-10: an EMAIL campaign's voucher goes to the friend's e-mail address.
        Migration(version: 7, name: "voucher e-mail", statements: [
            "ALTER TABLE vouchers ADD COLUMN friend_email TEXT NOT NULL DEFAULT ''",
        ]),
        // R-PTS-6: when the points an entry added expire; R-SEG-4 promotions; R-PTS-5 segment adjustments,
        // each member once per key (a run interrupted part-way resumes with the members left);
        // R-REF-1: the order's shipping phone, which a referral may not go to.
        Migration(version: 8, name: "promotions, history, segment points", statements: [
            "ALTER TABLE points_ledger ADD COLUMN expires_at_ms BIGINT NOT NULL DEFAULT 0",
            // prices, segment_ids, tier_ids as JSON arrays.
            """
            CREATE TABLE promotions (
                shop_id TEXT NOT NULL, promotion_id TEXT NOT NULL, name TEXT NOT NULL, kind BIGINT NOT NULL, percent BIGINT NOT NULL,
                amount_vnd BIGINT NOT NULL, prices TEXT NOT NULL, segment_ids TEXT NOT NULL, tier_ids TEXT NOT NULL, from_ms BIGINT NOT NULL,
                to_ms BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, promotion_id))
            """,
            """
            CREATE TABLE segment_adjustments (
                shop_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, segment_id TEXT NOT NULL, points BIGINT NOT NULL, reason TEXT NOT NULL,
                staff_id TEXT NOT NULL, members BIGINT NOT NULL, adjusted BIGINT NOT NULL DEFAULT 0, points_total BIGINT NOT NULL DEFAULT 0,
                created_at_ms BIGINT NOT NULL, done BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (shop_id, idempotency_key))
            """,
            """
            CREATE TABLE segment_adjustment_members (
                shop_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, customer_id TEXT NOT NULL, done BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (shop_id, idempotency_key, customer_id))
            """,
            "ALTER TABLE orders ADD COLUMN phone TEXT NOT NULL DEFAULT ''",
        ]),
    ]
}
