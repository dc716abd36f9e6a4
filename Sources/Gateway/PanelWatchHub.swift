import ChatMeshAPI
import Synchronization

/// R-PANEL-4: the gateway process's one view of the services' change feeds,
/// shared by every WatchPanel stream it serves. `ChangeFollower`s feed it (one
/// stream per service for every shop, however many staff watch); it tells each
/// watcher which of its sections went stale, and keeps the newest changes of each
/// feed so that a watcher that starts or resumes learns what changed since the
/// position its panel was read at.
public final class PanelWatchHub: Sendable {
    /// A position in each feed (PanelFeed order).
    public typealias Positions = [Int64]

    struct Recent {
        /// Every change after `covered` is in `changes`, oldest first.
        var covered: Int64 = .max
        var changes: [Change] = []
    }

    struct State {
        var positions: Positions = Array(repeating: 0, count: PanelFeed.allCases.count)
        var live: [Bool] = Array(repeating: false, count: PanelFeed.allCases.count)
        /// A feed whose service could not be reached since it was last live (marked once per outage).
        var unreachable: [Bool] = Array(repeating: false, count: PanelFeed.allCases.count)
        var recent: [Recent] = Array(repeating: Recent(), count: PanelFeed.allCases.count)
        var watchers: [UInt64: PanelWatcher] = [:]
        /// shop → customer → watchers.
        var byCustomer: [String: [String: Set<UInt64>]] = [:]
        /// shop → page → watchers (a page's tags changed).
        var byPage: [String: [String: Set<UInt64>]] = [:]
        var nextId: UInt64 = 0
        var draining = false
    }

    /// Changes kept per feed for watchers that start or resume.
    let memory: Int
    private let state = Mutex(State())

    /// About 40 MB for the three feeds once full (a change is some 200 bytes): a gateway's heap grows by
    /// that much over its first few hundred thousand changes, then stays.
    public static let defaultMemory = 65_536

    public init(memory: Int = PanelWatchHub.defaultMemory) {
        self.memory = memory
    }

    /// Where each feed is now: a panel read after this has seen every change up to it.
    public var positions: Positions { state.withLock { $0.positions } }

    public var watcherCount: Int { state.withLock { $0.watchers.count } }

    /// Whether the feed's follower is connected to its service now.
    public func isLive(_ feed: PanelFeed) -> Bool { state.withLock { $0.live[feed.rawValue] } }

    var isDraining: Bool { state.withLock { $0.draining } }

    // MARK: Watchers

    /// A watcher from now on, and what went stale for it after `since` (nil: not known, read everything),
    /// with the positions that answer covers. Registering and reading what changed happen under one
    /// lock with every delivery, so no change falls between them.
    func register(
        shop: String, pageId: String, conversationId: String, customerId: String, since: Positions
    ) -> (watcher: PanelWatcher, stale: Set<PanelSection>?, positions: Positions) {
        let (watcher, stale, positions, draining) = state.withLock { state in
            state.nextId += 1
            let watcher = PanelWatcher(id: state.nextId, shop: shop, pageId: pageId, conversationId: conversationId, customerId: customerId)
            state.watchers[watcher.id] = watcher
            state.byCustomer[shop, default: [:]][customerId, default: []].insert(watcher.id)
            state.byPage[shop, default: [:]][pageId, default: []].insert(watcher.id)
            return (watcher, Self.stale(state, since: since, for: watcher), state.positions, state.draining)
        }
        if draining { watcher.end() }
        return (watcher, stale, positions)
    }

    func unregister(_ watcher: PanelWatcher) {
        state.withLock { state in
            state.watchers[watcher.id] = nil
            state.byCustomer[watcher.shop]?[watcher.customerId]?.remove(watcher.id)
            if state.byCustomer[watcher.shop]?[watcher.customerId]?.isEmpty == true { state.byCustomer[watcher.shop]?[watcher.customerId] = nil }
            if state.byCustomer[watcher.shop]?.isEmpty == true { state.byCustomer[watcher.shop] = nil }
            state.byPage[watcher.shop]?[watcher.pageId]?.remove(watcher.id)
            if state.byPage[watcher.shop]?[watcher.pageId]?.isEmpty == true { state.byPage[watcher.shop]?[watcher.pageId] = nil }
            if state.byPage[watcher.shop]?.isEmpty == true { state.byPage[watcher.shop] = nil }
        }
    }

