import Foundation
import Logging
import MeshRPC
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SQLKit

/// SQLite, one file per service, over SQLite's C API with every statement prepared once per
/// connection and kept.
///
/// - Reads run where they are called: on an event loop, on a reader connection of that loop's
///   own (WAL lets readers run beside the writer), with no thread hop. A statement that runs past
///   its step budget (~1 ms) or meets a lock is run again on a small blocking pool, and later runs
///   of it go there directly, so a long scan never holds a loop for longer than the budget.
/// - Writes go to the one writer (`SQLiteWriter`), which commits the transactions that arrive
///   together as one batch: one COMMIT, one fsync, each caller its own result.
public final class SQLiteStore: SQLStore {
    public let path: String
    public var kind: SQLStoreKind { .sqlite }

    private let writer: SQLiteWriter
    /// Reader connections by event loop (and one set for callers on no loop); nil in memory.
    private let lanes: NIOLockedValueBox<[ObjectIdentifier: AsyncPool<SQLiteConnection>]>?
    private let laneCapacity: Int
    private let openReader: @Sendable () throws -> SQLiteConnection
    private let blockingPool: NIOThreadPool
    private let logger: Logger
    private let counters: SQLiteCounters

    /// Durability of a commit. `.normal` (the default): a committed transaction
    /// survives a crash or kill of the process; a power cut or kernel crash may
    /// lose what was committed since the last checkpoint (at most about one
    /// checkpoint interval). `.full` survives power loss too, at the price of an
    /// fsync in every commit — one per batch of transactions committed together.
    public enum Synchronous: String, Sendable {
        case full = "FULL"
        case normal = "NORMAL"
    }

    /// Prepared statements kept per connection (least recently used evicted past it).
    public static let statementCacheCapacity = 256
    /// Progress callbacks (each 1,000 VM steps) a read on an event loop may take before it moves
    /// to the blocking pool: 1,000 steps took 5–13 µs here, so 100 is about 1 ms of SQLite work, a
    /// hundred times what a keyed read of the services needs.
    static let readStepBudget: Int32 = 100
    /// How long a statement off the event loops (writer, moved reads) waits for a lock.
    static let busyTimeoutMs: Int32 = 5000

    /// Opens (creating if needed) the database at `path`; ":memory:" gives a
    /// private in-memory database, read and written through one connection.
    /// - Parameter readers: reader connections per event loop at most (a loop needs a second one
    ///   only while a read waits on the blocking pool).
    public static func open(
        path: String, readers readerCount: Int = 4, synchronous: Synchronous = .normal, walGoalBytes: Int = SQLiteStore.walGoalBytes,
        checkpointInterval: Duration = SQLiteStore.checkpointInterval, logger: Logger = Logger(label: "chatmesh.store")
    ) async throws -> SQLiteStore {
        let inMemory = path == ":memory:"
        if !inMemory {
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
        }
        let counters = SQLiteCounters()
        let capacity = statementCacheCapacity
        let writerConnection = try SQLiteConnection.open(path: path, cacheCapacity: capacity, counters: counters)
        do {
            // WAL: readers never block the writer nor it them. The writer's
            // pragmas persist in the file (journal_mode) or apply per connection.
            // No checkpoints on commit: the commit that crossed the WAL threshold
            // would copy pages and fsync the database file while its callers wait.
            // The checkpointer below does it beside the writer instead.
            for pragma in [
                "PRAGMA journal_mode = WAL", "PRAGMA synchronous = \(synchronous.rawValue)", "PRAGMA foreign_keys = ON",
                "PRAGMA wal_autocheckpoint = 0", "PRAGMA journal_size_limit = \(walGoalBytes)",
            ] + Self.cachePragmas {
                try writerConnection.exec(pragma)
            }
            writerConnection.setBusyTimeout(ms: busyTimeoutMs)
        } catch {
            writerConnection.close()
            throw error
        }
        let openReader: @Sendable () throws -> SQLiteConnection = {
            let reader = try SQLiteConnection.open(path: path, cacheCapacity: capacity, counters: counters)
            do {
                for pragma in ["PRAGMA query_only = ON"] + Self.cachePragmas { try reader.exec(pragma) }
            } catch {
                reader.close()
                throw error
            }
            reader.stepBudget = readStepBudget
            return reader
        }
        var checkpointer: SQLiteConnection?
        if !inMemory {
            do {
                checkpointer = try SQLiteConnection.open(path: path, cacheCapacity: 4, counters: counters)
                checkpointer?.setBusyTimeout(ms: busyTimeoutMs)
            } catch {
                writerConnection.close()
                throw error
            }
        }
        let blockingPool = NIOThreadPool(numberOfThreads: 2)
        blockingPool.start()
        return SQLiteStore(
            path: path, writer: SQLiteWriter(connection: writerConnection, counters: counters, logger: logger),
            lanes: inMemory ? nil : NIOLockedValueBox([:]), laneCapacity: max(1, readerCount), openReader: openReader,
            checkpointer: checkpointer, blockingPool: blockingPool, counters: counters, walGoalBytes: walGoalBytes,
            checkpointInterval: checkpointInterval, logger: logger
        )
    }

    private let checkpointer: SQLiteConnection?
    private let checkpointTask: Task<Void, Never>?
    private let truncations = NIOLockedValueBox(0)

    /// How many times the WAL was found past its goal and emptied (see init).
    public var walTruncations: Int { truncations.withLockedValue { $0 } }

