import ChatMeshAPI
import Foundation
import Logging
import MeshOutbox
import MeshRPC
import MeshStore
import SQLKit
import Synchronization
import MeshTestSupport
import NIOCore
import Testing

/// A subscriber that records what reached it and fails as each test scripts.
final class RecordingSubscriber: Sendable {
    struct Received: Sendable, Hashable {
        var key: String
        var eventId: String
    }

    let received = Mutex<[Received]>([])
    let calls = Mutex<[String: Int]>([:])
    /// How long each delivery takes at least, besides the jitter.
    let delay: Duration

    init(delay: Duration = .zero) {
        self.delay = delay
    }
    /// Returns the error an attempt at `eventId` meets, or nil to accept it.
    let fault = Mutex<@Sendable (_ eventId: String, _ call: Int) -> (any Error)?>({ _, _ in nil })

    func subscriber(_ name: String) -> Outbox.Subscriber {
        Outbox.Subscriber(name: name) { delivery in
            let call = self.calls.withLock { calls -> Int in
                calls[delivery.eventId, default: 0] += 1
                return calls[delivery.eventId]!
            }
            // Partitions run side by side: a little jitter makes a wrong order show.
            try await Task.sleep(for: self.delay + .microseconds(Int.random(in: 0...300)))
            if let error = self.fault.withLock({ $0 })(delivery.eventId, call) { throw error }
            self.received.withLock { $0.append(Received(key: delivery.key, eventId: delivery.eventId)) }
        }
    }

    func events(of key: String) -> [String] {
        received.withLock { $0.filter { $0.key == key }.map(\.eventId) }
    }
}

@Suite struct OutboxTests {
    static func open() async throws -> any SQLStore {
        let store = try await TestDatabase.open("outbox")
        try await store.migrate([
            Migration(version: 1, name: "outbox", statements: Outbox.schema),
            Migration(version: 2, name: "outbox trace context", statements: Outbox.traceContextColumn),
        ])
        return store
    }

    static func configuration(maxAttempts: Int64 = 10) -> OutboxDispatcher.Configuration {
        var configuration = OutboxDispatcher.Configuration()
        configuration.maxAttempts = maxAttempts
        configuration.retryBaseMs = 5
        configuration.retryMaxMs = 40
        configuration.idlePoll = .milliseconds(20)
        configuration.unreachableBackoff = .milliseconds(5)
        configuration.batchSize = 16
        return configuration
    }

    static func enqueue(_ store: any SQLStore, _ events: [Outbox.Event]) async throws {
        try await store.write { db in try await Outbox.enqueue(db, events, nowMs: WallClock.nowMs()) }
    }

    static func event(_ shop: String, _ key: String, _ id: String, subscriber: String = "s") -> Outbox.Event {
        Outbox.Event(subscriber: subscriber, shopId: shop, eventId: id, key: key, kind: "Test", payload: Array(id.utf8))
    }

    static func until(_ what: String, timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting for \(what)")
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    static func rows(_ store: any SQLStore) async throws -> Int {
        Int(try await store.read { db in try await db.raw("SELECT COUNT(*) AS n FROM outbox").first()!.int64("n") })
    }

    @Test func deliversEveryEventInOrderPerCustomerAndDeletesIt() async throws {
        let store = try await Self.open()
        let recorder = RecordingSubscriber()
        // 5 customers' events interleaved, more than one batch.
        var expected: [String: [String]] = [:]
        var events: [Outbox.Event] = []
        for n in 0..<60 {
            let key = "cu\(n % 5)"
            events.append(Self.event("shop", key, "e\(n)"))
            expected[key, default: []].append("e\(n)")
        }
        try await Self.enqueue(store, events)
        let dispatcher = OutboxDispatcher(
            store: store, subscribers: [recorder.subscriber("s")], configuration: Self.configuration(), logger: Logger(label: "test")
        )
        let running = Task { await dispatcher.run() }
        try await Self.until("the queue empty") { try await Self.rows(store) == 0 }
        running.cancel()
        await running.value
        for (key, ids) in expected {
            #expect(recorder.events(of: key) == ids)
        }
        #expect(try await Self.rows(store) == 0)
        #expect(dispatcher.health("s")?.delivered == 60)
        try await store.close()
    }

    @Test func theSameEventIdIsWrittenOnceAndARolledBackChangeWritesNone() async throws {
        let store = try await Self.open()
        try await Self.enqueue(store, [Self.event("shop", "cu1", "e1"), Self.event("shop", "cu1", "e1")])
        try await Self.enqueue(store, [Self.event("shop", "cu1", "e1")])
        struct Refused: Error {}
        await #expect(throws: Refused.self) {
            try await store.write { db in
                try await Outbox.enqueue(db, [Self.event("shop", "cu1", "e2")], nowMs: WallClock.nowMs())
                throw Refused()
            }
        }
        let ids = try await store.read { db in try await Outbox.pending(db, shop: "shop", subscriber: "s").map(\.eventId) }
        #expect(ids == ["e1"])
        try await store.close()
    }

