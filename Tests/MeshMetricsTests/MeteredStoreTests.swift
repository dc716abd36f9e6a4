import Foundation
import Logging
import MeshMetrics
import MeshPrometheus
import MeshStore
import MeshTestSupport
import Prometheus
import SQLKit
import Testing

@Suite struct MeteredStoreTests {
    struct Refused: Error {}

    @Test func readsAndTransactionsAreTimedAndCountedAndTheEngineReadPerScrape() async throws {
        let registry = PrometheusCollectorRegistry()
        let engine = try await TestDatabase.open("metered")
        let store = MeteredStore(engine, factory: PrometheusMetrics.factory(registry))
        let backend = store.kind == .sqlite ? "sqlite" : "postgres"
        try await store.write { db in try await db.raw("CREATE TABLE t (id BIGINT PRIMARY KEY)").run() }
        for id in 1...3 {
            try await store.write { db in try await db.raw("INSERT INTO t (id) VALUES (\(bind: Int64(id)))").run() }
        }
        await #expect(throws: Refused.self) {
            try await store.write { db in
                try await db.raw("INSERT INTO t (id) VALUES (\(bind: Int64(99)))").run()
                throw Refused()
            }
        }
        for _ in 0..<5 {
            _ = try await store.read { db in try await db.raw("SELECT COUNT(*) AS n FROM t").first() }
        }
        // The refused write left nothing behind.
        #expect(try await store.read { db in try await db.raw("SELECT COUNT(*) AS n FROM t").first()?.decode(column: "n", as: Int64.self) } == 3)
        try await store.collector.collect()
        var bytes: [UInt8] = []
        registry.emit(into: &bytes)
        let page = try PrometheusText(String(decoding: bytes, as: UTF8.self))
        #expect(page.sum("chatmesh_store_operations_total", ["op": "write", "backend": backend, "outcome": "ok"]) == 4)
        #expect(page.sum("chatmesh_store_operations_total", ["op": "write", "backend": backend, "outcome": "error"]) == 1)
        #expect(page.sum("chatmesh_store_operations_total", ["op": "read", "backend": backend, "outcome": "ok"]) == 6)
        #expect(page.sum("chatmesh_store_seconds_count", ["op": "write", "backend": backend]) == 5)
        #expect(page.sum("chatmesh_store_seconds_count", ["op": "read", "backend": backend]) == 6)
        #expect(page.sum("chatmesh_store_in_flight") == 0)
        if backend == "sqlite" {
            #expect(page.sum("chatmesh_store_sqlite_transactions_total") >= 4)
            #expect(page.sum("chatmesh_store_sqlite_statement_cache_total", ["result": "miss"]) >= 1)
            #expect(page.sum("chatmesh_store_writer_queue") == 0)
            // A second scrape adds only what happened since the first.
            try await store.write { db in try await db.raw("INSERT INTO t (id) VALUES (\(bind: Int64(4)))").run() }
            let before = page.sum("chatmesh_store_sqlite_transactions_total")
            try await store.collector.collect()
            bytes = []
            registry.emit(into: &bytes)
            let next = try PrometheusText(String(decoding: bytes, as: UTF8.self))
            #expect(next.sum("chatmesh_store_sqlite_transactions_total") == before + 1)
        }
        try await store.close()
    }
}
