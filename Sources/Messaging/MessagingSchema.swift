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
    ]
}