    @Test func aRefusedEventRetriesThenDiesHoldingItsCustomerBackUntilReplayed() async throws {
        let store = try await Self.open()
        let recorder = RecordingSubscriber()
        let fixed = Mutex(false)
        recorder.fault.withLock {
            $0 = { id, _ in id == "a2" && !fixed.withLock { $0 } ? RPCError.failedPrecondition("a2 cannot be applied yet") : nil }
        }
        try await Self.enqueue(store, [
            Self.event("shop", "A", "a1"), Self.event("shop", "A", "a2"), Self.event("shop", "B", "b1"), Self.event("shop", "A", "a3"),
            Self.event("shop", "B", "b2"), Self.event("other", "A", "x1"),
        ])
        let dispatcher = OutboxDispatcher(
            store: store, subscribers: [recorder.subscriber("s")], configuration: Self.configuration(maxAttempts: 3), logger: Logger(label: "test")
        )
        let handler = OutboxServiceHandler(service: "test-svc", store: store, dispatcher: dispatcher)
        let running = Task { await dispatcher.run() }
        try await Self.until("a2 dead") {
            try await store.read { db in try await Outbox.dead(db, shop: "shop", subscriber: nil, after: nil, limit: 10) }.count == 1
        }
        // Give the dispatcher time to (wrongly) pass a3 along.
        try await Task.sleep(for: .milliseconds(200))
        #expect(recorder.events(of: "A").sorted() == ["a1", "x1"])  // shop "other"'s customer A is another partition
        #expect(recorder.events(of: "B") == ["b1", "b2"])
        #expect(recorder.calls.withLock { $0["a2"] } == 3)

        let context = ServerContext.testing(shop: "shop")
        let status = try await handler.getOutboxStatus(GetOutboxStatusRequest(shopId: "shop"), context: context)
        #expect(status.queues.map(\.subscriber) == ["s"])
        #expect(status.queues.first?.dead == 1)
        #expect(status.queues.first?.pending == 1)  // a3, waiting behind a2
        #expect(status.queues.first?.lastError.contains("a2 cannot be applied yet") == true)
        let otherShop = try await handler.getOutboxStatus(GetOutboxStatusRequest(shopId: "other"), context: ServerContext.testing(shop: "other"))
        #expect(otherShop.queues.first?.dead == 0 && otherShop.queues.first?.pending == 0)
        let dead = try await handler.listDeadEvents(ListDeadEventsRequest(shopId: "shop"), context: context)
        #expect(dead.events.map(\.eventId) == ["a2"])
        #expect(dead.events.first?.customerId == "A" && dead.events.first?.attempts == 3)
        #expect(try await handler.listDeadEvents(ListDeadEventsRequest(shopId: "other"), context: ServerContext.testing(shop: "other")).events.isEmpty)

        // Fixed, then replayed: a2 and then a3, once each.
        fixed.withLock { $0 = true }
        // Its proto says `Access: managers`: the route refuses an agent before the handler runs.
        let replay = try #require(handler.routes.first { $0.method == OutboxService.Method.replayDeadEvents })
        let refused = await #expect(throws: RPCError.self) {
            _ = try await replay.run(ByteBuffer(bytes: try ReplayDeadEventsRequest(shopId: "shop").serializedBytes()), ServerContext.testing(shop: "shop", role: .agent))
        }
        #expect(refused?.code == .permissionDenied)
        #expect(try await handler.replayDeadEvents(ReplayDeadEventsRequest(shopId: "other"), context: context).replayed == 0)
        #expect(try await handler.replayDeadEvents(ReplayDeadEventsRequest(shopId: "shop"), context: context).replayed == 1)
        try await Self.until("a2 and a3") { try await Self.rows(store) == 0 }
        running.cancel()
        await running.value
        #expect(recorder.events(of: "A") == ["a1", "x1", "a2", "a3"] || recorder.events(of: "A") == ["x1", "a1", "a2", "a3"])
        #expect(try await Self.rows(store) == 0)
        try await store.close()
    }

    @Test func anUnreachableSubscriberUsesNoAttemptsAndGetsEverythingWhenBack() async throws {
        let store = try await Self.open()
        let recorder = RecordingSubscriber()
        let down = Mutex(true)
        recorder.fault.withLock { $0 = { _, _ in down.withLock { $0 } ? RPCError.unavailable("connection refused") : nil } }
        try await Self.enqueue(store, (0..<30).map { Self.event("shop", "cu\($0 % 3)", "e\($0)") })
        let dispatcher = OutboxDispatcher(
            store: store, subscribers: [recorder.subscriber("s")], configuration: Self.configuration(maxAttempts: 2), logger: Logger(label: "test")
        )
        let running = Task { await dispatcher.run() }
        try await Self.until("several failed passes") { recorder.calls.withLock { $0.values.reduce(0, +) } >= 10 }
        #expect(dispatcher.health("s")?.reachable == false)
        let attempts = try await store.read { db in try await db.raw("SELECT MAX(attempts) AS n FROM outbox").first()!.int64("n") }
        #expect(attempts == 0)
        down.withLock { $0 = false }
        try await Self.until("the queue empty") { try await Self.rows(store) == 0 }
        running.cancel()
        await running.value
        #expect(dispatcher.health("s")?.reachable == true)
        for customer in 0..<3 {
            #expect(recorder.events(of: "cu\(customer)") == stride(from: customer, to: 30, by: 3).map { "e\($0)" })
        }
        #expect(try await Self.rows(store) == 0)
        try await store.close()
    }

    @Test func anEventDeliveredAgainAfterACrashIsStillInTheQueueUntilAnswered() async throws {
        // A dispatcher cancelled mid-delivery (the process killed) deletes nothing it did not
        // see answered: the next dispatcher delivers the rest, and at most the in-flight ones twice.
        let store = try await Self.open()
        let recorder = RecordingSubscriber()
        try await Self.enqueue(store, (0..<200).map { Self.event("shop", "cu\($0 % 7)", "e\($0)") })
        let first = OutboxDispatcher(store: store, subscribers: [recorder.subscriber("s")], configuration: Self.configuration(), logger: Logger(label: "test"))
        let running = Task { await first.run() }
        try await Self.until("some deliveries") { recorder.received.withLock { $0.count } >= 40 }
        running.cancel()
        await running.value
        let second = OutboxDispatcher(store: store, subscribers: [recorder.subscriber("s")], configuration: Self.configuration(), logger: Logger(label: "test"))
        let again = Task { await second.run() }
        try await Self.until("the queue empty") { try await Self.rows(store) == 0 }
        again.cancel()
        await again.value
        let received = recorder.received.withLock { $0 }
        #expect(Set(received.map(\.eventId)).count == 200)
        // At most the deliveries in flight when it stopped came twice.
        #expect(received.count - 200 <= Self.configuration().batchSize)
        // Each customer's first deliveries of its events are in order.
        for customer in 0..<7 {
            var seen: Set<String> = []
            let firsts = recorder.events(of: "cu\(customer)").filter { seen.insert($0).inserted }
            #expect(firsts == stride(from: customer, to: 200, by: 7).map { "e\($0)" })
        }
        try await store.close()
    }
}

