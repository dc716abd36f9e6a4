import Foundation
@testable import MeshStore
import MeshRPC
import MeshTestSupport
import NIOPosix
import SQLKit
import Synchronization
import Testing

/// The contract under concurrency, on the backend the run is for: readers beside writers, a batch with
/// a failing transaction in it, cancellation mid-transaction, and a process killed mid-write.
extension StoreContractTests {
    struct Refused: Error, Equatable { let index: Int }

    func outcome<T>(_ body: () async throws -> T) async -> Result<T, any Error> {
        do { return .success(try await body()) } catch { return .failure(error) }
    }

    /// Ten accounts hold 1,000 between them; 200 transfers run at once, one in four refused after its
    /// first UPDATE. Readers on event loops and on the cooperative pool never see a total other than
    /// 1,000 (no half transfer, no refused one), and every caller hears its own outcome.
    @Test func readersBesideWritersSeeOnlyWholeTransactions() async throws {
        let store = try await TestDatabase.open("contract")
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        try await store.closing {
            try await store.migrate([Migration(version: 1, name: "bank", statements: [
                "CREATE TABLE accounts (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
                "CREATE TABLE transfers (id BIGINT PRIMARY KEY, source BIGINT NOT NULL, target BIGINT NOT NULL, amount BIGINT NOT NULL)",
                "INSERT INTO accounts (id, n) VALUES " + (0..<10).map { "(\($0), 100)" }.joined(separator: ", "),
            ])])
            let stop = Atomic<Bool>(false)
            let readers = (0..<4).map { index in
                let body: @Sendable () async throws -> (reads: Int, wrong: [Int64]) = {
                    var reads = 0
                    var wrong: [Int64] = []
                    var seen: Int64 = 0
                    while !stop.load(ordering: .relaxed) {
                        let (total, transfers) = try await store.read { db in
                            let row = try await db.raw("SELECT (SELECT SUM(n) FROM accounts) AS total, (SELECT COUNT(*) FROM transfers) AS transfers").first()!
                            return (try row.int64("total"), try row.int64("transfers"))
                        }
                        if total != 1000 { wrong.append(total) }
                        // Committed transfers never disappear from a later read.
                        if transfers < seen { wrong.append(-transfers) }
                        seen = transfers
                        reads += 1
                        await Task.yield()
                    }
                    return (reads, wrong)
                }
                // Half the readers on event loops (each loop's own reader connections), half not.
                return index % 2 == 0 ? Task(executorPreference: EventLoopTaskExecutor(loop: loops.next()), operation: body) : Task(operation: body)
            }
            let outcomes = await withTaskGroup(of: (Int, Result<Int, any Error>).self) { group in
                for index in 0..<200 {
                    group.addTask {
                        let result = await outcome {
                            try await store.write { db in
                                let source = index % 10, target = (index * 7 + 3) % 10, amount = index % 5 + 1
                                try await db.raw("UPDATE accounts SET n = n - \(bind: amount) WHERE id = \(bind: source)").run()
                                if index % 4 == 1 { throw Refused(index: index) }
                                try await db.raw("UPDATE accounts SET n = n + \(bind: amount) WHERE id = \(bind: target)").run()
                                try await db.raw("INSERT INTO transfers (id, source, target, amount) VALUES (\(bind: index), \(bind: source), \(bind: target), \(bind: amount))").run()
                                return index
                            }
                        }
                        return (index, result)
                    }
                }
                var outcomes: [Int: Result<Int, any Error>] = [:]
                for await (index, result) in group { outcomes[index] = result }
                return outcomes
            }
            stop.store(true, ordering: .relaxed)
            for reader in readers {
                let (reads, wrong) = try await reader.value
                #expect(reads > 0)
                #expect(wrong.isEmpty, "reads saw \(wrong.prefix(5))")
            }
            for (index, outcome) in outcomes {
                switch outcome {
                case .success(let answered): #expect(index % 4 != 1 && answered == index)
                case .failure(let error): #expect(index % 4 == 1 && error as? Refused == Refused(index: index), "\(index): \(error)")
                }
            }
            let (accounts, transfers) = try await store.read { db in
                (try await db.raw("SELECT id, n FROM accounts ORDER BY id").all().map { try $0.int64("n") },
                 try await db.raw("SELECT source, target, amount FROM transfers").all())
            }
            #expect(transfers.count == 150)
            var expected = [Int64](repeating: 100, count: 10)
            for transfer in transfers {
                let amount = try transfer.int64("amount")
                expected[Int(try transfer.int64("source"))] -= amount
                expected[Int(try transfer.int64("target"))] += amount
            }
            #expect(accounts == expected)
        }
        try await loops.shutdownGracefully()
    }

