import Foundation
import Logging
import MeshRPC
import SQLKit
import Synchronization

/// A service's change feed (R-PANEL-4): what it committed, in order, so that
/// views (the live panel, the inbox) re-read what changed instead of asking again.
///
/// A store records changes in the transaction that makes them (`record`), so a
/// change is in the log exactly when it committed. Positions are gapless and
/// follow commit order on both backends, because writes are serialised there
/// (SQLite's single writer; PostgreSQL's writer lock, `PostgresStore`) and a
/// change takes `MAX(position) + 1` inside its transaction. A process follows the
/// table (`run`): at once after its own commits (`committed`), and every
/// `pollInterval` for other replicas' (PostgreSQL). The newest `memory` changes
/// are kept in memory for subscribers; older ones within `retention` are read
/// from the table; a subscriber further behind is told to reset.
public final class ChangeLog: Sendable {
    /// What a store records; the position and time are the log's.
    public struct Entry: Sendable, Hashable {
        public var shopId: String
        /// The `chatmesh.v1.Change.Kind` raw value.
        public var kind: Int32
        public var pageId: String
        public var conversationId: String
        public var customerId: String

        public init(shopId: String, kind: Int32, pageId: String = "", conversationId: String = "", customerId: String = "") {
            self.shopId = shopId
            self.kind = kind
            self.pageId = pageId
            self.conversationId = conversationId
            self.customerId = customerId
        }
    }

    /// One committed change: its position, shop and what it touched.
    public struct Change: Sendable, Hashable {
        public var position: Int64
        public var entry: Entry
        public var atMs: Int64
    }

    /// The table: a service's schema adds it as one migration.
    public static let schema: [String] = [
        """
        CREATE TABLE changes (
            position BIGINT NOT NULL PRIMARY KEY, shop_id TEXT NOT NULL, kind BIGINT NOT NULL,
            page_id TEXT NOT NULL DEFAULT '', conversation_id TEXT NOT NULL DEFAULT '', customer_id TEXT NOT NULL DEFAULT '',
            at_ms BIGINT NOT NULL)
        """,
        "CREATE INDEX changes_by_shop ON changes (shop_id, position)",
        "CREATE INDEX changes_by_time ON changes (at_ms)",
    ]

    /// Writes `entries` inside the caller's transaction, after every change committed before it.
    public static func record(_ db: any SQLDatabase, _ entries: [Entry], nowMs: Int64) async throws {
        guard !entries.isEmpty else { return }
        let last = try await newestPosition(db)
        // 7 binds a row; 100 rows stay far below every backend's bind limit.
        var position = last
        var start = 0
        while start < entries.count {
            let chunk = entries[start..<min(start + 100, entries.count)]
            var sql: SQLQueryString = "INSERT INTO changes (position, shop_id, kind, page_id, conversation_id, customer_id, at_ms) VALUES"
            for (index, entry) in chunk.enumerated() {
                position += 1
                sql += index == 0 ? " " : ", "
                sql += """
                    (\(bind: position), \(bind: entry.shopId), \(bind: Int64(entry.kind)), \(bind: entry.pageId), \(bind: entry.conversationId),
                     \(bind: entry.customerId), \(bind: nowMs))
                    """
            }
            try await db.raw(sql).run()
            start += chunk.count
        }
    }

    /// The newest position in the table (0 when empty).
    static func newestPosition(_ db: any SQLDatabase) async throws -> Int64 {
        try await db.raw("SELECT COALESCE(MAX(position), 0) AS p FROM changes").first()?.int64("p") ?? 0
    }

    /// What a subscriber reads.
    public enum Read: Sendable, Hashable {
        /// The changes after the position asked for (of one shop, when asked), and the
        /// position to ask after next (past other shops' changes).
        case changes([Change], through: Int64)
        /// The position asked for is older than the retained window: what changed since is not known.
        case reset(through: Int64)
    }

    /// How much the log keeps, and how often it looks for other replicas' commits.
    public struct Configuration: Sendable {
        public var retention: Duration = .seconds(24 * 3600)
        /// Changes kept in memory for subscribers.
        public var memory: Int = 16_384
        /// How often the table is read without a local commit (other replicas' changes).
        public var pollInterval: Duration
        public var pruneInterval: Duration = .seconds(600)

        public init(for kind: SQLStoreKind) {
            pollInterval = kind == .postgres ? .milliseconds(50) : .seconds(1)
        }
    }

    private struct State {
        /// Contiguous positions, newest last.
        var recent: [Change] = []
        var head: Int64
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
        var draining = false
    }

    let store: any SQLStore
    public let configuration: Configuration
    let logger: Logger
    private let state: Mutex<State>
    private let doorbell = Doorbell()

    /// Opens the log at the newest committed change.
    public static func open(_ store: any SQLStore, configuration: Configuration? = nil, logger: Logger = Logger(label: "changes")) async throws -> ChangeLog {
        let head = try await store.read { db in
            try await Self.newestPosition(db)
        }
        return ChangeLog(store: store, head: head, configuration: configuration ?? Configuration(for: store.kind), logger: logger)
    }

