import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SQLKit
import SQLiteKit

/// SQLite, one file per service: one writer connection (SQLite has one writer
/// at a time; taking it in turn here means no task ever spins on SQLITE_BUSY)
/// and a few reader connections that WAL lets run beside it.
public final class SQLiteStore: SQLStore {
    public let path: String
    public var kind: SQLStoreKind { .sqlite }

    private let writer: AsyncPool<SQLiteConnection>
    private let readers: AsyncPool<SQLiteConnection>
    private let threadPool: NIOThreadPool
    private let logger: Logger

    /// Durability of a commit. `.normal` (the default): a committed transaction
    /// survives a crash or kill of the process; a power cut or kernel crash may
    /// lose what was committed since the last checkpoint (at most about one
    /// checkpoint interval). `.full` survives power loss too, at the price of an
    /// fsync in every commit, which checkpoints on this kind of disk stretch to
    /// tens of milliseconds (README, Performance).
    public enum Synchronous: String, Sendable {
        case full = "FULL"
        case normal = "NORMAL"
    }

    /// Opens (creating if needed) the database at `path`; ":memory:" gives a
    /// private in-memory database, read and written through one connection.
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
        let threadPool = NIOThreadPool(numberOfThreads: inMemory ? 1 : readerCount + 2)
        threadPool.start()
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        let storage: SQLiteConnection.Storage = inMemory ? .memory : .file(path: path)
        do {
            let writer = try await SQLiteConnection.open(storage: storage, threadPool: threadPool, logger: logger, on: loop)
            // WAL: readers never block the writer nor it them. The writer's
            // pragmas persist in the file (journal_mode) or apply per connection.
            // No checkpoints on commit: the commit that crossed the WAL threshold
            // would copy pages and fsync the database file while its caller waits.
            // The checkpointer below does it beside the writer instead.
            for pragma in [
                "PRAGMA journal_mode = WAL", "PRAGMA synchronous = \(synchronous.rawValue)", "PRAGMA foreign_keys = ON",
                "PRAGMA wal_autocheckpoint = 0", "PRAGMA journal_size_limit = \(walGoalBytes)",
            ] + Self.cachePragmas {
                _ = try await writer.query(pragma)
            }
            var readerConnections: [SQLiteConnection] = []
            if !inMemory {
                for _ in 0..<max(1, readerCount) {
                    let reader = try await SQLiteConnection.open(storage: storage, threadPool: threadPool, logger: logger, on: loop)
                    for pragma in ["PRAGMA query_only = ON"] + Self.cachePragmas {
                        _ = try await reader.query(pragma)
                    }
                    readerConnections.append(reader)
                }
            }
            var checkpointer: SQLiteConnection?
            if !inMemory {
                checkpointer = try await SQLiteConnection.open(storage: storage, threadPool: threadPool, logger: logger, on: loop)
            }
            return SQLiteStore(
                path: path, writer: writer, readers: inMemory ? [writer] : readerConnections, sharedReader: inMemory,
                checkpointer: checkpointer, threadPool: threadPool, walGoalBytes: walGoalBytes, checkpointInterval: checkpointInterval,
                logger: logger
            )
        } catch {
            try? await threadPool.shutdownGracefully()
            throw error
        }
    }

    private let sharedReader: Bool
    private let checkpointer: SQLiteConnection?
    private let checkpointTask: Task<Void, Never>?
    private let truncations = NIOLockedValueBox(0)

    /// How many times the WAL was found past its goal and emptied (see init).
    public var walTruncations: Int { truncations.withLockedValue { $0 } }

    /// The WAL size past which the writer waits for a complete checkpoint (see init), by default.
    public static let walGoalBytes = 64 << 20

    /// How often the WAL is copied back into the database file, by default.
    public static let checkpointInterval: Duration = .milliseconds(
        Int64(ProcessInfo.processInfo.environment["CHATMESH_SQLITE_CHECKPOINT_MS"].flatMap { Int64($0) } ?? 500)
    )

    /// Pages mapped and cached in memory rather than read() from the file
    /// each time (SQLite's default cache is 2 MiB per connection).
    static let cachePragmas = ["PRAGMA mmap_size = 4294967296", "PRAGMA cache_size = -65536", "PRAGMA temp_store = MEMORY"]

    private init(
        path: String, writer: SQLiteConnection, readers: [SQLiteConnection], sharedReader: Bool, checkpointer: SQLiteConnection?,
        threadPool: NIOThreadPool, walGoalBytes: Int, checkpointInterval: Duration, logger: Logger
    ) {
        self.path = path
        let writerPool = AsyncPool([writer])
        self.writer = writerPool
        self.readers = AsyncPool(readers)
        self.sharedReader = sharedReader
        self.threadPool = threadPool
        self.logger = logger
        self.checkpointer = checkpointer
        // PASSIVE copies what no reader still needs and never blocks the
        // writer. The WAL starts again from its beginning only when a write
        // begins after a checkpoint copied all of it and no reader still
        // reads from it, which steady writes beside reads seldom allow:
        // seeding 10,000 customers grew an 11 MB database's WAL to 1.2 GB.
        // So past its goal, a TRUNCATE checkpoint runs holding the writer: it
        // copies the last interval's frames, waits for the readers that began
        // before (single statements; later ones read the database file), and
        // empties the WAL. Writes wait that long; reads do not.
        let truncations = self.truncations
        self.checkpointTask = checkpointer.map { connection in
            Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: checkpointInterval)
                    if Task.isCancelled { break }
                    do {
                        let rows = try await connection.query("PRAGMA wal_checkpoint(PASSIVE)")
                        // "log" counts frames: one page each, 4 KiB by default.
                        if let frames = rows.first?.column("log")?.integer, frames > walGoalBytes / 4096 {
                            _ = try await writerPool.withResource { _ in try await connection.query("PRAGMA wal_checkpoint(TRUNCATE)") }
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
        // In memory there is one connection: reading takes the writer's turn
        // so that it never sees another task's transaction half done.
        let pool = sharedReader ? writer : readers
        return try await pool.withResource { connection in
            try await body(connection.sql(queryLogLevel: .trace))
        }
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        // Its own task, which the caller's cancellation does not reach (sqlite-nio gives up a
        // statement of a cancelled task, ROLLBACK included).
        try await Task { try await self.transaction(body) }.value
    }

    private func transaction<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await writer.withResource { connection in
            // IMMEDIATE takes the write lock now rather than at the first write,
            // so a transaction that read something cannot find it changed.
            try await runTransaction(on: connection.sql(queryLogLevel: .trace), begin: ["BEGIN IMMEDIATE"], logger: logger, body)
        }
    }

    public func close() async throws {
        checkpointTask?.cancel()
        await checkpointTask?.value
        if let checkpointer {
            // Leaves the database file complete on its own, the WAL empty.
            _ = try? await checkpointer.query("PRAGMA wal_checkpoint(TRUNCATE)")
            try await checkpointer.close()
        }
        if !sharedReader {
            for connection in readers.all {
                try await connection.close()
            }
        }
        try await writer.all[0].close()
        try await threadPool.shutdownGracefully()
    }
}
