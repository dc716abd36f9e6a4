import Foundation
import Logging
import MeshRPC
import MeshTracing
import SQLKit
import Synchronization

extension Outbox {
    /// One row on its way to its subscriber.
    public struct Delivery: Sendable, Hashable {
        public var seq: String
        public var shopId: String
        public var eventId: String
        /// The key the producer gave (a customer id).
        public var key: String
        public var kind: String
        public var payload: [UInt8]
        /// Attempts before this one.
        public var attempts: Int64
        public var createdAtMs: Int64
        /// The W3C trace context of the change that wrote the event (empty: not traced).
        public var traceContext: Metadata = Metadata()
    }

    /// Where one queue's rows go. `deliver` returns when the subscriber applied the
    /// event. It throws `RPCError` UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED or
    /// RESOURCE_EXHAUSTED when the subscriber could not be reached or was busy: the
    /// subscriber is then down, not the event at fault, so nothing counts against the
    /// row's attempts. Any other error is the event's attempt.
    public struct Subscriber: Sendable {
        public let name: String
        public let deliver: @Sendable (Delivery) async throws -> Void

        public init(name: String, deliver: @escaping @Sendable (Delivery) async throws -> Void) {
            self.name = name
            self.deliver = deliver
        }
    }
}

/// Delivers a service's outbox: at least once, in order per partition, several
/// partitions at a time; a failing row is retried with back-off and after
/// `maxAttempts` becomes dead (listed and replayed by an operator); a subscriber
/// that cannot be reached is paused with back-off and its rows wait without
/// losing attempts. A row is deleted only after its subscriber answered, so a
/// crash at any point redelivers rather than loses: consumers apply each event
/// id once.
public final class OutboxDispatcher: Sendable {
    /// Attempts, backoff and concurrency of deliveries (CHATMESH_OUTBOX_MAX_ATTEMPTS, CHATMESH_OUTBOX_RETRY_MS).
    public struct Configuration: Sendable {
        /// Attempts (answered with an error) before a row is dead. CHATMESH_OUTBOX_MAX_ATTEMPTS.
        public var maxAttempts: Int64 = 10
        /// First retry after this, doubling up to `retryMaxMs`. CHATMESH_OUTBOX_RETRY_MS.
        public var retryBaseMs: Int64 = 1000
        public var retryMaxMs: Int64 = 300_000
        /// Rows read per pass, and partitions delivered at once.
        public var batchSize = 256
        public var concurrency = 16
        /// How often an idle queue looks again without being rung (retries coming due).
        public var idlePoll: Duration = .seconds(1)
        /// A subscriber that cannot be reached is tried again after this, doubling up to 30 s.
        public var unreachableBackoff: Duration = .milliseconds(250)
        /// A backlog this large is logged, and again each time it doubles.
        public var backlogWarning: Int64 = 100
        /// How long rows a replica took stay its own: another replica delivers them after
        /// this if the first died without finishing.
        public var claimMs: Int64 = 120_000

        public init() {}

        /// The defaults with CHATMESH_OUTBOX_MAX_ATTEMPTS and CHATMESH_OUTBOX_RETRY_MS applied.
        public init(environment: [String: String]) throws {
            if let text = environment["CHATMESH_OUTBOX_MAX_ATTEMPTS"] {
                guard let value = Int64(text), value >= 1 else {
                    throw ConfigurationError("CHATMESH_OUTBOX_MAX_ATTEMPTS=\(text): expected a whole number of attempts, at least 1")
                }
                maxAttempts = value
            }
            if let text = environment["CHATMESH_OUTBOX_RETRY_MS"] {
                guard let value = Int64(text), value >= 1 else {
                    throw ConfigurationError("CHATMESH_OUTBOX_RETRY_MS=\(text): expected milliseconds, at least 1")
                }
                retryBaseMs = value
            }
        }

        func retryDelayMs(afterAttempt attempt: Int64) -> Int64 {
            let shift = min(max(attempt - 1, 0), 30)
            return min(retryBaseMs << shift, retryMaxMs)
        }
    }

    /// What the dispatcher knows of a subscriber beyond its rows.
    public struct Health: Sendable, Hashable {
        public var reachable = true
        public var lastDeliveredAtMs: Int64 = 0
        public var delivered: Int64 = 0
        /// Why it could not be reached, while it cannot.
        public var unreachableError = ""

        public init() {}
    }

