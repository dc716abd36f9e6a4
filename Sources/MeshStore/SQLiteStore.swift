import Foundation
import Logging
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

    /// Durability of a commit. `.full` survives power loss; `.normal` (WAL)
    /// survives a crash of the process but may lose the last commits to a power cut.
    public enum Synchronous: String, Sendable {
        case full = "FULL"
        case normal = "NORMAL"
    }

    /// Opens (creating if needed) the database at `path`; ":memory:" gives a
    /// private in-memory database, read and written through one connection.
    public static func open(
        path: String, readers readerCount: Int = 4, synchronous: Synchronous = .full, logger: Logger = Logger(label: "chatmesh.store")
    ) async throws -> SQLiteStore {
        let inMemory = path == ":memory:"
        if !inMemory {
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
        }
        let threadPool = NIOThreadPool(numberOfThreads: inMemory ? 1 : readerCount + 1)
        threadPool.start()
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        let storage: SQLiteConnection.Storage = inMemory ? .memory : .file(path: path)
        do {
            let writer = try await SQLiteConnection.open(storage: storage, threadPool: threadPool, logger: logger, on: loop)
            // WAL: readers never block the writer nor it them. The writer's
            // pragmas persist in the file (journal_mode) or apply per connection.
            for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = \(synchronous.rawValue)", "PRAGMA foreign_keys = ON"] {
                _ = try await writer.query(pragma)
            }
            var readerConnections: [SQLiteConnection] = []
            if !inMemory {
                for _ in 0..<max(1, readerCount) {
                    let reader = try await SQLiteConnection.open(storage: storage, threadPool: threadPool, logger: logger, on: loop)
                    _ = try await reader.query("PRAGMA query_only = ON")
                    readerConnections.append(reader)
                }
            }
            return SQLiteStore(
                path: path, writer: writer, readers: inMemory ? [writer] : readerConnections, sharedReader: inMemory,
                threadPool: threadPool, logger: logger
            )
        } catch {
            try? await threadPool.shutdownGracefully()
            throw error
        }
    }

    private let sharedReader: Bool

    private init(path: String, writer: SQLiteConnection, readers: [SQLiteConnection], sharedReader: Bool, threadPool: NIOThreadPool, logger: Logger) {
        self.path = path
        self.writer = AsyncPool([writer])
        self.readers = AsyncPool(readers)
        self.sharedReader = sharedReader
        self.threadPool = threadPool
        self.logger = logger
    }

    public func read<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        // In memory there is one connection: reading takes the writer's turn
        // so that it never sees another task's transaction half done.
        let pool = sharedReader ? writer : readers
        return try await pool.withResource { connection in
            try await body(connection.sql(queryLogLevel: .trace))
        }
    }

    public func write<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await writer.withResource { connection in
            let db = connection.sql(queryLogLevel: .trace)
            // IMMEDIATE takes the write lock now rather than at the first write,
            // so a transaction that read something cannot find it changed.
            try await db.raw("BEGIN IMMEDIATE").run()
            let result: T
            do {
                result = try await body(db)
            } catch {
                do {
                    try await db.raw("ROLLBACK").run()
                } catch let rollbackError {
                    logger.error("rollback failed", metadata: ["error": "\(rollbackError)"])
                }
                throw error
            }
            try await db.raw("COMMIT").run()
            return result
        }
    }

    public func close() async throws {
        if !sharedReader {
            for connection in readers.all {
                try await connection.close()
            }
        }
        try await writer.all[0].close()
        try await threadPool.shutdownGracefully()
    }
}