    /// Statement-cache hits and misses, reads moved off their loop, commits and the transactions in them.
    public var statistics: SQLiteCounters.Snapshot { counters.snapshot }

    /// Write transactions waiting for the writer: they will be committed together, as the next batch.
    public var writesWaiting: Int { writer.waiting }

    /// The WAL size past which the writer waits for a complete checkpoint (see init), by default.
    public static let walGoalBytes = 64 << 20

    /// How often the WAL is copied back into the database file, by default.
    public static let checkpointInterval: Duration = .milliseconds(
        Int64(ProcessInfo.processInfo.environment["CHATMESH_SQLITE_CHECKPOINT_MS"].flatMap { Int64($0) } ?? 500)
    )

    /// Pages mapped rather than read() from the file each time, and a page cache per connection of
    /// at most 16 MiB (SQLite's default is 2 MiB; `CHATMESH_SQLITE_CACHE_MIB`). The writer's cache fills
    /// as the database grows, so a process's heap grows with its data until then: the soak runs with
    /// small caches to see the heap level off within its warm-up.
    static let cachePragmas = [
        "PRAGMA mmap_size = 4294967296", "PRAGMA cache_size = -\(cacheKiB)", "PRAGMA temp_store = MEMORY",
    ]

    static let cacheKiB = 1024 * (MeshEnvironment().positiveInteger("CHATMESH_SQLITE_CACHE_MIB") ?? 16)

    private init(
        path: String, writer: SQLiteWriter, lanes: NIOLockedValueBox<[ObjectIdentifier: AsyncPool<SQLiteConnection>]>?, laneCapacity: Int,
        openReader: @escaping @Sendable () throws -> SQLiteConnection, checkpointer: SQLiteConnection?, blockingPool: NIOThreadPool,
        counters: SQLiteCounters, walGoalBytes: Int, checkpointInterval: Duration, logger: Logger
    ) {
        self.path = path
        self.writer = writer
        self.lanes = lanes
        self.laneCapacity = laneCapacity
        self.openReader = openReader
        self.blockingPool = blockingPool
        self.counters = counters
        self.logger = logger
        self.checkpointer = checkpointer
        // PASSIVE copies what no reader still needs and never blocks the
        // writer. The WAL starts again from its beginning only when a write
        // begins after a checkpoint copied all of it and no reader still
        // reads from it, which steady writes beside reads seldom allow:
        // seeding 10,000 customers grew an 11 MB database's WAL to 1.2 GB.
        // So past its goal, a TRUNCATE checkpoint runs on the writer between
        // batches: it copies the last interval's frames, waits for the readers
        // that began before (single statements; later ones read the database
        // file), and empties the WAL. Writes wait that long; reads do not.
        let truncations = self.truncations
        self.checkpointTask = checkpointer.map { connection in
            Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: checkpointInterval)
                    if Task.isCancelled { break }
                    do {
                        let rows = try await blockingPool.runIfActive { try connection.run("PRAGMA wal_checkpoint(PASSIVE)", []) }
                        // "log" counts frames: one page each, 4 KiB by default.
                        if let frames = try rows.first?.decode(column: "log", as: Int64.self), frames > walGoalBytes / 4096 {
                            _ = try await writer.exclusive { try $0.run("PRAGMA wal_checkpoint(TRUNCATE)", []) }
                            truncations.withLockedValue { $0 += 1 }
                        }
                    } catch {
                        logger.warning("WAL checkpoint failed", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
    }

    public func read<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        guard let lanes else {
            // In memory there is one connection: reading takes the writer's turn
            // so that it never sees another task's transaction half done. From inside a
            // transaction that turn would never come: refused rather than waited for.
            if SQLiteWriter.inTransaction {
                throw SQLiteError.misuse("a read inside a write transaction on an in-memory store would wait for itself: read through the transaction's database")
            }
            return try await withoutActuallyEscaping(body) { body in
                try await writer.transaction(body)
            }
        }
        // The loop's own readers: a lock and a lookup, then the statements run right here.
        let loop = MultiThreadedEventLoopGroup.currentEventLoop
        if loop == nil {
            // A caller on Swift's cooperative pool: a read that never suspends would let a loop of them
            // hold a pool thread for good (each read used to hop threads, and so yielded). One yield each.
            await Task.yield()
        }
        let key = loop.map { ObjectIdentifier($0) } ?? ObjectIdentifier(self)
        let lane = lanes.withLockedValue { lanes in
            if let lane = lanes[key] { return lane }
            let lane = AsyncPool(capacity: laneCapacity, make: openReader)
            lanes[key] = lane
            return lane
        }
        return try await lane.withResource { connection in
            try await body(SQLiteDatabase(connection: connection, offload: blockingPool, counters: counters, logger: logger))
        }
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        // The writer runs it in a task of its own, which the caller's cancellation does not reach.
        try await writer.transaction(body)
    }

    public func close() async throws {
        checkpointTask?.cancel()
        await checkpointTask?.value
        if let checkpointer {
            // Leaves the database file complete on its own, the WAL empty, once the writer is done.
            try await writer.close()
            _ = try? checkpointer.run("PRAGMA wal_checkpoint(TRUNCATE)", [])
            checkpointer.close()
        } else {
            try await writer.close()
        }
        for lane in lanes?.withLockedValue({ Array($0.values) }) ?? [] {
            for connection in lane.all { connection.close() }
        }
        try await blockingPool.shutdownGracefully()
    }
}
