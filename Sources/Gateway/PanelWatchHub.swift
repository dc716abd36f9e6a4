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

    public init(memory: Int = 65_536) {
        self.memory = memory
    }

    /// Where each feed is now: a panel read after this has seen every change up to it.
    public var positions: Positions { state.withLock { $0.positions } }

    public var watcherCount: Int { state.withLock { $0.watchers.count } }

    public func isLive(_ feed: PanelFeed) -> Bool { state.withLock { $0.live[feed.rawValue] } }

    var isDraining: Bool { state.withLock { $0.draining } }

    // MARK: Watchers

    func register(shop: String, pageId: String, conversationId: String, customerId: String) -> PanelWatcher {
        let (watcher, draining) = state.withLock { state -> (PanelWatcher, Bool) in
            state.nextId += 1
            let watcher = PanelWatcher(id: state.nextId, shop: shop, pageId: pageId, conversationId: conversationId, customerId: customerId)
            state.watchers[watcher.id] = watcher
            state.byCustomer[shop, default: [:]][customerId, default: []].insert(watcher.id)
            state.byPage[shop, default: [:]][pageId, default: []].insert(watcher.id)
            return (watcher, state.draining)
        }
        if draining { watcher.end() }
        return watcher
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

    /// What went stale for `watcher` after `since`; nil when that is no longer known
    /// (older than the changes kept, or a feed restarted): then every section is.
    func stale(since: Positions, for watcher: PanelWatcher) -> Set<PanelSection>? {
        state.withLock { state -> Set<PanelSection>? in
            var stale: Set<PanelSection> = []
            for feed in PanelFeed.allCases {
                let after = since[feed.rawValue]
                guard after < state.positions[feed.rawValue] else { continue }
                let recent = state.recent[feed.rawValue]
                guard recent.covered <= after, let first = recent.changes.first else { return nil }
                var index = max(0, Int(after + 1 - first.position))
                while index < recent.changes.count {
                    let change = recent.changes[index]
                    if Self.concerns(change, watcher) { stale.formUnion(PanelSection.stale(after: change.kind)) }
                    index += 1
                }
            }
            return stale
        }
    }

    static func concerns(_ change: Change, _ watcher: PanelWatcher) -> Bool {
        guard change.shopId == watcher.shop else { return false }
        if change.customerId.isEmpty { return change.pageId == watcher.pageId }
        return change.customerId == watcher.customerId
    }

    // MARK: What the followers report

    /// A feed is (again) streaming from `position`. Coming back from down (or starting
    /// fresh, when changes before `position` were never seen), every watcher's sections
    /// of that feed are read again: they may have been shown unavailable, or missed.
    func up(_ feed: PanelFeed, position: Int64, resumed: Bool) {
        let marks = state.withLock { state -> [(PanelWatcher, Set<PanelSection>)] in
            let wasLive = state.live[feed.rawValue]
            state.live[feed.rawValue] = true
            if !resumed {
                state.recent[feed.rawValue] = Recent(covered: position, changes: [])
                state.positions[feed.rawValue] = position
            }
            guard !wasLive else { return [] }
            return state.watchers.values.map { ($0, feed.sections) }
        }
        for (watcher, sections) in marks { watcher.mark(sections) }
    }

    /// A feed's stream failed: its sections are read again (and shown unavailable if its service is down).
    func down(_ feed: PanelFeed) {
        let marks = state.withLock { state -> [(PanelWatcher, Set<PanelSection>)] in
            guard state.live[feed.rawValue] else { return [] }
            state.live[feed.rawValue] = false
            return state.watchers.values.map { ($0, feed.sections) }
        }
        for (watcher, sections) in marks { watcher.mark(sections) }
    }

    /// The service could not say what changed (its retained window passed us): everything of that feed is stale.
    func reset(_ feed: PanelFeed, through: Int64) {
        let marks = state.withLock { state -> [(PanelWatcher, Set<PanelSection>)] in
            state.recent[feed.rawValue] = Recent(covered: through, changes: [])
            state.positions[feed.rawValue] = through
            return state.watchers.values.map { ($0, feed.sections) }
        }
        for (watcher, sections) in marks { watcher.mark(sections) }
    }

    /// Changes of a feed, in position order, through `through`.
    func deliver(_ feed: PanelFeed, _ changes: [Change], through: Int64) {
        let marks = state.withLock { state -> [UInt64: Set<PanelSection>] in
            var marks: [UInt64: Set<PanelSection>] = [:]
            var recent = state.recent[feed.rawValue]
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
            for change in changes {
                let ids: Set<UInt64>? = change.customerId.isEmpty
                    ? state.byPage[change.shopId]?[change.pageId]
                    : state.byCustomer[change.shopId]?[change.customerId]
                guard let ids else { continue }
                let stale = PanelSection.stale(after: change.kind)
                for id in ids { marks[id, default: []].formUnion(stale) }
            }
            return marks
        }
        guard !marks.isEmpty else { return }
        let watchers = state.withLock { state in marks.keys.compactMap { state.watchers[$0] } }
        for watcher in watchers { watcher.mark(marks[watcher.id] ?? []) }
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

/// One WatchPanel stream's stale sections, marked by the hub and taken by the stream.
/// Marks made while the stream is busy sending accumulate: a slow reader gets the
/// newest state of each section once, never a queue of versions.
final class PanelWatcher: Sendable {
    let id: UInt64
    let shop: String
    let pageId: String
    let conversationId: String
    let customerId: String

    private struct State {
        var stale: Set<PanelSection> = []
        var waiter: CheckedContinuation<Set<PanelSection>?, Never>?
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

    func mark(_ sections: Set<PanelSection>) {
        guard !sections.isEmpty else { return }
        let (waiter, taken) = state.withLock { state -> (CheckedContinuation<Set<PanelSection>?, Never>?, Set<PanelSection>) in
            state.stale.formUnion(sections)
            guard let waiter = state.waiter else { return (nil, []) }
            state.waiter = nil
            defer { state.stale = [] }
            return (waiter, state.stale)
        }
        waiter?.resume(returning: taken)
    }

    /// Ends the stream (the gateway drains): `next` answers nil.
    func end() {
        let waiter = state.withLock { state in
            state.ended = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// The sections stale since the last call, once there are any; nil when the watch is to end.
    func next() async -> Set<PanelSection>? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Set<PanelSection>?, Never>) in
                let ready = state.withLock { state -> Set<PanelSection>?? in
                    if state.ended || Task.isCancelled { return .some(nil) }
                    if !state.stale.isEmpty {
                        defer { state.stale = [] }
                        return .some(state.stale)
                    }
                    state.waiter = continuation
                    return .none
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            end()
        }
    }
}
