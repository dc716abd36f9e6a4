import ChatMeshAPI
import MeshChanges
import MeshRPC
@testable import MeshStore
import MeshTestSupport
import SQLKit
import Synchronization
import Testing

/// R-PANEL-4: the change log on both backends: positions without gaps in commit order, reads from
/// memory or the table, a reset past the retained window, waiters woken by a commit.
@Suite struct ChangeLogTests {
    static func open(_ configure: (inout ChangeLog.Configuration) -> Void = { _ in }) async throws -> (any SQLStore, ChangeLog) {
        let store = try await TestDatabase.open("changes")
        try await store.migrate([Migration(version: 1, name: "changes", statements: ChangeLog.schema)])
        var configuration = ChangeLog.Configuration(for: store.kind)
        configure(&configuration)
        return (store, try await ChangeLog.open(store, configuration: configuration))
    }

    static func record(_ store: any SQLStore, _ entries: [ChangeLog.Entry]) async throws {
        try await store.write { db in try await ChangeLog.record(db, entries, nowMs: WallClock.nowMs()) }
    }

    static func entry(_ shop: String, _ customer: String) -> ChangeLog.Entry {
        ChangeLog.Entry(shopId: shop, kind: Change.Kind.orders, customerId: customer)
    }

    @Test func positionsHaveNoGapsAndFollowCommitOrder() async throws {
        let (store, log) = try await Self.open()
        try await store.closing {
            // 20 transactions of 3 changes each, at once.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for n in 0..<20 {
                    group.addTask { try await Self.record(store, (0..<3).map { Self.entry("s", "c\(n)-\($0)") }) }
                }
                try await group.waitForAll()
            }
            try await log.follow()
            guard case .changes(let changes, let through) = try await log.read(after: 0, shop: nil, limit: 100) else {
                Issue.record("a reset with nothing pruned")
                return
            }
            #expect(changes.map(\.position) == Array(1...60))
            #expect(through == 60 && log.head == 60)
            // A transaction's changes are consecutive, in the order it wrote them.
            for start in stride(from: 0, to: 60, by: 3) {
                let customers = changes[start..<start + 3].map(\.entry.customerId)
                let transaction = customers[0].split(separator: "-")[0]
                #expect(customers == (0..<3).map { "\(transaction)-\($0)" })
            }
        }
    }

    @Test func readsComeFromMemoryThenTheTableThenReset() async throws {
        let (store, log) = try await Self.open { $0.memory = 4 }
        try await store.closing {
            for n in 1...10 { try await Self.record(store, [Self.entry(n % 2 == 0 ? "even" : "odd", "c\(n)")]) }
            try await log.follow()
            // The newest, from memory, one shop's only; `through` passes the other shop's.
            #expect(try await log.read(after: 8, shop: "even", limit: 10) == .changes([try #require(Self.change(log, 10))], through: 10))
            // Older than memory: from the table.
            guard case .changes(let old, let through) = try await log.read(after: 2, shop: "odd", limit: 2) else {
                Issue.record("a reset with nothing pruned")
                return
            }
            #expect(old.map(\.position) == [3, 5] && through == 5)
            // Pruned past the position asked for: what changed since is unknown.
            try await log.prune(nowMs: WallClock.nowMs() + 2 * 86_400_000)
            #expect(try await log.read(after: 2, shop: nil, limit: 10) == .reset(through: 10))
            // The newest change stays, so positions go on from it.
            try await Self.record(store, [Self.entry("odd", "c11")])
            try await log.follow()
            #expect(log.head == 11)
            #expect(try await log.read(after: 10, shop: nil, limit: 10) == .changes([try #require(Self.change(log, 11))], through: 11))
        }
    }

    static func change(_ log: ChangeLog, _ position: Int64) async throws -> ChangeLog.Change? {
        guard case .changes(let changes, _) = try await log.read(after: position - 1, shop: nil, limit: 1) else { return nil }
        return changes.first
    }

    @Test func aCommitWakesWaitersAndDrainingEndsThem() async throws {
        let (store, log) = try await Self.open { $0.pollInterval = .seconds(3600) }
        try await store.closing {
            let following = Task { await log.run() }
            defer { following.cancel() }
            let woke = Signal()
            let waiter = Task {
                await log.wait(after: 0)
                woke.fire()
            }
            try await Self.record(store, [Self.entry("s", "c1")])
            // Only the bell can wake it: the poll is an hour away.
            log.committed()
            await woke.wait()
            #expect(log.head == 1)
            await waiter.value
            log.drain()
            await log.wait(after: 1)   // returns at once: nothing will wait on a draining log
            #expect(log.isDraining)
        }
    }

    @Test func theFeedStartsAtItsPositionResumesAndResets() async throws {
        let (store, log) = try await Self.open()
        try await store.closing {
            try await Self.record(store, [Self.entry("a", "c1"), Self.entry("b", "c2")])
            try await log.follow()
            let sent = Mutex<[WatchChangesResponse]>([])
            let writer = RPCWriter<WatchChangesResponse> { response in sent.withLock { $0.append(response) } }
            let feed = ChangeFeed(log: log)
            // Resuming after position 0 means "from now": only the start is sent, then it waits.
            let fromNow = Task { try await feed.serve(WatchChangesRequest(shopId: "a", afterPosition: 0), responses: writer) }
            try await waitUntil { sent.withLock { $0.count } == 1 }
            #expect(sent.withLock { $0 } == [WatchChangesResponse(position: 2)])
            try await Self.record(store, [Self.entry("b", "c3"), Self.entry("a", "c4")])
            try await log.follow()
            try await waitUntil { sent.withLock { $0.count } == 2 }
            #expect(sent.withLock { $0[1].changes.map(\.customerId) } == ["c4"])
            #expect(sent.withLock { $0[1].position } == 4)
            // The service stops: the stream ends with UNAVAILABLE, for the subscriber to resume elsewhere.
            log.drain()
            await #expect(throws: RPCError.self) { try await fromNow.value }
        }
    }

    func waitUntil(_ condition: @Sendable () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw RPCError.deadlineExceeded("condition not met") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
