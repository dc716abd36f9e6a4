import Foundation
import Logging
import MeshRPC
import SQLKit

/// A service's database: reads run on any connection, writes run one at a
/// time inside a transaction that commits when the body returns and rolls
/// back when it throws, so a refused call never leaves half a record.
///
/// Service stores are written once against `any SQLDatabase` (sql-kit), with
/// binds for every value, so the same SQL runs on SQLite and PostgreSQL.
public protocol SQLStore: Sendable {
    /// A read, on a connection of its own for the whole body. Each statement sees what was committed
    /// when it began (no snapshot spans two statements, on either backend): a body that needs two
    /// facts to agree reads them in one statement, or in a `write`.
    func read<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T
    /// A transaction. Its body may run more than once: a backend runs it again, after the rollback,
    /// when the database refused it for a conflict the body did not cause (PostgreSQL's serialization
    /// failure or deadlock; SQLite's single writer never conflicts). So a body has no effect outside
    /// the database, and decides only from what it reads inside the transaction.
    /// Once begun it runs to its commit or rollback even if the calling task is cancelled: a
    /// transaction cut short by cancellation would leave the connection inside it.
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T
    /// What kind of database this is, for the few statements that differ.
    var kind: SQLStoreKind { get }
    func close() async throws
}

extension SQLStore {
    /// Runs `body` (a service's whole life), then closes the store whether it
    /// returned or threw: a store dropped without closing brings the process
    /// down, so a service that fails to start still exits with its error.
    public func closing<T>(_ body: () async throws -> T) async throws -> T {
        let result: T
        do {
            result = try await body()
        } catch {
            try? await close()
            throw error
        }
        try await close()
        return result
    }
}

/// Which engine a store runs on, for the few places SQL must differ (none in the services).
public enum SQLStoreKind: Sendable, Hashable {
    case sqlite
    case postgres
}

/// One step of a service's schema. Applied once, in version order, inside a
/// transaction, and remembered in `schema_migrations`; released versions are
/// never edited, only followed by new ones.
public struct Migration: Sendable {
    public let version: Int
    public let name: String
    public let statements: [String]
    /// Data work SQL alone cannot express (re-encoding rows), run after `statements` in the same transaction.
    public let data: (@Sendable (any SQLDatabase) async throws -> Void)?

    public init(version: Int, name: String, statements: [String], data: (@Sendable (any SQLDatabase) async throws -> Void)? = nil) {
        self.version = version
        self.name = name
        self.statements = statements
        self.data = data
    }
}

extension SQLStore {
    /// Applies the migrations not applied yet; returns the versions it applied.
    @discardableResult
    public func migrate(_ migrations: [Migration], logger: Logger? = nil) async throws -> [Int] {
        let ordered = migrations.sorted { $0.version < $1.version }
        precondition(Set(ordered.map(\.version)).count == ordered.count, "two migrations share a version")
        try await write { db in
            try await db.raw("""
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)
                """).run()
        }
        var applied: [Int] = []
        for migration in ordered {
            let done = try await write { db -> Bool in
                let existing = try await db.raw("SELECT version FROM schema_migrations WHERE version = \(bind: migration.version)").first()
                if existing != nil { return false }
                for statement in migration.statements {
                    try await db.raw(SQLQueryString(statement)).run()
                }
                try await migration.data?(db)
                try await db.raw("""
                    INSERT INTO schema_migrations (version, name, applied_at_ms)
                    VALUES (\(bind: migration.version), \(bind: migration.name), \(bind: WallClock.nowMs()))
                    """).run()
                return true
            }
            if done {
                applied.append(migration.version)
                logger?.info("applied migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            }
        }
        return applied
    }
}

/// The transaction every backend runs on the connection it holds: `begin`, the body, COMMIT;
/// ROLLBACK when any of them fails — a failed COMMIT leaves the transaction open too — so the
/// connection goes back to its pool outside any transaction.
func runTransaction<T: Sendable>(
    on db: any SQLDatabase, begin: [SQLQueryString], logger: Logger, _ body: @Sendable (any SQLDatabase) async throws -> T
) async throws -> T {
    do {
        for statement in begin { try await db.raw(statement).run() }
        let result = try await body(db)
        try await db.raw("COMMIT").run()
        return result
    } catch {
        do {
            try await db.raw("ROLLBACK").run()
        } catch let rollbackError {
            logger.error("rollback failed", metadata: ["error": "\(String(reflecting: rollbackError))"])
        }
        throw error
    }
}

