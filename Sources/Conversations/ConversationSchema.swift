import MeshStore

/// conversation-svc's tables. Every row carries `shop_id` and every key and
/// index starts with it, so no query can reach another shop's rows by id alone.
/// Integers are BIGINT and flags 0/1 so the same DDL runs on SQLite and PostgreSQL.
public enum ConversationSchema {
    public static let migrations: [Migration] = [
        Migration(version: 1, name: "conversations", statements: [
            """
            CREATE TABLE pages (
                shop_id TEXT NOT NULL, page_id TEXT NOT NULL, name TEXT NOT NULL, platform BIGINT NOT NULL,
                connected_at_ms BIGINT NOT NULL,
                fb_sync BIGINT NOT NULL DEFAULT 0,
                fb_backfill_pending BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (shop_id, page_id))
            """,
            """
            CREATE TABLE tag_folders (
                shop_id TEXT NOT NULL, folder_id TEXT NOT NULL, page_id TEXT NOT NULL,
                name TEXT NOT NULL, name_key TEXT NOT NULL, is_facebook BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (shop_id, folder_id),
                UNIQUE (shop_id, page_id, name_key))
            """,
            """
            CREATE TABLE tags (
                shop_id TEXT NOT NULL, tag_id TEXT NOT NULL, page_id TEXT NOT NULL, folder_id TEXT NOT NULL,
                name TEXT NOT NULL, name_key TEXT NOT NULL, color TEXT NOT NULL, visible BIGINT NOT NULL,
                fb_label_id TEXT,
                PRIMARY KEY (shop_id, tag_id),
                UNIQUE (shop_id, page_id, name_key),
                UNIQUE (shop_id, page_id, fb_label_id))
            """,
            "CREATE INDEX tags_by_folder ON tags (shop_id, folder_id)",
            """
            CREATE TABLE customers (
                shop_id TEXT NOT NULL, customer_id TEXT NOT NULL, page_id TEXT NOT NULL, external_id TEXT NOT NULL,
                name TEXT NOT NULL, birthday TEXT NOT NULL DEFAULT '',
                phone TEXT NOT NULL DEFAULT '', phone_source BIGINT NOT NULL DEFAULT 0,
                address TEXT NOT NULL DEFAULT '', address_source BIGINT NOT NULL DEFAULT 0,
                blocked BIGINT NOT NULL DEFAULT 0,
                referral_source_link TEXT NOT NULL DEFAULT '', referral_channel TEXT NOT NULL DEFAULT '',
                referral_campaign TEXT NOT NULL DEFAULT '',
                created_at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, customer_id),
                UNIQUE (shop_id, page_id, external_id))
            """,
            """
            CREATE TABLE conversations (
                shop_id TEXT NOT NULL, conversation_id TEXT NOT NULL, page_id TEXT NOT NULL, customer_id TEXT NOT NULL,
                status BIGINT NOT NULL, assigned_staff_id TEXT NOT NULL DEFAULT '',
                last_message_at_ms BIGINT NOT NULL, last_message_text TEXT NOT NULL DEFAULT '',
                customer_name TEXT NOT NULL DEFAULT '', search_key TEXT NOT NULL DEFAULT '',
                created_at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, conversation_id),
                UNIQUE (shop_id, page_id, customer_id))
            """,
            "CREATE INDEX conversations_recent ON conversations (shop_id, page_id, last_message_at_ms, conversation_id)",
            """
            CREATE TABLE conversation_tags (
                shop_id TEXT NOT NULL, conversation_id TEXT NOT NULL, tag_id TEXT NOT NULL,
                attached_at_ms BIGINT NOT NULL,
                last_message_at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, conversation_id, tag_id))
            """,
            // R-TAG-5 lists a tag's conversations newest first: the conversation's
            // activity time is copied here so that the first page is an index range,
            // not a sort of every conversation carrying the tag.
            "CREATE INDEX conversation_tags_by_tag ON conversation_tags (shop_id, tag_id, last_message_at_ms, conversation_id)",
            """
            CREATE TABLE messages (
                shop_id TEXT NOT NULL, message_id TEXT NOT NULL, conversation_id TEXT NOT NULL, page_id TEXT NOT NULL,
                kind BIGINT NOT NULL, sender BIGINT NOT NULL, staff_id TEXT NOT NULL DEFAULT '',
                text TEXT NOT NULL, post_id TEXT NOT NULL DEFAULT '', sent_at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, message_id))
            """,
            "CREATE INDEX messages_by_conversation ON messages (shop_id, conversation_id, sent_at_ms, message_id)",
            "CREATE INDEX messages_by_page_time ON messages (shop_id, page_id, sent_at_ms)",
            """
            CREATE TABLE conversation_events (
                shop_id TEXT NOT NULL, event_id TEXT NOT NULL, conversation_id TEXT NOT NULL, page_id TEXT NOT NULL,
                kind BIGINT NOT NULL, staff_id TEXT NOT NULL, at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, event_id))
            """,
            "CREATE INDEX conversation_events_by_page_time ON conversation_events (shop_id, page_id, at_ms)",
            """
            CREATE TABLE staff_presence (
                shop_id TEXT NOT NULL, page_id TEXT NOT NULL, staff_id TEXT NOT NULL,
                online BIGINT NOT NULL, auto_turn BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (shop_id, page_id, staff_id))
            """,
            """
            CREATE TABLE notes (
                shop_id TEXT NOT NULL, note_id TEXT NOT NULL, customer_id TEXT NOT NULL,
                text TEXT NOT NULL, staff_id TEXT NOT NULL, created_at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, note_id))
            """,
            "CREATE INDEX notes_by_customer ON notes (shop_id, customer_id, note_id)",
            """
            CREATE TABLE custom_fields (
                shop_id TEXT NOT NULL, field_key TEXT NOT NULL, label TEXT NOT NULL, field_type BIGINT NOT NULL,
                options TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (shop_id, field_key))
            """,
            """
            CREATE TABLE custom_field_values (
                shop_id TEXT NOT NULL, customer_id TEXT NOT NULL, field_key TEXT NOT NULL, value TEXT NOT NULL,
                PRIMARY KEY (shop_id, customer_id, field_key))
            """,
            """
            CREATE TABLE activity (
                shop_id TEXT NOT NULL, entry_id TEXT NOT NULL, page_id TEXT NOT NULL, action BIGINT NOT NULL,
                staff_id TEXT NOT NULL, conversation_id TEXT NOT NULL DEFAULT '', customer_id TEXT NOT NULL DEFAULT '',
                tag_id TEXT NOT NULL DEFAULT '', tag_name TEXT NOT NULL DEFAULT '', at_ms BIGINT NOT NULL,
                PRIMARY KEY (shop_id, entry_id))
            """,
            "CREATE INDEX activity_by_page ON activity (shop_id, page_id, entry_id)",
            "CREATE INDEX activity_by_conversation ON activity (shop_id, conversation_id, entry_id)",
            "CREATE INDEX activity_by_time ON activity (action, at_ms)",
        ]),
        // Profile, tag and customer-message events for loyalty-svc and messaging-svc (ConversationEvents).
        Migration(version: 2, name: "outbox", statements: Outbox.schema),
        // R-PANEL-4: what changed, in order, for the live panel and the inbox (ChangeLog).
        Migration(version: 3, name: "change log", statements: ChangeLog.schema),
        // R-PANEL-4: the inbox row's unread count (customer messages since the staff last wrote).
        Migration(version: 4, name: "unread count", statements: [
            "ALTER TABLE conversations ADD COLUMN unread_count BIGINT NOT NULL DEFAULT 0",
        ]),
        // R-CONV-9: staff replies sent through the page (StaffReply), and the platform ids they answer.
        // R-CONV-10: the customer's e-mail address, typed or captured.
        Migration(version: 5, name: "replies and e-mail", statements: [
            "ALTER TABLE messages ADD COLUMN platform_message_id TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE messages ADD COLUMN delivery BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE messages ADD COLUMN target BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE messages ADD COLUMN reply_to_message_id TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE messages ADD COLUMN failure_reason TEXT NOT NULL DEFAULT ''",
            // Each RetryReply is a new attempt, delivered under its own key.
            "ALTER TABLE messages ADD COLUMN delivery_attempt BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE messages ADD COLUMN idempotency_key TEXT NOT NULL DEFAULT ''",
            "CREATE UNIQUE INDEX messages_by_idempotency_key ON messages (shop_id, idempotency_key) WHERE idempotency_key <> ''",
            // One private reply per comment: the replies to a comment are found by it.
            "CREATE INDEX messages_by_reply_to ON messages (shop_id, reply_to_message_id) WHERE reply_to_message_id <> ''",
            "ALTER TABLE customers ADD COLUMN email TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE customers ADD COLUMN email_source BIGINT NOT NULL DEFAULT 0",
        ]),
        // R-CONV-6: where each custom field is shown (lower first).
        Migration(version: 6, name: "custom field order", statements: [
            "ALTER TABLE custom_fields ADD COLUMN position BIGINT NOT NULL DEFAULT 0",
        ]),
        // An event's trace goes on when it is delivered (README, Observability).
        Migration(version: 7, name: "outbox trace context", statements: Outbox.traceContextColumn),
    ]
}