extension ServerContext {
    /// A call as the router hands it over once the token checked out.
    static func testing(shop: String, role: Role = .owner) -> ServerContext {
        ServerContext(method: OutboxService.Method.getOutboxStatus, principal: Principal(shopId: shop, staffId: "tester", role: role, expiresAtMs: .max))
    }
}

@Suite struct OutboxReplicaTests {
    /// Two replicas of a producer dispatch the same table: each event goes out once,
    /// and a customer's events in order.
    @Test func twoDispatchersOnOneTableDeliverEachEventOnceInOrder() async throws {
        let store = try await OutboxTests.open()
        // More customers than a pass takes rows (16): a replica's pass cannot hold every customer, so
        // the other always finds some to deliver (with 9, one replica's back-to-back passes held them
        // all and the other delivered nothing — seen in a fresh-clone CI run on a loaded machine).
        let recorder = RecordingSubscriber(delay: .milliseconds(1))
        let customers = 40
        var events: [Outbox.Event] = []
        for n in 0..<300 { events.append(OutboxTests.event("shop", "cu\(n % customers)", "e\(n)")) }
        let dispatchers = ["replica-a", "replica-b"].map {
            OutboxDispatcher(store: store, subscribers: [recorder.subscriber("s")], replica: $0, configuration: OutboxTests.configuration(),
                             logger: Logger(label: "test"))
        }
        let running = dispatchers.map { dispatcher in Task { await dispatcher.run() } }
        // Written while both run, in several commits.
        for chunk in stride(from: 0, to: 300, by: 50) {
            try await OutboxTests.enqueue(store, Array(events[chunk..<chunk + 50]))
            for dispatcher in dispatchers { dispatcher.ring() }
        }
        try await OutboxTests.until("the queue empty") { try await OutboxTests.rows(store) == 0 }
        for task in running { task.cancel() }
        for task in running { await task.value }
        let received = recorder.received.withLock { $0 }
        #expect(received.count == 300)  // none twice
        for customer in 0..<customers {
            #expect(recorder.events(of: "cu\(customer)") == stride(from: customer, to: 300, by: customers).map { "e\($0)" })
        }
        // Both took part.
        #expect(dispatchers.allSatisfy { ($0.health("s")?.delivered ?? 0) > 0 })
        try await store.close()
    }

