import Foundation
import MeshRPC
import MeshTracing
import SQLKit
import Synchronization

/// Cross-service events (ARCHITECTURE.md, Storage): a producer writes each event
/// it owes another service into its own `outbox` table, in the same transaction
/// as the change that causes it, so the change and the promise to tell stand or
/// fall together. `OutboxDispatcher` then delivers them by RPC.
///
/// One row per event and subscriber: each subscriber has its own queue, its own
/// retries and its own dead letters. Rows are delivered in `seq` order per
/// partition (a customer of a shop); a row that keeps failing holds back the
/// later rows of its partition for that subscriber, also once it is dead, so a
/// consumer never sees a customer's events out of order. Delivered rows are
/// deleted. Replicas sharing the table claim the rows they deliver for a while
/// (`claimed_by`, `claimed_until_ms`), so each row goes out from one of them and a
/// customer's rows from one at a time.
public enum Outbox {
    /// The rows of one event: a service's schema adds them as one migration.
    public static let schema: [String] = [
        """
        CREATE TABLE outbox (
            seq TEXT NOT NULL PRIMARY KEY, subscriber TEXT NOT NULL, shop_id TEXT NOT NULL, event_id TEXT NOT NULL,
            partition_key TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL DEFAULT '', created_at_ms BIGINT NOT NULL,
            state BIGINT NOT NULL DEFAULT 0, attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at_ms BIGINT NOT NULL DEFAULT 0,
            last_attempt_at_ms BIGINT NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',
            claimed_by TEXT NOT NULL DEFAULT '', claimed_until_ms BIGINT NOT NULL DEFAULT 0,
            UNIQUE (subscriber, shop_id, event_id))
        """,
        // The queue: a subscriber's pending rows in order.
        "CREATE INDEX outbox_queue ON outbox (subscriber, state, seq)",
        // Rows holding their partition back (retrying later, dead, or being delivered by another
        // replica): few, read on every pass.
        "CREATE INDEX outbox_held ON outbox (subscriber, next_attempt_at_ms)",
        "CREATE INDEX outbox_claimed ON outbox (subscriber, claimed_until_ms)",
        // Status and dead letters per shop.
        "CREATE INDEX outbox_by_shop ON outbox (shop_id, subscriber, state, seq)",
    ]

    /// Added after `schema`: the W3C trace context of the change that wrote the event (empty when it
    /// was not traced), continued when the event is delivered so that one trace follows an order
    /// from its call through the outbox into the subscriber.
    public static let traceContextColumn: [String] = [
        "ALTER TABLE outbox ADD COLUMN trace_context TEXT NOT NULL DEFAULT ''",
    ]

    /// A dead row's next attempt: never, until it is replayed. Makes "held" one range.
    static let never: Int64 = 1 << 62

    /// A row waiting to be delivered, or dead after its last attempt.
    public enum State: Int64, Sendable {
        case pending = 0
        case dead = 2
    }

    /// An event to write: `payload` is the protobuf request the subscriber will get
    /// (empty when the subscriber builds its request from current state at delivery).
    public struct Event: Sendable, Hashable {
        public var subscriber: String
        public var shopId: String
        public var eventId: String
        /// Events with the same key reach the subscriber in the order written (a customer id).
        public var key: String
        public var kind: String
        public var payload: [UInt8]

        public init(subscriber: String, shopId: String, eventId: String, key: String, kind: String, payload: [UInt8] = []) {
            self.subscriber = subscriber
            self.shopId = shopId
            self.eventId = eventId
            self.key = key
            self.kind = kind
            self.payload = payload
        }
    }

