import Foundation
@testable import MeshStore
import MeshRPC
import MeshTestSupport
import SQLKit
import Testing

/// What every service relies on from `SQLStore`, on the backend the run is for
/// (SQLite, or PostgreSQL when CHATMESH_TEST_POSTGRES_URL is set).
@Suite struct StoreContractTests {
    @Test func aRefusedWriteLeavesNothingAndAMigrationAppliesWhollyOrNotAtAll() async throws {
        let store = try await TestDatabase.open("contract")
        try await store.closing {
            try await store.migrate([Migration(version: 1, name: "t", statements: ["CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT NOT NULL)"])])
            struct Refused: Error {}
            await #expect(throws: Refused.self) {
                try await store.write { db in
                    try await db.raw("INSERT INTO t (id, n) VALUES ('a', 1)").run()
                    throw Refused()
                }
            }
            let bad = Migration(version: 2, name: "bad", statements: ["CREATE TABLE ok (id TEXT)", "CREATE TABLE broken (((("])
            await #expect(throws: (any Error).self) { try await store.migrate([bad]) }
            // Neither the row nor the first table of the failed migration exists.
            #expect(try await store.read { db in try await db.raw("SELECT COUNT(*) AS n FROM t").first()!.int64("n") } == 0)
            await #expect(throws: (any Error).self) {
                _ = try await store.read { db in try await db.raw("SELECT COUNT(*) AS n FROM ok").all() }
            }
            #expect(try await store.migrate([Migration(version: 2, name: "fixed", statements: ["CREATE TABLE ok (id TEXT)"])]) == [2])
        }
    }

    @Test func concurrentReadModifyWritesNeverLoseAnUpdate() async throws {
        let store = try await TestDatabase.open("contract")
        try await store.closing {
            try await store.migrate([Migration(version: 1, name: "c", statements: [
                "CREATE TABLE c (k TEXT PRIMARY KEY, n BIGINT NOT NULL)", "INSERT INTO c VALUES ('x', 0)",
            ])])
            // Each transaction reads then writes: a lost update would show as a smaller total.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<100 {
                    group.addTask {
                        try await store.write { db in
                            let n = try await db.raw("SELECT n FROM c WHERE k = 'x'").first()!.int64("n")
                            try await db.raw("UPDATE c SET n = \(bind: n + 1) WHERE k = 'x'").run()
                        }
                    }
                }
                do { try await group.waitForAll() } catch { Issue.record("\(String(reflecting: error))"); throw error }
            }
            #expect(try await store.read { db in try await db.raw("SELECT n FROM c").first()!.int64("n") } == 100)
        }
    }

    @Test func aCancelledCallerDoesNotLeaveATransactionOpen() async throws {
        let store = try await TestDatabase.open("contract")
        try await store.closing {
            try await store.migrate([Migration(version: 1, name: "t", statements: ["CREATE TABLE t (id TEXT PRIMARY KEY)"])])
            let writer = Task {
                try await store.write { db in
                    for i in 0..<50 { try await db.raw("INSERT INTO t (id) VALUES (\(bind: "c\(i)"))").run() }
                }
            }
            writer.cancel()
            _ = try? await writer.value
            // Whatever happened to it, the next writes work.
            for i in 0..<5 {
                try await store.write { db in try await db.raw("INSERT INTO t (id) VALUES (\(bind: "after\(i)"))").run() }
            }
            let after = try await store.read { db in try await db.raw("SELECT COUNT(*) AS n FROM t WHERE id LIKE 'after%'").first()!.int64("n") }
            #expect(after == 5)
        }
    }

    @Test func postgresURLsAreReadOrRefusedNamingTheVariable() throws {
        let configuration = try PostgresStore.configuration(url: "postgres://chat%40mesh:s3cr%2Ft@db.internal:6543/chatmesh_order?sslmode=disable", maxConnections: 7)
        #expect(configuration.host == "db.internal" && configuration.port == 6543)
        #expect(configuration.username == "chat@mesh" && configuration.password == "s3cr/t" && configuration.database == "chatmesh_order")
        #expect(configuration.options.maximumConnections == 7)
        for bad in ["postgres://db.internal/x", "mysql://u@h/x", "postgres://u@h/x?sslmode=sometimes"] {
            #expect(throws: ConfigurationError.self) { _ = try PostgresStore.configuration(url: bad, maxConnections: 1) }
        }
        #expect(try StoreLocation.resolve(service: "order", databaseURL: "postgresql://u@h/x", dataDirectory: "/d") == .postgres(url: "postgresql://u@h/x"))
    }
}
