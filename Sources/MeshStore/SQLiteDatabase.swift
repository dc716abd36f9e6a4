import Logging
import NIOCore
import NIOPosix
import SQLKit

/// The `SQLDatabase` a store body gets: sql-kit serialises the query, the connection runs it on
/// its cached statement, here, on the calling thread.
///
/// A reader on an event loop (`offload` set) runs with a step budget: a statement that runs long,
/// or waits on a lock, is run again on the blocking pool and later runs of it go there directly,
/// so one long scan costs its loop at most the budget (~1 ms), never the whole scan.
struct SQLiteDatabase: SQLDatabase {
    let connection: SQLiteConnection
    let offload: NIOThreadPool?
    let counters: SQLiteCounters
    let logger: Logger

    var eventLoop: any EventLoop { MultiThreadedEventLoopGroup.currentEventLoop ?? MultiThreadedEventLoopGroup.singleton.any() }
    var dialect: any SQLDialect { SQLiteDialect() }
    var queryLogLevel: Logger.Level? { nil }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) async throws {
        var serializer = SQLSerializer(database: self)
        query.serialize(to: &serializer)
        let sql = serializer.sql
        let binds = serializer.binds
        let rows: [SQLiteRow]
        if let offload {
            do {
                rows = try connection.run(sql, binds, inline: true)
            } catch let error as SQLiteError where error.isInterrupt || error.isBusy {
                counters.offloaded.wrappingAdd(1, ordering: .relaxed)
                if error.isFirstRunPastBudget {
                    // Once per statement and connection: a keyed read never gets here, a scan does.
                    logger.warning("a read ran past its step budget on an event loop; it and its later runs go to the blocking pool",
                                  metadata: ["sql": "\(sql.prefix(300))"])
                }
                let connection = self.connection
                rows = try await offload.runIfActive {
                    connection.setBusyTimeout(ms: SQLiteStore.busyTimeoutMs)
                    defer { connection.setBusyTimeout(ms: 0) }
                    return try connection.run(sql, binds)
                }
            }
        } else {
            rows = try connection.run(sql, binds)
        }
        // Handed over only once the statement is done: an interrupted run gives no rows twice.
        for row in rows { onRow(row) }
    }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) -> EventLoopFuture<Void> {
        eventLoop.makeFutureWithTask { try await self.execute(sql: query, onRow) }
    }
}

/// SQLite's SQL as sql-kit writes it: numbered binds, double-quoted names, standard upsert and RETURNING
/// (Debian's SQLite is 3.40).
struct SQLiteDialect: SQLDialect {
    var name: String { "sqlite" }
    var identifierQuote: any SQLExpression { SQLRaw("\"") }
    var literalStringQuote: any SQLExpression { SQLRaw("'") }
    func bindPlaceholder(at position: Int) -> any SQLExpression { SQLRaw("?\(position)") }
    func literalBoolean(_ value: Bool) -> any SQLExpression { SQLRaw(value ? "TRUE" : "FALSE") }
    var literalDefault: any SQLExpression { SQLLiteral.null }
    var supportsIfExists: Bool { true }
    var supportsDropBehavior: Bool { false }
    var supportsAutoIncrement: Bool { false }
    var autoIncrementClause: any SQLExpression { SQLRaw("AUTOINCREMENT") }
    var enumSyntax: SQLEnumSyntax { .unsupported }
    var triggerSyntax: SQLTriggerSyntax { .init(create: [.supportsBody, .supportsCondition, .supportsUpdateColumns], drop: []) }
    var alterTableSyntax: SQLAlterTableSyntax { .init(allowsBatch: false) }
    var upsertSyntax: SQLUpsertSyntax { .standard }
    var supportsReturning: Bool { true }
    var unionFeatures: SQLUnionFeatures { [.union, .unionAll, .intersect, .except] }
}