    /// Writes events inside the caller's transaction; an event id already written
    /// for the same subscriber and shop is kept as it was (a retried change owes nothing new).
    public static func enqueue(_ db: any SQLDatabase, _ events: [Event], nowMs: Int64) async throws {
        // 14 binds a row; 80 rows stay far below every backend's bind limit.
        let trace = encode(RPCTracing.currentContext())
        var start = 0
        while start < events.count {
            let chunk = events[start..<min(start + 80, events.count)]
            // Untraced events leave the column to its default: a schema's early migrations write events
            // before the column exists.
            var sql: SQLQueryString = trace.isEmpty ? """
                INSERT INTO outbox (seq, subscriber, shop_id, event_id, partition_key, kind, payload, created_at_ms) VALUES
                """ : """
                INSERT INTO outbox (seq, subscriber, shop_id, event_id, partition_key, kind, payload, created_at_ms, trace_context) VALUES
                """
            for (index, event) in chunk.enumerated() {
                sql += index == 0 ? " " : ", "
                sql += """
                    (\(bind: SortableID.make("ob_", nowMs: nowMs)), \(bind: event.subscriber), \(bind: event.shopId), \(bind: event.eventId),
                     \(bind: partition(shop: event.shopId, key: event.key)), \(bind: event.kind), \(bind: Data(event.payload).base64EncodedString()), \(bind: nowMs)
                    """
                if trace.isEmpty {
                    sql += ")"
                } else {
                    sql += ", \(bind: trace))"
                }
            }
            sql += " ON CONFLICT (subscriber, shop_id, event_id) DO NOTHING"
            try await db.raw(sql).run()
            start += chunk.count
        }
    }

    static func partition(shop: String, key: String) -> String { shop + "/" + key }

    /// Trace context headers as the column keeps them: "name: value" lines.
    static func encode(_ headers: Metadata) -> String {
        headers.map { "\($0.name): \($0.value)" }.joined(separator: "\n")
    }