    let store: any SQLStore
    public let subscribers: [Outbox.Subscriber]
    /// Who this dispatcher is among replicas; the same after a restart (host and listening
    /// address), so a restarted replica takes up its own claims instead of waiting them out.
    let replica: String
    let configuration: Configuration
    let logger: Logger
    let doorbells: [String: Doorbell]
    let healthBySubscriber: Mutex<[String: Health]>

    /// - Parameter bell: the store's bell; its rings wake the dispatcher.
    public init(
        store: any SQLStore, subscribers: [Outbox.Subscriber], replica: String = SortableID.make("replica_"), bell: CommitBell? = nil,
        configuration: Configuration = Configuration(), logger: Logger
    ) {
        precondition(Set(subscribers.map(\.name)).count == subscribers.count, "two outbox subscribers share a name")
        self.store = store
        self.replica = replica
        self.subscribers = subscribers
        self.configuration = configuration
        self.logger = logger
        doorbells = Dictionary(uniqueKeysWithValues: subscribers.map { ($0.name, Doorbell()) })
        healthBySubscriber = Mutex(Dictionary(uniqueKeysWithValues: subscribers.map { ($0.name, Health()) }))
        let doorbells = doorbells
        bell?.listen {
            for doorbell in doorbells.values { doorbell.ring() }
        }
    }

    /// Says new rows were committed: idle queues look now instead of at their next poll.
    public func ring() {
        for doorbell in doorbells.values { doorbell.ring() }
    }

    /// A subscriber's health as the dispatcher last saw it: reachable, and its last error.
    public func health(_ subscriber: String) -> Health? {
        healthBySubscriber.withLock { $0[subscriber] }
    }

    /// Delivers until the task is cancelled; one loop per subscriber.
    public func run() async {
        await withDiscardingTaskGroup { group in
            for subscriber in subscribers {
                group.addTask { await self.loop(subscriber) }
            }
        }
    }

    enum PassOutcome {
        case more, idle, unreachable
    }

    func loop(_ subscriber: Outbox.Subscriber) async {
        let doorbell = doorbells[subscriber.name]!
        var unreachablePasses = 0
        var backlog = BacklogWatch()
        while !Task.isCancelled {
            var outcome = PassOutcome.idle
            do {
                outcome = try await pass(subscriber)
            } catch {
                if Task.isCancelled { return }
                logger.error("outbox pass failed", metadata: ["subscriber": "\(subscriber.name)", "error": "\(error)"])
            }
            await watchBacklog(subscriber.name, &backlog)
            switch outcome {
            case .more:
                unreachablePasses = 0
            case .idle:
                unreachablePasses = 0
                await doorbell.wait(upTo: configuration.idlePoll)
            case .unreachable:
                unreachablePasses += 1
                let delay = configuration.unreachableBackoff * (1 << min(unreachablePasses - 1, 7))
                try? await Task.sleep(for: min(delay, .seconds(30)))
            }
        }
    }

    /// Reads the rows that are due and free to go, delivers them (one partition's in
    /// order, partitions side by side), then deletes what was delivered and records what failed.
    func pass(_ subscriber: Outbox.Subscriber) async throws -> PassOutcome {
        let now = WallClock.nowMs()
        let name = subscriber.name
        let batch = configuration.batchSize
        let replica = replica
        let claimUntil = now + configuration.claimMs
        let rows = try await store.write { db -> [(partition: String, delivery: Outbox.Delivery)] in
            let rows = try await db.raw("""
                SELECT seq, shop_id, event_id, partition_key, kind, payload, attempts, created_at_ms, trace_context FROM outbox
                WHERE subscriber = \(bind: name) AND state = \(bind: Outbox.State.pending.rawValue) AND next_attempt_at_ms <= \(bind: now)
                  AND (claimed_until_ms <= \(bind: now) OR claimed_by = \(bind: replica))
                  AND partition_key NOT IN (SELECT partition_key FROM outbox WHERE subscriber = \(bind: name) AND next_attempt_at_ms > \(bind: now))
                  AND partition_key NOT IN (
                      SELECT partition_key FROM outbox WHERE subscriber = \(bind: name) AND claimed_until_ms > \(bind: now) AND claimed_by <> \(bind: replica))
                ORDER BY seq LIMIT \(literal: batch)
                """).all().map { row -> (partition: String, delivery: Outbox.Delivery) in (try row.string("partition_key"), try Outbox.delivery(row)) }
            if !rows.isEmpty {
                try await db.raw("""
                    UPDATE outbox SET claimed_by = \(bind: replica), claimed_until_ms = \(bind: claimUntil)
                    WHERE seq IN (\(binds: rows.map(\.delivery.seq)))
                    """).run()
            }
            return rows
        }
        if rows.isEmpty { return .idle }

        var partitions: [[Outbox.Delivery]] = []
        var index: [String: Int] = [:]
        for (partition, delivery) in rows {
            if let at = index[partition] {
                partitions[at].append(delivery)
            } else {
                index[partition] = partitions.count
                partitions.append([delivery])
            }
        }
        let results = await deliver(partitions, to: subscriber)
        try await record(results, subscriber: name, nowMs: WallClock.nowMs())
        if let error = results.unreachable {
            markUnreachable(name, error: error)
            return .unreachable
        }
        markReachable(name, delivered: Int64(results.delivered.count))
        return rows.count == configuration.batchSize ? .more : .idle
    }