    init(store: any SQLStore, head: Int64, configuration: Configuration, logger: Logger) {
        self.store = store
        self.configuration = configuration
        self.logger = logger
        state = Mutex(State(head: head))
    }

    /// The newest position this process has seen committed.
    public var head: Int64 { state.withLock { $0.head } }

    /// The newest position committed, read from the table: where "from now" starts, so that a change
    /// committed before the caller asked is never sent as news (the head may not have caught up yet).
    public func newest() async throws -> Int64 {
        let committed = try await store.read { db in
            try await Self.newestPosition(db)
        }
        return max(committed, head)
    }

    /// The process is stopping: subscribers stop waiting and end their streams, so they resume elsewhere.
    public var isDraining: Bool { state.withLock { $0.draining } }

    /// Ends every waiter: the process is shutting down.
    public func drain() {
        let waiters = state.withLock { state in
            state.draining = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Says this process committed changes: they are read now, not at the next poll.
    public func committed() {
        doorbell.ring()
    }

    /// Follows the table and prunes it until the task is cancelled.
    public func run() async {
        var lastPrune = ContinuousClock.now - configuration.pruneInterval
        while !Task.isCancelled {
            var full = false
            do {
                full = try await follow()
                if ContinuousClock.now - lastPrune >= configuration.pruneInterval {
                    lastPrune = .now
                    try await prune(nowMs: WallClock.nowMs())
                }
            } catch {
                logger.warning("could not read the change log", metadata: ["error": "\(error)"])
            }
            if !full { await doorbell.wait(upTo: configuration.pollInterval) }
        }
        let waiters = state.withLock { state in
            defer { state.waiters = [:] }
            return state.waiters.values
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Reads what was committed past the head; true when there may be more.
    @discardableResult
    func follow() async throws -> Bool {
        let head = self.head
        let batch = 2_000
        let rows = try await store.read { db in
            try await db.raw("SELECT * FROM changes WHERE position > \(bind: head) ORDER BY position LIMIT \(literal: batch)").all().map(Self.change)
        }
        guard let last = rows.last else { return false }
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            if rows[0].position != state.head + 1 { state.recent.removeAll() }   // pruned past us while we slept: start again
            state.recent.append(contentsOf: rows)
            // Trimmed a quarter at a time, so appending stays amortised O(1).
            if state.recent.count > configuration.memory + configuration.memory / 4 {
                state.recent.removeFirst(state.recent.count - configuration.memory)
            }
            state.head = last.position
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
        return rows.count == batch
    }

    /// Deletes what is older than the retention, always keeping the newest change (it carries the sequence on).
    func prune(nowMs: Int64) async throws {
        let cutoff = nowMs - Int64(configuration.retention.components.seconds) * 1000
        let head = self.head
        try await store.write { db in
            try await db.raw("DELETE FROM changes WHERE at_ms < \(bind: cutoff) AND position < \(bind: head)").run()
        }
    }

    /// The changes after `position`: from memory when they are there, else from the table.
    public func read(after position: Int64, shop: String?, limit: Int = 500) async throws -> Read {
        enum Found { case done(Read), table(head: Int64) }
        let found = state.withLock { state -> Found in
            if position >= state.head { return .done(.changes([], through: max(position, state.head))) }
            guard let first = state.recent.first, position + 1 >= first.position else { return .table(head: state.head) }
            var out: [Change] = []
            var through = position
            var index = Int(position + 1 - first.position)
            while index < state.recent.count {
                let change = state.recent[index]
                through = change.position
                if shop == nil || change.entry.shopId == shop {
                    out.append(change)
                    if out.count == limit { break }
                }
                index += 1
            }
            return .done(.changes(out, through: through))
        }
        switch found {
        case .done(let read): return read
        case .table(let head): return try await readTable(after: position, head: head, shop: shop, limit: limit)
        }
    }

    func readTable(after position: Int64, head: Int64, shop: String?, limit: Int) async throws -> Read {
        try await store.read { db in
            let oldest = try await db.raw("SELECT MIN(position) AS p FROM changes").first()?.decode(column: "p", as: Int64?.self) ?? nil
            guard let oldest, oldest <= position + 1 else { return .reset(through: head) }
            var sql: SQLQueryString = "SELECT * FROM changes WHERE position > \(bind: position) AND position <= \(bind: head)"
            if let shop { sql += " AND shop_id = \(bind: shop)" }
            sql += " ORDER BY position LIMIT \(literal: limit)"
            let rows = try await db.raw(sql).all().map(Self.change)
            return .changes(rows, through: rows.count == limit ? rows[rows.count - 1].position : head)
        }
    }

    /// Returns once a change past `position` is known, or the task is cancelled, or the log drains.
    public func wait(after position: Int64) async {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    if state.head > position || state.draining || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }

    static func change(_ row: any SQLRow) throws -> Change {
        Change(
            position: try row.int64("position"),
            entry: Entry(
                shopId: try row.string("shop_id"), kind: Int32(try row.int64("kind")), pageId: try row.string("page_id"),
                conversationId: try row.string("conversation_id"), customerId: try row.string("customer_id")
            ),
            atMs: try row.int64("at_ms")
        )
    }
}
