import Logging
import MeshRPC
import MeshTracing
import NIOConcurrencyHelpers
import NIOPosix
import SQLKit
import Synchronization

/// SQLite's one writer, with group commit: the transactions that arrive while a batch commits
/// run next as one batch, each inside a savepoint of one outer transaction, and one COMMIT (one
/// fsync under synchronous=FULL) makes them all durable.
///
/// Every caller gets its own answer: a body that throws is rolled back to its savepoint alone;
/// a COMMIT that fails fails every body of its batch; nobody hears of success before the COMMIT
/// returned, so a process killed mid-batch loses only what nobody was told was written.
/// The batches run on a thread of their own, so a commit's fsync never holds an event loop.
final class SQLiteWriter: Sendable {
    private let connection: SQLiteConnection
    private let database: SQLiteDatabase
    private let group: MultiThreadedEventLoopGroup
    private let executor: EventLoopTaskExecutor
    private let state = NIOLockedValueBox(State())
    private let counters: SQLiteCounters
    private let logger: Logger
    /// Transactions in one batch at most, so the first caller in a burst waits for a bounded COMMIT.
    static let maxBatch = 256

    private struct State {
        var pending: [Job] = []
        /// The transactions among `pending`, counted as they come and go (reading it walks nothing).
        var queuedTransactions = 0
        var draining = false
    }

    private enum Job: Sendable {
        case transaction(Transaction)
        case exclusive(@Sendable (SQLiteConnection) -> Void)
    }

    init(connection: SQLiteConnection, counters: SQLiteCounters, logger: Logger) {
        self.connection = connection
        self.counters = counters
        self.logger = logger
        self.database = SQLiteDatabase(connection: connection, offload: nil, counters: counters, logger: logger)
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.executor = EventLoopTaskExecutor(loop: group.next())
    }

    /// True inside a transaction's body (on the writer): a store that would queue another
    /// transaction behind it from there waits for itself, and refuses instead.
    @TaskLocal static var inTransaction = false

