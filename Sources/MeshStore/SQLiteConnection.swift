import CSQLite3
import Foundation
import SQLKit
import Synchronization

/// One connection to a SQLite file over its C API, with its prepared statements kept.
///
/// Not thread-safe by design (opened without SQLite's own mutexes): the store lends a
/// connection to one task at a time, and that task runs its statements one after another.
final class SQLiteConnection: @unchecked Sendable {
    let handle: OpaquePointer
    private let statements: StatementCache
    /// Progress callbacks (one per `progressPeriod` VM steps) a statement may take before it is
    /// interrupted; 0 lets it run to its end. Set on the readers that run on an event loop.
    var stepBudget: Int32 = 0
    fileprivate var progressTicks: Int32 = 0
    static let progressPeriod: Int32 = 1000

    private init(handle: OpaquePointer, cacheCapacity: Int, counters: SQLiteCounters) {
        self.handle = handle
        self.statements = StatementCache(capacity: cacheCapacity, counters: counters)
    }

    /// Opens `path` (":memory:" for a private in-memory database) read-write, creating it if needed.
    static func open(path: String, cacheCapacity: Int, counters: SQLiteCounters) throws -> SQLiteConnection {
        var pointer: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &pointer, flags, nil)
        guard rc == SQLITE_OK, let pointer else {
            let message = pointer.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(pointer)
            throw SQLiteError(code: rc, message: "cannot open \(path): \(message)", sql: nil)
        }
        sqlite3_extended_result_codes(pointer, 1)
        let connection = SQLiteConnection(handle: pointer, cacheCapacity: cacheCapacity, counters: counters)
        sqlite3_progress_handler(pointer, progressPeriod, { context in
            let connection = Unmanaged<SQLiteConnection>.fromOpaque(context!).takeUnretainedValue()
            connection.progressTicks &+= 1
            return connection.stepBudget > 0 && connection.progressTicks > connection.stepBudget ? 1 : 0
        }, Unmanaged.passUnretained(connection).toOpaque())
        return connection
    }

    /// Runs statements that take no binds and return nothing worth keeping (pragmas, BEGIN), uncached.
    func exec(_ sql: String) throws {
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw error(rc, sql: sql) }
    }

    /// Milliseconds a statement waits for a lock held by another connection before SQLITE_BUSY.
    func setBusyTimeout(ms: Int32) {
        sqlite3_busy_timeout(handle, ms)
    }

    /// True outside any transaction: a failed statement may have rolled the whole one back.
    var isAutocommit: Bool { sqlite3_get_autocommit(handle) != 0 }

    /// Runs `sql` with `binds` on its cached statement and returns every row it produced.
    /// With `inline`, a statement known to run long, or one that runs past `stepBudget`,
    /// throws `SQLiteError.interrupted` so that the caller runs it again off the event loop.
    func run(_ sql: String, _ binds: [any Encodable & Sendable], inline: Bool = false) throws -> [SQLiteRow] {
        let statement = try statements.statement(for: sql, on: handle)
        if inline, statement.runsLong { throw SQLiteError.interrupted(sql) }
        let pointer = statement.pointer
        defer { sqlite3_reset(pointer) }
        let expected = Int(sqlite3_bind_parameter_count(pointer))
        guard expected == binds.count else {
            throw SQLiteError(code: SQLITE_RANGE, message: "statement takes \(expected) binds, given \(binds.count)", sql: sql)
        }
        for (offset, value) in binds.enumerated() {
            let rc = try SQLiteBinding.bind(value, to: pointer, at: Int32(offset + 1))
            guard rc == SQLITE_OK else { throw error(rc, sql: sql) }
        }
        let budget = stepBudget
        if !inline { stepBudget = 0 }
        defer { stepBudget = budget }
        progressTicks = 0
        var rows: [SQLiteRow] = []
        while true {
            let rc = sqlite3_step(pointer)
            if rc == SQLITE_ROW {
                rows.append(statement.row())
            } else if rc == SQLITE_DONE {
                return rows
            } else {
                if rc == SQLITE_INTERRUPT, inline {
                    statement.runsLong = true
                    throw SQLiteError(code: SQLITE_INTERRUPT, message: SQLiteError.ranPastBudget, sql: sql)
                }
                throw error(rc, sql: sql)
            }
        }
    }

    /// Finalizes every statement and closes the connection.
    func close() {
        statements.removeAll()
        sqlite3_close_v2(handle)
    }

    private func error(_ rc: Int32, sql: String?) -> SQLiteError {
        SQLiteError(code: sqlite3_extended_errcode(handle) == 0 ? rc : sqlite3_extended_errcode(handle),
                    message: String(cString: sqlite3_errmsg(handle)), sql: sql)
    }
}