    /// The watcher's stale sections, taken, and the positions they cover: every change up to those
    /// positions is in this set or an earlier one (marks are made under the same lock as positions move).
    func take(_ watcher: PanelWatcher) -> (sections: Set<PanelSection>, positions: Positions) {
        state.withLock { state in (watcher.takeStale(), state.positions) }
    }

    /// What went stale for `watcher` after `since`; nil when that is no longer known.
    func stale(since: Positions, for watcher: PanelWatcher) -> Set<PanelSection>? {
        state.withLock { Self.stale($0, since: since, for: watcher) }
    }

    private static func stale(_ state: State, since: Positions, for watcher: PanelWatcher) -> Set<PanelSection>? {
        var stale: Set<PanelSection> = []
        for feed in PanelFeed.allCases {
            let after = since[feed.rawValue]
            guard after < state.positions[feed.rawValue] else { continue }
            let recent = state.recent[feed.rawValue]
            guard recent.covered <= after, let first = recent.changes.first else { return nil }
            var index = max(0, Int(after + 1 - first.position))
            while index < recent.changes.count {
                let change = recent.changes[index]
                if concerns(change, watcher) { stale.formUnion(PanelSection.stale(after: change.kind)) }
                index += 1
            }
        }
        return stale
    }

    static func concerns(_ change: Change, _ watcher: PanelWatcher) -> Bool {
        guard change.shopId == watcher.shop else { return false }
        if change.customerId.isEmpty { return change.pageId == watcher.pageId }
        return change.customerId == watcher.customerId
    }

    // MARK: What the followers report

    /// Marks every watcher's sections of `feed`, under the lock; returns whom to wake.
    private static func markAll(_ state: State, _ feed: PanelFeed) -> [PanelWatcher.Wake] {
        state.watchers.values.compactMap { $0.mark(feed.sections) }
    }

    /// A feed is (again) streaming from `position`. Coming back from down (or starting
    /// fresh, when changes before `position` were never seen), every watcher's sections
    /// of that feed are read again: they may have been shown unavailable, or missed.
    func up(_ feed: PanelFeed, position: Int64, resumed: Bool) {
        let wakes = state.withLock { state -> [PanelWatcher.Wake] in
            let wasLive = state.live[feed.rawValue]
            state.live[feed.rawValue] = true
            state.unreachable[feed.rawValue] = false
            if !resumed {
                state.recent[feed.rawValue] = Recent(covered: position, changes: [])
                state.positions[feed.rawValue] = position
            }
            return wasLive ? [] : Self.markAll(state, feed)
        }
        for wake in wakes { wake() }
    }

    /// A feed's stream failed: its sections are read again (and shown unavailable if its service is down).
    func down(_ feed: PanelFeed) {
        let wakes = state.withLock { state -> [PanelWatcher.Wake] in
            guard state.live[feed.rawValue] else { return [] }
            state.live[feed.rawValue] = false
            return Self.markAll(state, feed)
        }
        for wake in wakes { wake() }
    }

    /// The feed's service could not be reached: its sections are read again once per outage, so that
    /// a service that dies while its feed is reconnecting still shows as unavailable.
    func unreachable(_ feed: PanelFeed) {
        let wakes = state.withLock { state -> [PanelWatcher.Wake] in
            guard !state.live[feed.rawValue], !state.unreachable[feed.rawValue] else { return [] }
            state.unreachable[feed.rawValue] = true
            return Self.markAll(state, feed)
        }
        for wake in wakes { wake() }
    }

    /// The service could not say what changed (its retained window passed us): everything of that feed is stale.
    func reset(_ feed: PanelFeed, through: Int64) {
        let wakes = state.withLock { state -> [PanelWatcher.Wake] in
            state.recent[feed.rawValue] = Recent(covered: through, changes: [])
            state.positions[feed.rawValue] = through
            return Self.markAll(state, feed)
        }
        for wake in wakes { wake() }
    }

