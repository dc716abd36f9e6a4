import Foundation
import Logging
import MeshStore
import SQLKit

/// The store a test runs on: a fresh SQLite file, or — when CHATMESH_TEST_POSTGRES_URL names
/// a PostgreSQL server (scripts/test starts a throw-away one) — a fresh database on it, so
/// every store test runs on both backends.
public enum TestDatabase {
    public static var postgresURL: String? {
        ProcessInfo.processInfo.environment["CHATMESH_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    public static var backend: SQLStoreKind { postgresURL == nil ? .sqlite : .postgres }

    /// Where a new, empty database is: a file path, or the URL of a database just created.
    public static func location(_ name: String) async throws -> String {
        guard let admin = postgresURL else { return temporaryDatabasePath(name) }
        let database = "t_" + name.lowercased().filter { $0.isLetter || $0.isNumber } + "_"
            + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let server = try await PostgresStore.open(url: admin, maxConnections: 1, logger: Logger(label: "test-database"))
        try await server.closing {
            try await server.read { db in try await db.raw("CREATE DATABASE \(ident: database)").run() }
        }
        var parts = URLComponents(string: admin)!
        parts.path = "/" + database
        return parts.string!
    }

    /// Opens (again) the database at `location`.
    public static func open(at location: String) async throws -> any SQLStore {
        if postgresURL != nil {
            return try await PostgresStore.open(url: location, maxConnections: 8, logger: Logger(label: "test-database"))
        }
        return try await SQLiteStore.open(path: location)
    }

    public static func open(_ name: String) async throws -> any SQLStore {
        try await open(at: try await location(name))
    }
}