    struct Results: Sendable {
        var delivered: [String] = []
        var failed: [(delivery: Outbox.Delivery, error: String, notBeforeMs: Int64)] = []
        var unreachable: String?
    }

    final class ResultsBox: Sendable {
        let results = Mutex(Results())
    }

    func deliver(_ partitions: [[Outbox.Delivery]], to subscriber: Outbox.Subscriber) async -> Results {
        let box = ResultsBox()
        // A bounded number of partitions in flight: a new one starts as each finishes.
        await withTaskGroup(of: Void.self) { group in
            var iterator = partitions.makeIterator()
            var running = 0
            while true {
                while running < configuration.concurrency, let batch = iterator.next() {
                    group.addTask { await Self.deliver(batch, to: subscriber, into: box) }
                    running += 1
                }
                if running == 0 { break }
                await group.next()
                running -= 1
            }
        }
        return box.results.withLock { $0 }
    }

    /// One partition's rows in order; the first failure stops the partition.
    static func deliver(_ batch: [Outbox.Delivery], to subscriber: Outbox.Subscriber, into box: ResultsBox) async {
        for delivery in batch {
            if box.results.withLock({ $0.unreachable != nil }) { return }
            do {
                if RPCTracing.isEnabled {
                    // The change's trace goes on: this delivery, and the subscriber's call under it.
                    try await RPCTracing.continuing(
                        "outbox \(subscriber.name)", kind: .delivery, from: delivery.traceContext,
                        attributes: ["messaging.system": "chatmesh-outbox", "messaging.destination.name": subscriber.name, "chatmesh.event.kind": delivery.kind]
                    ) {
                        try await subscriber.deliver(delivery)
                    }
                } else {
                    try await subscriber.deliver(delivery)
                }
                box.results.withLock { $0.delivered.append(delivery.seq) }
            } catch {
                switch OutboxAttempt.outcome(of: error) {
                case .unreachable(let why):
                    box.results.withLock { $0.unreachable = $0.unreachable ?? why }
                case .stopping:
                    box.results.withLock { $0.unreachable = $0.unreachable ?? "the dispatcher is stopping" }
                case .refused(let why):
                    // Later events of this partition wait behind it.
                    let notBefore = (error as? OutboxAttempt.RetryLater)?.afterMs ?? 0
                    box.results.withLock { $0.failed.append((delivery, why, notBefore)) }
                case .delivered:
                    break
                }
                return
            }
        }
    }

    func record(_ results: Results, subscriber: String, nowMs: Int64) async throws {
        let configuration = configuration
        let replica = replica
        let dead = try await store.write { db -> [(Outbox.Delivery, String)] in
            // What this pass claimed and did not deliver is free again (this replica's passes
            // for one subscriber follow each other, so every claim of it is this pass's).
            try await db.raw("""
                UPDATE outbox SET claimed_by = '', claimed_until_ms = 0 WHERE subscriber = \(bind: subscriber) AND claimed_by = \(bind: replica)
                """).run()
            var start = 0
            while start < results.delivered.count {
                let chunk = Array(results.delivered[start..<min(start + 500, results.delivered.count)])
                try await db.raw("DELETE FROM outbox WHERE seq IN (\(binds: chunk))").run()
                start += chunk.count
            }
            var dead: [(Outbox.Delivery, String)] = []
            for (delivery, error, notBefore) in results.failed {
                let (attempts, nextAt, state): (Int64, Int64, Outbox.State)
                switch OutboxAttempt.decide(.refused(error), attempts: delivery.attempts, nowMs: nowMs, policy: configuration, notBeforeMs: notBefore) {
                case .retry(let made, let at): (attempts, nextAt, state) = (made, at, .pending)
                case .dead(let made): (attempts, nextAt, state) = (made, Outbox.never, .dead)
                case .delete, .untouched: continue
                }
                try await db.raw("""
                    UPDATE outbox SET attempts = \(bind: attempts), last_error = \(bind: String(error.prefix(1000))), last_attempt_at_ms = \(bind: nowMs),
                        next_attempt_at_ms = \(bind: nextAt), state = \(bind: state.rawValue)
                    WHERE seq = \(bind: delivery.seq)
                    """).run()
                if state == .dead { dead.append((delivery, error)) }
            }
            return dead
        }
        for (delivery, error, _) in results.failed where !dead.contains(where: { $0.0.seq == delivery.seq }) {
            logger.warning("outbox event refused, will retry", metadata: [
                "subscriber": "\(subscriber)", "shop": "\(delivery.shopId)", "event_id": "\(delivery.eventId)",
                "attempt": "\(delivery.attempts + 1)", "error": "\(error)",
            ])
        }
        for (delivery, error) in dead {
            logger.error("outbox event dead after its last attempt; replay with chatmesh events --replay", metadata: [
                "subscriber": "\(subscriber)", "shop": "\(delivery.shopId)", "event_id": "\(delivery.eventId)",
                "attempts": "\(configuration.maxAttempts)", "error": "\(error)",
            ])
        }
    }