    /// Twenty transactions queued together, three of which throw after writing: only those three leave
    /// nothing; the others commit (on SQLite as one batch: one COMMIT for the seventeen) and each caller
    /// gets its own answer.
    @Test func aBatchWhereSomeTransactionsThrowRollsBackOnlyThem() async throws {
        let store = try await TestDatabase.open("contract")
        try await store.closing {
            try await store.migrate([Migration(version: 1, name: "t", statements: ["CREATE TABLE t (id BIGINT PRIMARY KEY, note TEXT NOT NULL)"])])
            let sqlite = store as? SQLiteStore
            let before = sqlite?.statistics
            // On SQLite the writer is held by a first transaction until the twenty wait behind it, so
            // they are one batch whatever the scheduling; elsewhere it returns at once.
            let holding = Signal()
            let holder = Task {
                try await store.write { db in
                    try await db.raw("INSERT INTO t (id, note) VALUES (-1, 'holder')").run()
                    holding.fire()
                    if let sqlite { while sqlite.writesWaiting < 20 { try await Task.sleep(for: .milliseconds(1)) } }
                }
            }
            await holding.wait()
            let outcomes = await withTaskGroup(of: (Int, Result<Int, any Error>).self) { group in
                for index in 0..<20 {
                    group.addTask {
                        (index, await outcome {
                            try await store.write { db in
                                try await db.raw("INSERT INTO t (id, note) VALUES (\(bind: index), 'written')").run()
                                if index % 7 == 3 { throw Refused(index: index) }
                                try await db.raw("UPDATE t SET note = \(bind: "kept \(index)") WHERE id = \(bind: index)").run()
                                return index
                            }
                        })
                    }
                }
                var outcomes: [Int: Result<Int, any Error>] = [:]
                for await (index, result) in group { outcomes[index] = result }
                return outcomes
            }
            try await holder.value
            let refused = Set((0..<20).filter { $0 % 7 == 3 })
            for (index, outcome) in outcomes {
                switch outcome {
                case .success(let answered): #expect(!refused.contains(index) && answered == index)
                case .failure(let error): #expect(refused.contains(index) && error as? Refused == Refused(index: index), "\(index): \(error)")
                }
            }
            let rows = try await store.read { db in
                try await db.raw("SELECT id, note FROM t WHERE id >= 0 ORDER BY id").all().map { (try $0.int64("id"), try $0.string("note")) }
            }
            #expect(rows.map(\.0) == (0..<20).filter { !refused.contains($0) }.map(Int64.init))
            #expect(rows.allSatisfy { $0.1 == "kept \($0.0)" })
            if let sqlite, let before {
                let after = sqlite.statistics
                #expect(after.commits - before.commits == 2, "the holder's batch, then the twenty's")
                #expect(after.transactions - before.transactions == 1 + 20 - refused.count)
            }
        }
    }