    /// A replica that died holding rows: after its claim runs out, another delivers them;
    /// the same replica restarted takes its own claims up at once.
    @Test func aDeadReplicasClaimsRunOutAndItsRestartTakesThemUp() async throws {
        let store = try await OutboxTests.open()
        try await OutboxTests.enqueue(store, (0..<5).map { OutboxTests.event("shop", "cu1", "e\($0)") })
        let now = WallClock.nowMs()
        try await store.write { db in
            try await db.raw("UPDATE outbox SET claimed_by = 'replica-gone', claimed_until_ms = \(bind: now + 600_000)").run()
        }
        let recorder = RecordingSubscriber()
        let other = OutboxDispatcher(store: store, subscribers: [recorder.subscriber("s")], replica: "replica-b", configuration: OutboxTests.configuration(),
                                     logger: Logger(label: "test"))
        var running = Task { await other.run() }
        try await Task.sleep(for: .milliseconds(200))
        #expect(recorder.received.withLock { $0.isEmpty })  // still claimed by the one that died
        running.cancel()
        await running.value
        let restarted = OutboxDispatcher(store: store, subscribers: [recorder.subscriber("s")], replica: "replica-gone",
                                         configuration: OutboxTests.configuration(), logger: Logger(label: "test"))
        running = Task { await restarted.run() }
        try await OutboxTests.until("the queue empty") { try await OutboxTests.rows(store) == 0 }
        running.cancel()
        await running.value
        #expect(recorder.events(of: "cu1") == (0..<5).map { "e\($0)" })
        try await store.close()
    }
}