    static func decode(_ text: String) -> Metadata {
        Metadata(text.split(separator: "\n").compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces))
        })
    }

    /// A shop's rows not yet delivered to `subscriber`, in order (dead ones included).
    public static func pending(_ db: any SQLDatabase, shop: String, subscriber: String) async throws -> [Delivery] {
        try await db.raw("""
            SELECT * FROM outbox WHERE shop_id = \(bind: shop) AND subscriber = \(bind: subscriber) ORDER BY seq
            """).all().map { try delivery($0) }
    }

    static func delivery(_ row: any SQLRow) throws -> Delivery {
        let shop = try row.string("shop_id")
        return Delivery(
            seq: try row.string("seq"), shopId: shop, eventId: try row.string("event_id"),
            key: String(try row.string("partition_key").dropFirst(shop.count + 1)), kind: try row.string("kind"),
            payload: Array(Data(base64Encoded: try row.string("payload")) ?? Data()), attempts: try row.int64("attempts"),
            createdAtMs: try row.int64("created_at_ms"), traceContext: decode(try row.string("trace_context"))
        )
    }

    // MARK: What operators see (GetOutboxStatus, ListDeadEvents, ReplayDeadEvents)

    /// One subscriber's queue, as one shop sees it.
    public struct QueueStatus: Sendable, Hashable {
        public var subscriber: String
        public var pending: Int64 = 0
        /// Pending rows that failed and wait for their next attempt.
        public var retrying: Int64 = 0
        public var dead: Int64 = 0
        public var oldestPendingAtMs: Int64 = 0
        /// The error of the oldest row that failed, if any.
        public var lastError: String = ""

        public init(subscriber: String) {
            self.subscriber = subscriber
        }
    }

    /// Each queue's backlog, retries and dead rows, for `chatmesh events` and OutboxService.
    public static func status(_ db: any SQLDatabase, shop: String?, subscribers: [String], nowMs: Int64) async throws -> [QueueStatus] {
        var result: [String: QueueStatus] = Dictionary(uniqueKeysWithValues: subscribers.map { ($0, QueueStatus(subscriber: $0)) })
        var sql: SQLQueryString = """
            SELECT subscriber, state, COUNT(*) AS n, MIN(created_at_ms) AS oldest,
                   SUM(CASE WHEN state = 0 AND attempts > 0 THEN 1 ELSE 0 END) AS retrying
            FROM outbox
            """
        if let shop { sql += " WHERE shop_id = \(bind: shop)" }
        sql += " GROUP BY subscriber, state"
        for row in try await db.raw(sql).all() {
            let name = try row.string("subscriber")
            var status = result[name] ?? QueueStatus(subscriber: name)
            let count = try row.int64("n")
            if try row.int64("state") == State.dead.rawValue {
                status.dead = count
            } else {
                status.pending = count
                status.retrying = try row.int64("retrying")
                status.oldestPendingAtMs = try row.int64("oldest")
            }
            result[name] = status
        }
        for name in result.keys where result[name]!.retrying + result[name]!.dead > 0 {
            var errorQuery: SQLQueryString = "SELECT last_error FROM outbox WHERE subscriber = \(bind: name) AND attempts > 0"
            if let shop { errorQuery += " AND shop_id = \(bind: shop)" }
            errorQuery += " ORDER BY seq LIMIT 1"
            result[name]!.lastError = try await db.raw(errorQuery).first()?.string("last_error") ?? ""
        }
        return result.values.sorted { $0.subscriber < $1.subscriber }
    }

    /// An event that used up its attempts.
    public struct DeadEvent: Sendable, Hashable {
        public var seq: String
        public var subscriber: String
        public var eventId: String
        public var key: String
        public var kind: String
        public var attempts: Int64
        public var lastError: String
        public var createdAtMs: Int64
        public var lastAttemptAtMs: Int64
    }

    /// A shop's dead events, oldest first, after `after` (a `seq`) for paging.
    public static func dead(_ db: any SQLDatabase, shop: String, subscriber: String?, after: String?, limit: Int) async throws -> [DeadEvent] {
        var sql: SQLQueryString = "SELECT * FROM outbox WHERE shop_id = \(bind: shop) AND state = \(bind: State.dead.rawValue)"
        if let subscriber { sql += " AND subscriber = \(bind: subscriber)" }
        if let after { sql += " AND seq > \(bind: after)" }
        sql += " ORDER BY seq LIMIT \(literal: limit)"
        return try await db.raw(sql).all().map { row in
            let partition = try row.string("partition_key")
            return DeadEvent(
                seq: try row.string("seq"), subscriber: try row.string("subscriber"), eventId: try row.string("event_id"),
                key: String(partition.dropFirst(shop.count + 1)), kind: try row.string("kind"), attempts: try row.int64("attempts"),
                lastError: try row.string("last_error"), createdAtMs: try row.int64("created_at_ms"), lastAttemptAtMs: try row.int64("last_attempt_at_ms")
            )
        }
    }

    /// Puts a shop's dead events back in their queues with fresh attempts (all of
    /// them when `eventIds` is empty); returns how many.
    public static func replay(_ db: any SQLDatabase, shop: String, subscriber: String?, eventIds: [String]) async throws -> Int {
        var sql: SQLQueryString = """
            UPDATE outbox SET state = \(bind: State.pending.rawValue), attempts = 0, next_attempt_at_ms = 0
            WHERE shop_id = \(bind: shop) AND state = \(bind: State.dead.rawValue)
            """
        if let subscriber { sql += " AND subscriber = \(bind: subscriber)" }
        if !eventIds.isEmpty { sql += " AND event_id IN (\(binds: eventIds))" }
        sql += " RETURNING seq"
        return try await db.raw(sql).all().count
    }
}

/// Rung by a store after it committed outbox rows or changes, so the outbox
/// dispatcher and the change log look now rather than at their next poll. A
/// store holds one from the start; they, made later, listen to it.
public final class CommitBell: Sendable {
    private let listeners = Mutex<[@Sendable () -> Void]>([])

    public init() {}

    /// Says a commit happened: every listener runs now.
    public func ring() {
        for listener in listeners.withLock({ $0 }) { listener() }
    }

    /// Adds what runs at each ring.
    public func listen(_ listener: @escaping @Sendable () -> Void) {
        listeners.withLock { $0.append(listener) }
    }
}