    /// The caller is cancelled while its transaction is half done: the transaction still runs to its
    /// commit (the contract), and the store goes on working.
    @Test func cancellingTheCallerMidTransactionCommitsItWhole() async throws {
        let store = try await TestDatabase.open("contract")
        try await store.closing {
            try await store.migrate([Migration(version: 1, name: "t", statements: ["CREATE TABLE t (id TEXT PRIMARY KEY)"])])
            let halfway = Signal(), resume = Signal()
            let caller = Task {
                try await store.write { db in
                    for i in 0..<10 { try await db.raw("INSERT INTO t (id) VALUES (\(bind: "a\(i)"))").run() }
                    halfway.fire()
                    await resume.wait()
                    for i in 0..<10 { try await db.raw("INSERT INTO t (id) VALUES (\(bind: "b\(i)"))").run() }
                    return "done"
                }
            }
            await halfway.wait()
            caller.cancel()
            resume.fire()
            #expect(try await caller.value == "done")
            try await store.write { db in try await db.raw("INSERT INTO t (id) VALUES ('after')").run() }
            let count = try await store.read { db in try await db.raw("SELECT COUNT(*) AS n FROM t").first()!.int64("n") }
            #expect(count == 21)
        }
    }

    /// A process writing from many tasks at once is killed with SIGKILL; every write it acknowledged
    /// (printed after `write` returned) is there when the store is opened again, and no transaction
    /// is there by half (each writer's count matches its rows).
    @Test func aKilledProcessLosesNoAcknowledgedWrite() async throws {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("store-crash-writer")
        try #require(FileManager.default.isExecutableFile(atPath: executable.path), "build it first: swift build (\(executable.path))")
        let location = try await TestDatabase.location("crash")
        let process = Process()
        process.executableURL = executable
        process.arguments = [location, "32"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        // Lines as they come, read on a thread of their own (reads block); the stream ends at EOF.
        let lines = AsyncStream<String> { continuation in
            let handle = output.fileHandleForReading
            Thread.detachNewThread {
                var buffer = Data()
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    buffer.append(chunk)
                    while let end = buffer.firstIndex(of: 10) {
                        continuation.yield(String(decoding: buffer[buffer.startIndex..<end], as: UTF8.self))
                        buffer.removeSubrange(buffer.startIndex...end)
                    }
                }
                continuation.finish()
            }
        }
        // Should the child stall, it is killed after a minute so that the test fails rather than hangs.
        let watchdog = Task {
            try await Task.sleep(for: .seconds(60))
            kill(process.processIdentifier, SIGKILL)
        }
        var acknowledged: [Int64: Int64] = [:]  // writer → highest seq acknowledged
        var count = 0
        var killed = false
        for await line in lines {
            let parts = line.split(separator: " ").compactMap { Int64($0) }
            guard parts.count == 2 else { continue }
            acknowledged[parts[0]] = max(acknowledged[parts[0]] ?? -1, parts[1])
            count += 1
            if count == 600, !killed {
                kill(process.processIdentifier, SIGKILL)
                killed = true
            }
        }
        watchdog.cancel()
        process.waitUntilExit()
        #expect(killed, "the writer stopped after \(count) acknowledged writes")
        #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL)
        let store = try await TestDatabase.open(at: location)
        try await store.closing {
            let (rows, totals) = try await store.read { db in
                (try await db.raw("SELECT writer, COUNT(*) AS n, MAX(seq) AS last FROM acked GROUP BY writer").all().map {
                    (try $0.int64("writer"), try $0.int64("n"), try $0.int64("last"))
                }, try await db.raw("SELECT writer, n FROM totals").all().map { (try $0.int64("writer"), try $0.int64("n")) })
            }
            let totalByWriter = Dictionary(uniqueKeysWithValues: totals)
            for (writer, last) in acknowledged {
                guard let row = rows.first(where: { $0.0 == writer }) else {
                    Issue.record("writer \(writer): acknowledged up to \(last), nothing stored")
                    continue
                }
                // Each writer writes one after another: rows 0…last are all there, at most the one in
                // flight past them, and its count moved with them.
                #expect(row.1 == row.2 + 1 && row.2 >= last && row.2 <= last + 1, "writer \(writer): acknowledged \(last), stored \(row)")
                #expect(totalByWriter[writer] == row.1, "writer \(writer): count \(String(describing: totalByWriter[writer])) for \(row.1) rows")
            }
        }
    }
}