/// A SQLite failure, with its (extended) result code and the statement that failed.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String
    public let sql: String?

    public var description: String {
        "SQLite error \(code): \(message)" + (sql.map { " (in: \($0.prefix(160)))" } ?? "")
    }

    /// SQLITE_INTERRUPT: stopped for running long on an event loop (and run again off it).
    var isInterrupt: Bool { code & 0xff == SQLITE_INTERRUPT }
    /// SQLITE_BUSY or SQLITE_LOCKED: another connection holds what the statement needs.
    var isBusy: Bool { code & 0xff == SQLITE_BUSY || code & 0xff == SQLITE_LOCKED }

    /// The message of the interruption that marked a statement as long (later runs skip the loop).
    static let ranPastBudget = "ran past its step budget on an event loop"
    /// This interruption found the statement long for the first time on its connection.
    var isFirstRunPastBudget: Bool { isInterrupt && message == Self.ranPastBudget }

    /// The store was used in a way that cannot work (SQLITE_MISUSE), said in words.
    static func misuse(_ message: String) -> SQLiteError {
        SQLiteError(code: SQLITE_MISUSE, message: message, sql: nil)
    }

    static func interrupted(_ sql: String) -> SQLiteError {
        SQLiteError(code: SQLITE_INTERRUPT, message: "runs long: moved off the event loop", sql: sql)
    }
}

/// Statement-cache and placement counts of a store, over all its connections.
public final class SQLiteCounters: Sendable {
    let hits = Atomic<Int>(0)
    let misses = Atomic<Int>(0)
    let evictions = Atomic<Int>(0)
    let offloaded = Atomic<Int>(0)
    let commits = Atomic<Int>(0)
    let transactions = Atomic<Int>(0)

    /// A snapshot, for tests and metrics.
    public struct Snapshot: Sendable, Equatable {
        /// Statements found prepared in their connection's cache.
        public var hits: Int
        /// Statements prepared (first use on a connection, or after eviction).
        public var misses: Int
        /// Statements finalized to keep a cache within its capacity.
        public var evictions: Int
        /// Reads run on the blocking pool rather than on their event loop (long or busy).
        public var offloaded: Int
        /// COMMITs of the writer: one per batch (group commit).
        public var commits: Int
        /// Write transactions those COMMITs made durable.
        public var transactions: Int
    }

    public var snapshot: Snapshot {
        Snapshot(hits: hits.load(ordering: .relaxed), misses: misses.load(ordering: .relaxed),
                 evictions: evictions.load(ordering: .relaxed), offloaded: offloaded.load(ordering: .relaxed),
                 commits: commits.load(ordering: .relaxed), transactions: transactions.load(ordering: .relaxed))
    }
}

/// A connection's prepared statements keyed by SQL text (values are always binds, so the
/// texts are as few as the code's statements), least recently used evicted past `capacity`.
private final class StatementCache {
    private var entries: [String: PreparedStatement] = [:]
    private var clock: UInt64 = 0
    private let capacity: Int
    private let counters: SQLiteCounters

    init(capacity: Int, counters: SQLiteCounters) {
        self.capacity = max(1, capacity)
        self.counters = counters
    }

    func statement(for sql: String, on handle: OpaquePointer) throws -> PreparedStatement {
        clock &+= 1
        if let cached = entries[sql] {
            cached.lastUse = clock
            counters.hits.wrappingAdd(1, ordering: .relaxed)
            return cached
        }
        var pointer: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &pointer, nil)
        guard rc == SQLITE_OK, let pointer else {
            let code = sqlite3_extended_errcode(handle)
            throw SQLiteError(code: code == 0 ? rc : code, message: String(cString: sqlite3_errmsg(handle)), sql: sql)
        }
        counters.misses.wrappingAdd(1, ordering: .relaxed)
        if entries.count >= capacity, let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse }) {
            entries.removeValue(forKey: oldest.key)
            sqlite3_finalize(oldest.value.pointer)
            counters.evictions.wrappingAdd(1, ordering: .relaxed)
        }
        let statement = PreparedStatement(pointer: pointer, lastUse: clock)
        entries[sql] = statement
        return statement
    }

    func removeAll() {
        for statement in entries.values { sqlite3_finalize(statement.pointer) }
        entries.removeAll()
    }
}

private final class PreparedStatement {
    let pointer: OpaquePointer
    var lastUse: UInt64
    /// Ran past its step budget once on an event loop: later runs go to the blocking pool directly.
    var runsLong = false
    private var columns: SQLiteColumns?

    init(pointer: OpaquePointer, lastUse: UInt64) {
        self.pointer = pointer
        self.lastUse = lastUse
    }

    /// The current row. Column names are read once per statement (and again if a schema change
    /// re-prepared it with another number of columns).
    func row() -> SQLiteRow {
        let count = Int(sqlite3_column_count(pointer))
        let columns: SQLiteColumns
        if let known = self.columns, known.names.count == count {
            columns = known
        } else {
            columns = SQLiteColumns(names: (0..<count).map { String(cString: sqlite3_column_name(pointer, Int32($0))) })
            self.columns = columns
        }
        var values: [SQLiteValue] = []
        values.reserveCapacity(count)
        for index in 0..<Int32(count) {
            values.append(SQLiteValue(column: index, of: pointer))
        }
        return SQLiteRow(columns: columns, values: values)
    }
}