    func markUnreachable(_ subscriber: String, error: String) {
        let wasReachable = healthBySubscriber.withLock { all -> Bool in
            let was = all[subscriber]!.reachable
            all[subscriber]!.reachable = false
            all[subscriber]!.unreachableError = error
            return was
        }
        if wasReachable {
            logger.warning("outbox subscriber unreachable; its events wait", metadata: ["subscriber": "\(subscriber)", "error": "\(error)"])
        }
    }

    func markReachable(_ subscriber: String, delivered: Int64) {
        let wasUnreachable = healthBySubscriber.withLock { all -> Bool in
            let was = !all[subscriber]!.reachable
            all[subscriber]!.reachable = true
            all[subscriber]!.unreachableError = ""
            if delivered > 0 {
                all[subscriber]!.delivered += delivered
                all[subscriber]!.lastDeliveredAtMs = WallClock.nowMs()
            }
            return was
        }
        if wasUnreachable {
            logger.info("outbox subscriber reachable again", metadata: ["subscriber": "\(subscriber)"])
        }
    }

    /// Counts the queue every few seconds; a backlog past the warning size is logged,
    /// again each time it doubles, and once more when it has drained.
    struct BacklogWatch {
        var checkedAt: ContinuousClock.Instant?
        var warnedAt: Int64 = 0
    }

    func watchBacklog(_ subscriber: String, _ watch: inout BacklogWatch) async {
        let now = ContinuousClock.now
        if let checked = watch.checkedAt, now - checked < .seconds(5) { return }
        watch.checkedAt = now
        guard let row = try? await store.read({ db in
            try await db.raw("""
                SELECT COUNT(*) AS n, COALESCE(MIN(created_at_ms), 0) AS oldest FROM outbox
                WHERE subscriber = \(bind: subscriber) AND state = \(bind: Outbox.State.pending.rawValue)
                """).first()
        }), let pending = try? row.int64("n"), let oldest = try? row.int64("oldest") else { return }
        if pending >= configuration.backlogWarning && pending >= watch.warnedAt * 2 {
            watch.warnedAt = pending
            logger.warning("outbox backlog growing", metadata: [
                "subscriber": "\(subscriber)", "pending": "\(pending)", "oldest_age_ms": "\(WallClock.nowMs() - oldest)",
            ])
        } else if pending == 0 && watch.warnedAt > 0 {
            watch.warnedAt = 0
            logger.info("outbox backlog drained", metadata: ["subscriber": "\(subscriber)"])
        }
    }
}

/// Wakes one waiting loop early; a ring while nobody waits is kept for the next wait.
final class Doorbell: Sendable {
    private struct State {
        var rung = false
        var waiter: CheckedContinuation<Void, Never>?
        var generation: UInt64 = 0
    }

    private let state = Mutex(State())

    func ring() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.rung = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    func wait(upTo timeout: Duration) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let generation = state.withLock { state -> UInt64? in
                    if state.rung || Task.isCancelled {
                        state.rung = false
                        return nil
                    }
                    state.generation += 1
                    state.waiter = continuation
                    return state.generation
                }
                guard let generation else {
                    continuation.resume()
                    return
                }
                Task {
                    try? await Task.sleep(for: timeout)
                    self.wake(generation)
                }
            }
        } onCancel: {
            ring()
        }
    }

    private func wake(_ generation: UInt64) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.generation == generation, let waiter = state.waiter else { return nil }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }
}
