import CoreMetrics
import Foundation
import MeshMetrics
import SQLKit
import Synchronization

/// A store whose reads and transactions are timed and counted for `/metrics`:
/// `chatmesh_store_seconds{op="read|write",backend}` (histogram), and
/// `chatmesh_store_operations_total{op,backend,outcome="ok|error"}`. The engine's own state — the
/// writer's queue, the WAL's size, statements prepared or found cached, operations in flight
/// (on PostgreSQL, connections of the pool in use) — is read per scrape by `collector`.
public final class MeteredStore: SQLStore {
    public let base: any SQLStore
    private let readTimer: CoreMetrics.Timer
    private let writeTimer: CoreMetrics.Timer
    private let outcomes: [Counter]
    private let inFlight = InFlight()

    /// Operations begun and not yet ended (on PostgreSQL, about the pool's connections in use).
    final class InFlight: Sendable {
        let count = Atomic<Int>(0)
    }
    private let factory: any MetricsFactory
    private let backend: String

    public init(_ base: any SQLStore, factory: any MetricsFactory = MetricsSystem.factory) {
        self.base = base
        self.factory = factory
        backend = base.kind == .sqlite ? "sqlite" : "postgres"
        readTimer = CoreMetrics.Timer(label: "chatmesh_store_seconds", dimensions: [("op", "read"), ("backend", backend)], factory: factory)
        writeTimer = CoreMetrics.Timer(label: "chatmesh_store_seconds", dimensions: [("op", "write"), ("backend", backend)], factory: factory)
        outcomes = [("read", "ok"), ("read", "error"), ("write", "ok"), ("write", "error")].map { [backend] op, outcome in
            CoreMetrics.Counter(label: "chatmesh_store_operations_total", dimensions: [("op", op), ("backend", backend), ("outcome", outcome)], factory: factory)
        }
        collector = Self.collector(base, backend, inFlight, factory)
    }

    public var kind: SQLStoreKind { base.kind }

    public func read<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await measure(readTimer, 0) { try await base.read(body) }
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await measure(writeTimer, 2) { try await base.write(body) }
    }

    public func close() async throws {
        try await base.close()
    }

    private func measure<T>(_ timer: CoreMetrics.Timer, _ outcome: Int, _ run: () async throws -> T) async throws -> T {
        let start = ContinuousClock.now
        inFlight.count.add(1, ordering: .relaxed)
        defer { inFlight.count.subtract(1, ordering: .relaxed) }
        do {
            let result = try await run()
            timer.recordNanoseconds(Self.nanoseconds(since: start))
            outcomes[outcome].increment()
            return result
        } catch {
            timer.recordNanoseconds(Self.nanoseconds(since: start))
            outcomes[outcome + 1].increment()
            throw error
        }
    }

    private static func nanoseconds(since start: ContinuousClock.Instant) -> Int64 {
        let elapsed = (ContinuousClock.now - start).components
        return elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000
    }

    /// The engine's state, read when `/metrics` is scraped (one per store: it remembers what it reported).
    public let collector: MetricsCollector

    private static func collector(_ base: any SQLStore, _ backend: String, _ inFlight: InFlight, _ factory: any MetricsFactory) -> MetricsCollector {
        let dimensions = [("backend", backend)]
        let inUse = Meter(label: "chatmesh_store_in_flight", dimensions: dimensions, factory: factory)
        guard let sqlite = base as? SQLiteStore else {
            return MetricsCollector(name: "store") {
                inUse.set(Double(inFlight.count.load(ordering: .relaxed)))
            }
        }
        let queue = Meter(label: "chatmesh_store_writer_queue", dimensions: dimensions, factory: factory)
        let wal = Meter(label: "chatmesh_store_sqlite_wal_bytes", dimensions: [], factory: factory)
        // The engine counts in atomics of its own; each scrape adds what they gained since the last.
        func counter(_ label: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: label, dimensions: dimensions, factory: factory)
        }
        let counters: [(CoreMetrics.Counter, @Sendable (SQLiteCounters.Snapshot) -> Int)] = [
            (counter("chatmesh_store_sqlite_statement_cache_total", [("result", "hit")]), { $0.hits }),
            (counter("chatmesh_store_sqlite_statement_cache_total", [("result", "miss")]), { $0.misses }),
            (counter("chatmesh_store_sqlite_statement_cache_total", [("result", "eviction")]), { $0.evictions }),
            (counter("chatmesh_store_sqlite_reads_offloaded_total"), { $0.offloaded }),
            (counter("chatmesh_store_sqlite_commits_total"), { $0.commits }),
            (counter("chatmesh_store_sqlite_transactions_total"), { $0.transactions }),
        ]
        let reported = Mutex<[Int]>(Array(repeating: 0, count: counters.count))
        return MetricsCollector(name: "store") {
            inUse.set(Double(inFlight.count.load(ordering: .relaxed)))
            queue.set(Double(sqlite.writesWaiting))
            let size = (try? FileManager.default.attributesOfItem(atPath: sqlite.path + "-wal")[.size] as? NSNumber)?.doubleValue ?? 0
            wal.set(size)
            let snapshot = sqlite.statistics
            let gains = reported.withLock { last in
                counters.indices.map { i in
                    let now = counters[i].1(snapshot)
                    defer { last[i] = max(last[i], now) }
                    return max(0, now - last[i])
                }
            }
            for (i, gain) in gains.enumerated() where gain > 0 {
                counters[i].0.increment(by: Int64(gain))
            }
        }
    }
}

extension SQLStore {
    /// What `/metrics` reads of this store per scrape: nothing unless it is metered.
    public var metricsCollectors: [MetricsCollector] {
        (self as? MeteredStore).map { [$0.collector] } ?? []
    }
}
