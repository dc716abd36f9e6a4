import MeshStore

/// messaging-svc's tables; every key starts with shop_id.
public enum MessagingSchema {
    public static let migrations: [Migration] = [
        Migration(version: 1, name: "messaging", statements: [
            """
            CREATE TABLE templates (
                shop_id TEXT NOT NULL, template_id TEXT NOT NULL, channel BIGINT NOT NULL, name TEXT NOT NULL,
                body TEXT NOT NULL, purpose BIGINT NOT NULL, enabled BIGINT NOT NULL, provider_template_id TEXT NOT NULL DEFAULT '',
                placeholders TEXT NOT NULL DEFAULT '', created_at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, template_id))
            """,
            // R-MSG-3: the balance is the sum of this ledger; `ref` makes top-ups and charges idempotent.
            """
            CREATE TABLE balance_ledger (
                shop_id TEXT NOT NULL, entry_id TEXT NOT NULL, amount_vnd BIGINT NOT NULL, kind BIGINT NOT NULL,
                ref TEXT NOT NULL, at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, entry_id),
                UNIQUE (shop_id, kind, ref))
            """,
            """
            CREATE TABLE balances (
                shop_id TEXT NOT NULL PRIMARY KEY, balance_vnd BIGINT NOT NULL,
                auto_enabled BIGINT NOT NULL DEFAULT 0, auto_threshold_vnd BIGINT NOT NULL DEFAULT 0, auto_amount_vnd BIGINT NOT NULL DEFAULT 0)
            """,
            """
            CREATE TABLE messages (
                shop_id TEXT NOT NULL, message_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, channel BIGINT NOT NULL,
                recipient TEXT NOT NULL, template_id TEXT NOT NULL, body TEXT NOT NULL, customer_id TEXT NOT NULL DEFAULT '',
                status TEXT NOT NULL, cost_vnd BIGINT NOT NULL, error TEXT NOT NULL DEFAULT '', attempts BIGINT NOT NULL DEFAULT 0,
                provider TEXT NOT NULL DEFAULT '', params TEXT NOT NULL DEFAULT '',
                broadcast_id TEXT NOT NULL DEFAULT '', created_at_ms BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL,
                day BIGINT NOT NULL,
                PRIMARY KEY (shop_id, message_id),
                UNIQUE (shop_id, idempotency_key))
            """,
            "CREATE INDEX messages_by_status ON messages (status, updated_at_ms)",
            "CREATE INDEX messages_by_day ON messages (shop_id, channel, day)",
            // R-ZNS-1..2: delivered and negative counts per Vietnam day, for the OA and per template.
            """
            CREATE TABLE zns_days (
                shop_id TEXT NOT NULL, day BIGINT NOT NULL, delivered BIGINT NOT NULL DEFAULT 0, negative BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (shop_id, day))
            """,
            """
            CREATE TABLE zns_template_days (
                shop_id TEXT NOT NULL, template_id TEXT NOT NULL, day BIGINT NOT NULL,
                delivered BIGINT NOT NULL DEFAULT 0, negative BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (shop_id, template_id, day))
            """,
            // The OA's standing (ZnsQualityState as JSON) after every day up to closed_through_day.
            "CREATE TABLE zns_state (shop_id TEXT NOT NULL PRIMARY KEY, state TEXT NOT NULL, closed_through_day BIGINT NOT NULL)",
            """
            CREATE TABLE feedback (
                shop_id TEXT NOT NULL, message_id TEXT NOT NULL, negative BIGINT NOT NULL, at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, message_id))
            """,
        ]),
        Migration(version: 2, name: "broadcasts-scenarios", statements: [
            // R-MSG-2. Counters move in the transactions that reserve and settle a batch,
            // so they always agree with the messages rows; next_seq is where a restart resumes.
            """
            CREATE TABLE broadcasts (
                shop_id TEXT NOT NULL, broadcast_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, channel BIGINT NOT NULL,
                template_id TEXT NOT NULL, segment_id TEXT NOT NULL, schedule_at_ms BIGINT NOT NULL, params TEXT NOT NULL,
                status BIGINT NOT NULL, audience_loaded BIGINT NOT NULL DEFAULT 0, total BIGINT NOT NULL DEFAULT 0,
                next_seq BIGINT NOT NULL DEFAULT 0, sent BIGINT NOT NULL DEFAULT 0, failed BIGINT NOT NULL DEFAULT 0,
                skipped BIGINT NOT NULL DEFAULT 0, cost_vnd BIGINT NOT NULL DEFAULT 0, attempts BIGINT NOT NULL DEFAULT 0,
                error TEXT NOT NULL DEFAULT '', created_at_ms BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, broadcast_id),
                UNIQUE (shop_id, idempotency_key))
            """,
            "CREATE INDEX broadcasts_by_status ON broadcasts (status, schedule_at_ms)",
            // The audience as loyalty-svc gave it when the broadcast started, in a fixed order.
            """
            CREATE TABLE broadcast_audience (
                shop_id TEXT NOT NULL, broadcast_id TEXT NOT NULL, seq BIGINT NOT NULL, customer_id TEXT NOT NULL,
                phone TEXT NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL,
                PRIMARY KEY (shop_id, broadcast_id, seq))
            """,
            """
            CREATE TABLE broadcast_skips (
                shop_id TEXT NOT NULL, broadcast_id TEXT NOT NULL, reason TEXT NOT NULL, count BIGINT NOT NULL,
                PRIMARY KEY (shop_id, broadcast_id, reason))
            """,
            "CREATE INDEX messages_by_broadcast ON messages (shop_id, broadcast_id, status)",
            // R-BOT-1.
            """
            CREATE TABLE scenarios (
                shop_id TEXT NOT NULL, scenario_id TEXT NOT NULL, trigger_tag_key TEXT NOT NULL, trigger_tag_name TEXT NOT NULL,
                channel BIGINT NOT NULL, steps TEXT NOT NULL, created_at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, scenario_id))
            """,
            "CREATE INDEX scenarios_by_tag ON scenarios (shop_id, trigger_tag_key)",
            """
            CREATE TABLE scheduled_steps (
                shop_id TEXT NOT NULL, step_id TEXT NOT NULL, scenario_id TEXT NOT NULL, step_index BIGINT NOT NULL,
                customer_id TEXT NOT NULL, page_id TEXT NOT NULL, tag_key TEXT NOT NULL, tag_name TEXT NOT NULL,
                recipient TEXT NOT NULL, channel BIGINT NOT NULL, template_id TEXT NOT NULL,
                started_at_ms BIGINT NOT NULL, due_at_ms BIGINT NOT NULL, status TEXT NOT NULL,
                reason TEXT NOT NULL DEFAULT '', message_id TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (shop_id, step_id))
            """,
            "CREATE INDEX scheduled_steps_due ON scheduled_steps (status, due_at_ms)",
            "CREATE INDEX scheduled_steps_by_customer ON scheduled_steps (shop_id, customer_id, status)",
            // Events from other services (OnTagAttached, OnTagDetached, OnCustomerMessage) are applied once.
            "CREATE TABLE seen_events (shop_id TEXT NOT NULL, event_id TEXT NOT NULL, at_ms BIGINT NOT NULL, PRIMARY KEY (shop_id, event_id))",
            // R-MSG-5: the last time each page-scoped id wrote to the page.
            """
            CREATE TABLE messenger_contacts (
                shop_id TEXT NOT NULL, recipient TEXT NOT NULL, customer_id TEXT NOT NULL, page_id TEXT NOT NULL,
                last_customer_message_at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, recipient))
            """,
            "CREATE INDEX messenger_contacts_by_customer ON messenger_contacts (shop_id, customer_id, last_customer_message_at_ms)",
        ]),
        // R-CONV-9: staff replies delivered for conversation-svc, one platform call per delivery key.
        Migration(version: 3, name: "reply deliveries", statements: [
            """
            CREATE TABLE reply_deliveries (
                shop_id TEXT NOT NULL, delivery_key TEXT NOT NULL, state BIGINT NOT NULL,
                platform_message_id TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '', updated_at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, delivery_key))
            """,
        ]),
        // R-MSG-2 profit: each paid order attributed to at most one broadcast, once per order.
        Migration(version: 4, name: "broadcast attribution", statements: [
            "ALTER TABLE broadcasts ADD COLUMN attribution_days BIGINT NOT NULL DEFAULT 7",
            "ALTER TABLE broadcasts ADD COLUMN attributed_orders BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE broadcasts ADD COLUMN attributed_revenue_vnd BIGINT NOT NULL DEFAULT 0",
            """
            CREATE TABLE order_attributions (
                shop_id TEXT NOT NULL, order_id TEXT NOT NULL, broadcast_id TEXT NOT NULL, customer_id TEXT NOT NULL, amount_vnd BIGINT NOT NULL,
                paid_at_ms BIGINT NOT NULL, reversed BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (shop_id, order_id))
            """,
            // A customer's broadcast messages by when they were last moved (delivered).
            "CREATE INDEX messages_by_customer ON messages (shop_id, customer_id, status, updated_at_ms)",
        ]),
        // The shop's default template per kind of message (MessageDefault.Use).
        Migration(version: 5, name: "message defaults", statements: [
            "CREATE TABLE message_defaults (shop_id TEXT NOT NULL, use BIGINT NOT NULL, template_id TEXT NOT NULL, PRIMARY KEY (shop_id, use))",
        ]),
        // Replicas on one database (RunnerLease): a running broadcast belongs to the runner holding its lease;
        // a scenario step being sent belongs to its sender until claimed_until_ms.
        Migration(version: 6, name: "runner leases", statements: [
            "ALTER TABLE broadcasts ADD COLUMN lease_holder TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE broadcasts ADD COLUMN lease_until_ms BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE scheduled_steps ADD COLUMN claimed_until_ms BIGINT NOT NULL DEFAULT 0",
        ]),
    ]
}
