import Logging
import NIOCore
import PostgresKit
import SQLKit
import Synchronization

/// The `SQLDatabase` a store body gets on PostgreSQL: each statement runs as a named prepared
/// statement of its connection, parsed and planned once per connection rather than on every call
/// (postgres-kit sends every statement unnamed, which PostgreSQL parses and plans anew each time).
///
/// postgres-nio prepares a statement the first time a connection runs its name and keeps it for the
/// connection's life; `PostgresStatementNames` gives each distinct SQL text (with its binds' types) one
/// name for all of a store's connections. A statement with a value postgres-nio cannot bind directly, a
/// text past the cap of names, or one PostgreSQL refused to prepare, runs unnamed as before.
struct PostgresStatementDatabase: SQLDatabase {
    let connection: PostgresConnection
    let names: PostgresStatementNames
    /// Inside a transaction a refused statement has aborted it: the refusal goes to `PostgresStore.write`,
    /// which runs the transaction again (the statement then runs unnamed).
    let inTransaction: Bool
    let logger: Logger

    var eventLoop: any EventLoop { connection.eventLoop }
    var dialect: any SQLDialect { PostgresDialect() }
    var queryLogLevel: Logger.Level? { nil }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) async throws {
        var serializer = SQLSerializer(database: self)
        query.serialize(to: &serializer)
        guard let (bindings, types) = Self.bindings(serializer.binds) else {
            return try await unnamed(query, onRow)
        }
        let key = serializer.sql + "\u{0}" + types
        guard let name = names.name(for: key) else {
            return try await unnamed(query, onRow)
        }
        logger.trace("Executing query", metadata: ["sql": "\(serializer.sql)", "statement": "\(name)"])
        do {
            let rows = try await NamedStatement.$text.withValue(.init(name: name, sql: serializer.sql)) {
                try await connection.execute(NamedStatement(bindings: bindings), logger: logger)
            }
            for try await row in rows { onRow(row.sql()) }
        } catch let error as PSQLError where Self.refusedAsNamed(error) {
            // The connection keeps the failed preparation under this name: the text runs unnamed from now on.
            names.refuse(key)
            logger.notice("a statement runs unnamed: PostgreSQL refused it as a prepared statement",
                          metadata: ["sql": "\(serializer.sql.prefix(300))", "error": "\(String(reflecting: error))"])
            if inTransaction { throw PostgresStatementRefused(underlying: error) }
            try await unnamed(query, onRow)
        }
    }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) -> EventLoopFuture<Void> {
        eventLoop.makeFutureWithTask { try await self.execute(sql: query, onRow) }
    }

    private func unnamed(_ query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) async throws {
        names.countUnnamed()
        try await connection.sql(queryLogLevel: .trace).execute(sql: query, onRow)
    }

    /// The binds as postgres-nio encodes them, and their types (part of the statement's key: a name is
    /// prepared with the types of its first run); nil when a value has no direct PostgreSQL encoding.
    static func bindings(_ binds: [any Encodable & Sendable]) -> (PostgresBindings, String)? {
        var bindings = PostgresBindings(capacity: binds.count)
        var types = ""
        for bind in binds {
            if Self.isNil(bind) {
                bindings.appendNull()
                types += "null,"
            } else if let value = bind as? any PostgresThrowingDynamicTypeEncodable {
                do { try bindings.append(value) } catch { return nil }
                types += "\(type(of: value)),"
            } else {
                return nil
            }
        }
        return (bindings, types)
    }

    private static func isNil(_ value: any Encodable & Sendable) -> Bool {
        if let optional = value as? any OptionalValue { return optional.isNone }
        return false
    }

    /// Failures of the preparation rather than of the run: a statement PostgreSQL cannot prepare with
    /// these types (class 42: an undeterminable or mismatched parameter type), a plan whose result
    /// changed under it (0A000, after a migration altered a table), a bind it could not read (22P03).
    static func refusedAsNamed(_ error: PSQLError) -> Bool {
        guard let state = error.serverInfo?[.sqlState] else { return false }
        return state.hasPrefix("42") || state == "0A000" || state == "22P03" || state == "26000"
    }
}

/// A statement PostgreSQL would not run as a prepared one, inside a transaction: it must run again.
struct PostgresStatementRefused: Error, CustomStringConvertible {
    let underlying: PSQLError
    var description: String { String(reflecting: underlying) }
}

private protocol OptionalValue {
    var isNone: Bool { get }
}

extension Optional: OptionalValue {
    var isNone: Bool { self == nil }
}

/// postgres-nio names a prepared statement and reads its text through static members; they are read
/// while `execute` is called, so a task-local value makes them those of the statement being run.
private struct NamedStatement: PostgresPreparedStatement {
    struct Text: Sendable {
        let name: String
        let sql: String
    }

    @TaskLocal static var text = Text(name: "", sql: "")
    static var name: String { text.name }
    static var sql: String { text.sql }

    let bindings: PostgresBindings

    func makeBindings() throws -> PostgresBindings { bindings }
    func decodeRow(_ row: PostgresRow) throws -> PostgresRow { row }
}

/// One name per distinct statement text and bind types, shared by a store's connections. The names are
/// capped: each connection keeps every statement it prepared for its life (postgres-nio has no eviction),
/// so past `capacity` texts a new one runs unnamed rather than growing every connection.
public final class PostgresStatementNames: Sendable {
    public let capacity: Int
    private let state = Mutex(State())
    private let named = Atomic<Int>(0)
    private let unnamedRuns = Atomic<Int>(0)

    private struct State {
        var names: [String: String] = [:]
        var refused: Set<String> = []
        /// Never reused: a refused name stays prepared (failed) on the connections that tried it.
        var issued = 0
    }

    public init(capacity: Int = 1_000) {
        self.capacity = capacity
    }

    func name(for key: String) -> String? {
        let name: String? = state.withLock { state in
            if let name = state.names[key] { return name }
            guard state.issued < capacity, !state.refused.contains(key) else { return nil }
            state.issued += 1
            let name = "chatmesh_\(state.issued)"
            state.names[key] = name
            return name
        }
        if name != nil { named.wrappingAdd(1, ordering: .relaxed) }
        return name
    }

    func refuse(_ key: String) {
        state.withLock { state in
            state.names[key] = nil
            state.refused.insert(key)
        }
    }

    func countUnnamed() {
        unnamedRuns.wrappingAdd(1, ordering: .relaxed)
    }

    /// Statements run by name, statements run unnamed, and distinct texts named so far.
    public var counts: (named: Int, unnamed: Int, texts: Int) {
        (named.load(ordering: .relaxed), unnamedRuns.load(ordering: .relaxed), state.withLock { $0.names.count })
    }
}
