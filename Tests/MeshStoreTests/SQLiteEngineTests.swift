import Foundation
@testable import MeshStore
import MeshRPC
import NIOPosix
import SQLKit
import Synchronization
import Testing

/// SQLiteStore's engine: the statement cache, values through binds and rows, and reads that run long.
@Suite struct SQLiteEngineTests {
    @Test func statementsArePreparedOncePerConnectionAndTheLeastRecentlyUsedGoPastTheCap() throws {
        let counters = SQLiteCounters()
        let connection = try SQLiteConnection.open(path: ":memory:", cacheCapacity: 8, counters: counters)
        defer { connection.close() }
        // One text, a hundred binds: prepared once, each run with its own value (binds reset per call).
        for i in 0..<100 {
            let rows = try connection.run("SELECT ?1 AS n", [Int64(i)])
            #expect(try rows.first?.decode(column: "n", as: Int64.self) == Int64(i))
        }
        #expect(counters.snapshot.misses == 1 && counters.snapshot.hits == 99)
        // Twenty more texts through a cache of eight: the least recently used are finalized.
        for i in 0..<20 { _ = try connection.run("SELECT \(i) AS n", []) }
        #expect(counters.snapshot.misses == 21 && counters.snapshot.evictions == 13)
        for i in 12..<20 { _ = try connection.run("SELECT \(i) AS n", []) }
        #expect(counters.snapshot.misses == 21 && counters.snapshot.hits == 107)
        _ = try connection.run("SELECT 0 AS n", [])
        #expect(counters.snapshot.misses == 22 && counters.snapshot.evictions == 14)
        // A bind count that does not match is refused before the statement runs.
        #expect(throws: SQLiteError.self) { _ = try connection.run("SELECT ?1 AS n", []) }
    }

    @Test func aReadInsideAWriteOnAnInMemoryStoreIsRefusedNotWaitedFor() async throws {
        let store = try await SQLiteStore.open(path: ":memory:")
        try await store.closing {
            try await store.migrate([Migration(version: 1, name: "t", statements: ["CREATE TABLE t (n BIGINT)"])])
            let outcome: String = try await store.write { db in
                try await db.raw("INSERT INTO t (n) VALUES (1)").run()
                do {
                    _ = try await store.read { try await $0.raw("SELECT n FROM t").all() }
                    return "read ran"
                } catch let error as SQLiteError {
                    return error.message
                }
            }
            #expect(outcome.contains("would wait for itself"))
            // Outside a transaction the same read runs, and the write was committed.
            let rows = try await store.read { try await $0.raw("SELECT n FROM t").all() }
            #expect(rows.count == 1)
        }
    }

    @Test func valuesComeBackAsTheyWentIn() async throws {
        let store = try await SQLiteStore.open(path: Self.temporaryPath())
        try await store.closing {
            try await store.migrate([Migration(version: 1, name: "v", statements: [
                "CREATE TABLE v (id INTEGER PRIMARY KEY, s TEXT, i BIGINT, d DOUBLE PRECISION, b BOOLEAN, blob BLOB, missing TEXT)",
            ])])
            let text = "Đơn hàng #12 — giao 'nhanh' 🚚"
            let blob = Data([0, 1, 2, 255, 0])
            try await store.write { db in
                try await db.raw("INSERT INTO v (id, s, i, d, b, blob, missing) VALUES (1, \(bind: text), \(bind: Int64.min), \(bind: 0.1), \(bind: true), \(bind: blob), \(bind: String?.none))").run()
            }
            let row = try await store.read { db in try await db.raw("SELECT * FROM v").first()! }
            #expect(try row.decode(column: "s", as: String.self) == text)
            #expect(try row.decode(column: "i", as: Int64.self) == Int64.min)
            #expect(try row.decode(column: "d", as: Double.self) == 0.1)
            #expect(try row.decode(column: "b", as: Bool.self))
            #expect(try row.decode(column: "blob", as: Data.self) == blob)
            #expect(try row.decode(column: "missing", as: String?.self) == nil)
            #expect(throws: (any Error).self) { try row.decode(column: "missing", as: String.self) }
            #expect(throws: (any Error).self) { try row.decode(column: "nope", as: String.self) }
        }
    }

    /// A read that runs past its step budget on an event loop is stopped and run again on the blocking
    /// pool; meanwhile its loop answers other reads.
    @Test func aReadPastItsStepBudgetMovesOffItsLoopWhichGoesOnServing() async throws {
        let store = try await SQLiteStore.open(path: Self.temporaryPath(), readers: 2)
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let executor = EventLoopTaskExecutor(loop: loops.next())
        try await store.closing {
            try await store.migrate([Migration(version: 1, name: "t", statements: ["CREATE TABLE t (id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES (7)"])])
            let longDone = Atomic<Bool>(false)
            let long = Task(executorPreference: executor) {
                defer { longDone.store(true, ordering: .relaxed) }
                return try await store.read { db in
                    try await db.raw("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000) SELECT COUNT(*) AS n FROM c").first()!.int64("n")
                }
            }
            while store.statistics.offloaded == 0 { try await Task.sleep(for: .milliseconds(1)) }
            let short = try await Task(executorPreference: executor) {
                try await store.read { db in try await db.raw("SELECT id FROM t").first()!.int64("id") }
            }.value
            #expect(short == 7)
            let longWasDone = longDone.load(ordering: .relaxed)
            #expect(!longWasDone, "the loop answered only after the long read")
            #expect(try await long.value == 10_000_000)
            #expect(store.statistics.offloaded == 1)
        }
        try await loops.shutdownGracefully()
    }

    static func temporaryPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("meshstore-\(UUID().uuidString)/test.sqlite").path
    }
}