    /// Changes of a feed, in position order, through `through`.
    func deliver(_ feed: PanelFeed, _ changes: [Change], through: Int64) {
        let wakes = state.withLock { state -> [PanelWatcher.Wake] in
            // Moved out and back, not copied: a copy of 65,536 changes per delivery is what a shared array would cost.
            var recent = state.recent[feed.rawValue]
            state.recent[feed.rawValue] = Recent()
            if let first = changes.first, let last = recent.changes.last, first.position != last.position + 1 {
                // Other shops' changes were passed over (only a shop's feed does that) or a gap: keep only what follows.
                recent = Recent(covered: first.position - 1, changes: [])
            } else if recent.changes.isEmpty, let first = changes.first, recent.covered != first.position - 1 {
                recent.covered = first.position - 1
            }
            recent.changes.append(contentsOf: changes)
            if recent.changes.count > memory + memory / 4 {
                let drop = recent.changes.count - memory
                recent.covered = recent.changes[drop - 1].position
                recent.changes.removeFirst(drop)
            }
            state.recent[feed.rawValue] = recent
            state.positions[feed.rawValue] = max(state.positions[feed.rawValue], through)
            var marks: [UInt64: Set<PanelSection>] = [:]
            for change in changes {
                let ids: Set<UInt64>? = change.customerId.isEmpty
                    ? state.byPage[change.shopId]?[change.pageId]
                    : state.byCustomer[change.shopId]?[change.customerId]
                guard let ids else { continue }
                let stale = PanelSection.stale(after: change.kind)
                for id in ids { marks[id, default: []].formUnion(stale) }
            }
            return marks.compactMap { id, sections in state.watchers[id]?.mark(sections) }
        }
        for wake in wakes { wake() }
    }

    /// The gateway is stopping: every watch ends, to resume on another gateway.
    public func drain() {
        let watchers = state.withLock { state in
            state.draining = true
            return Array(state.watchers.values)
        }
        for watcher in watchers { watcher.end() }
    }
}

/// One WatchPanel stream's stale sections, marked by the hub (under its lock) and taken by the
/// stream. Marks that arrive while the stream is busy sending accumulate: a slow reader gets the
/// newest state of each section once, never a queue of versions.
final class PanelWatcher: Sendable {
    /// Resumes a waiting stream; called once the hub's lock is released.
    typealias Wake = @Sendable () -> Void

    let id: UInt64
    let shop: String
    let pageId: String
    let conversationId: String
    let customerId: String

    private struct State {
        var stale: Set<PanelSection> = []
        var waiter: CheckedContinuation<Bool, Never>?
        var ended = false
    }

    private let state = Mutex(State())

    init(id: UInt64, shop: String, pageId: String, conversationId: String, customerId: String) {
        self.id = id
        self.shop = shop
        self.pageId = pageId
        self.conversationId = conversationId
        self.customerId = customerId
    }

    /// Adds stale sections; returns the waiting stream's wake-up, for the caller to run unlocked.
    func mark(_ sections: Set<PanelSection>) -> Wake? {
        guard !sections.isEmpty else { return nil }
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            state.stale.formUnion(sections)
            defer { state.waiter = nil }
            return state.waiter
        }
        guard let waiter else { return nil }
        return { waiter.resume(returning: true) }
    }

    func takeStale() -> Set<PanelSection> {
        state.withLock { state in
            defer { state.stale = [] }
            return state.stale
        }
    }

    /// Ends the stream (the gateway drains, or the call was cancelled): `waitForStale` answers false.
    func end() {
        let waiter = state.withLock { state in
            state.ended = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: false)
    }

    /// Waits until some section is stale (true), or the watch is to end (false).
    func waitForStale() async -> Bool {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let ready = state.withLock { state -> Bool? in
                    if state.ended || Task.isCancelled { return false }
                    if !state.stale.isEmpty { return true }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            end()
        }
    }
}