    /// Runs `body` in the next batch; returns once its batch committed (or throws its own error,
    /// or the batch's COMMIT error).
    func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        let outcome = Outcome<T>()
        // The body runs on the writer, in another task: a traced caller's context goes with it (what an
        // outbox event written there keeps, what its logs name).
        let trace = RPCTracing.isEnabled ? RPCTracing.capture() : nil
        return try await withCheckedThrowingContinuation { continuation in
            let transaction = Transaction(
                run: { database in
                    do {
                        outcome.set(.success(try await SQLiteWriter.$inTransaction.withValue(true) {
                            guard let trace else { return try await body(database) }
                            return try await RPCTracing.restoring(trace) { try await body(database) }
                        }))
                        return nil
                    } catch {
                        outcome.set(.failure(error))
                        return error
                    }
                },
                finish: { commitError in
                    if let commitError, case .success = outcome.get() {
                        continuation.resume(throwing: commitError)
                    } else {
                        continuation.resume(with: outcome.get() ?? .failure(commitError ?? SQLiteError.interrupted("lost transaction")))
                    }
                }
            )
            enqueue([.transaction(transaction)], first: false)
        }
    }

    /// Runs `work` on the writer's connection between batches, outside any transaction.
    func exclusive<T: Sendable>(_ work: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            enqueue([.exclusive({ connection in continuation.resume(with: Result { try work(connection) }) })], first: false)
        }
    }

    /// Transactions queued behind the batch being committed (they go together in the next one).
    var waiting: Int {
        state.withLockedValue { $0.queuedTransactions }
    }

    /// Waits for everything queued, closes the connection and stops the writer's thread.
    func close() async throws {
        try await exclusive { $0.close() }
        try await group.shutdownGracefully()
    }

    private func enqueue(_ jobs: [Job], first: Bool) {
        let start = state.withLockedValue { state -> Bool in
            if first { state.pending.insert(contentsOf: jobs, at: 0) } else { state.pending.append(contentsOf: jobs) }
            for job in jobs {
                if case .transaction = job { state.queuedTransactions += 1 }
            }
            if state.draining { return false }
            state.draining = true
            return true
        }
        if start {
            Task(executorPreference: executor) { await self.drain() }
        }
    }

    private enum Next {
        case batch([Transaction])
        case exclusive(@Sendable (SQLiteConnection) -> Void)
    }

    private func drain() async {
        while let next = takeNext() {
            switch next {
            case .batch(let batch): await commit(batch)
            case .exclusive(let work): work(connection)
            }
        }
    }

    private func takeNext() -> Next? {
        state.withLockedValue { state in
            guard let head = state.pending.first else {
                state.draining = false
                return nil
            }
            if case .exclusive(let work) = head {
                state.pending.removeFirst()
                return .exclusive(work)
            }
            var batch: [Transaction] = []
            for job in state.pending {
                guard batch.count < Self.maxBatch, case .transaction(let transaction) = job else { break }
                batch.append(transaction)
            }
            state.pending.removeFirst(batch.count)
            state.queuedTransactions -= batch.count
            return .batch(batch)
        }
    }

    private func commit(_ batch: [Transaction]) async {
        do {
            // IMMEDIATE takes the write lock now rather than at the first write,
            // so a transaction that read something cannot find it changed.
            _ = try connection.run("BEGIN IMMEDIATE", [])
        } catch {
            for transaction in batch { transaction.finish(error) }
            return
        }
        var written: [Transaction] = []
        for (index, transaction) in batch.enumerated() {
            var failed = false
            do {
                _ = try connection.run("SAVEPOINT batch_item", [])
                if await transaction.run(database) == nil {
                    _ = try connection.run("RELEASE batch_item", [])
                    written.append(transaction)
                    continue
                }
                failed = true
                if !connection.isAutocommit {
                    _ = try connection.run("ROLLBACK TO batch_item", [])
                    _ = try connection.run("RELEASE batch_item", [])
                    // Its own error is its whole outcome: it needs no COMMIT.
                    transaction.finish(nil)
                    continue
                }
            } catch {
                logger.error("savepoint failed", metadata: ["error": "\(error)"])
                if !failed { transaction.finish(error) } else { transaction.finish(nil) }
                if !connection.isAutocommit { try? connection.exec("ROLLBACK") }
                enqueue((written + batch[(index + 1)...]).map { .transaction($0) }, first: true)
                return
            }
            // SQLite ended the whole transaction for this body's failure (a full disk, an I/O error): the
            // bodies before it were undone too, so they run again, with those not run yet, in the next batch.
            transaction.finish(nil)
            enqueue((written + batch[(index + 1)...]).map { .transaction($0) }, first: true)
            return
        }
        guard !written.isEmpty else {
            try? connection.exec("ROLLBACK")
            return
        }
        do {
            _ = try connection.run("COMMIT", [])
            counters.commits.wrappingAdd(1, ordering: .relaxed)
            counters.transactions.wrappingAdd(written.count, ordering: .relaxed)
            for transaction in written { transaction.finish(nil) }
        } catch {
            // A failed COMMIT leaves the transaction open: end it so the next batch can begin.
            if !connection.isAutocommit { try? connection.exec("ROLLBACK") }
            for transaction in written { transaction.finish(error) }
        }
    }
}

/// One caller's body and how to answer it; touched by the writer's thread only once queued.
private final class Transaction: Sendable {
    let run: @Sendable (SQLiteDatabase) async -> (any Error)?
    let finish: @Sendable ((any Error)?) -> Void

    init(run: @escaping @Sendable (SQLiteDatabase) async -> (any Error)?, finish: @escaping @Sendable ((any Error)?) -> Void) {
        self.run = run
        self.finish = finish
    }
}

private final class Outcome<T: Sendable>: Sendable {
    private let result = NIOLockedValueBox<Result<T, any Error>?>(nil)
    func set(_ value: Result<T, any Error>) { result.withLockedValue { $0 = value } }
    func get() -> Result<T, any Error>? { result.withLockedValue { $0 } }
}
