import ChatMeshAPI
import MeshRPC

/// R-PANEL-4: one WatchPanel stream. The whole panel first (or, resuming, what
/// changed since the token); then, each time the hub marks sections stale, those
/// sections read again and sent, with every section that cannot be served now.
/// Marks that arrive while an update is on its way are gathered into the next
/// one, so a slow reader costs one pending set, never a queue; one that makes no
/// room for `stallLimit` is cut off (RESOURCE_EXHAUSTED) and may resume.
struct PanelWatch: Sendable {
    let composer: PanelComposer
    let hub: PanelWatchHub
    let stallLimit: Duration

    /// What a resume token holds: each feed's position when the update was read, the
    /// conversation's customer, and the sections unavailable then (read again on resume).
    struct Token: Equatable {
        var positions: PanelWatchHub.Positions
        var customerId: String
        var unavailable: Set<PanelSection>

        var text: String {
            (["wp1"] + positions.map(String.init) + [String(PanelSection.mask(unavailable)), customerId]).joined(separator: ".")
        }

        init(positions: PanelWatchHub.Positions, customerId: String, unavailable: Set<PanelSection>) {
            self.positions = positions
            self.customerId = customerId
            self.unavailable = unavailable
        }

        init?(_ text: String) {
            let parts = text.split(separator: ".", maxSplits: PanelFeed.allCases.count + 2, omittingEmptySubsequences: false)
            guard parts.count == PanelFeed.allCases.count + 3, parts[0] == "wp1" else { return nil }
            let numbers = parts[1...PanelFeed.allCases.count + 1].compactMap { Int64($0) }
            guard numbers.count == PanelFeed.allCases.count + 1, numbers.allSatisfy({ $0 >= 0 }), !parts.last!.isEmpty else { return nil }
            positions = Array(numbers.prefix(PanelFeed.allCases.count))
            unavailable = PanelSection.sections(mask: Int(truncatingIfNeeded: numbers.last!))
            customerId = String(parts.last!)
        }
    }

    /// Where a stream is between updates: all it keeps while it waits (a watcher's memory is mostly
    /// its stream; no panel is held between updates).
    struct Watching {
        let watcher: PanelWatcher
        var unavailable: [PanelSection: UnavailableSection] = [:]
    }

    func run(shop: String, pageId: String, conversationId: String, resumeToken: String, responses: RPCWriter<PanelUpdate>) async throws {
        var resume: Token?
        if !resumeToken.isEmpty {
            guard let token = Token(resumeToken) else { throw RPCError.invalidArgument("resume_token: not a token WatchPanel gave") }
            resume = token
        }
        let resumeFrom = resume
        var watching = try await Self.inChildTask {
            try await start(shop: shop, pageId: pageId, conversationId: conversationId, resume: resumeFrom, responses: responses)
        }
        defer { hub.unregister(watching.watcher) }
        while await watching.watcher.waitForStale() {
            let current = watching
            watching.unavailable = try await Self.inChildTask {
                var next = current
                try await send(&next, responses: responses)
                return next.unavailable
            }
        }
        try Task.checkCancellation()
        throw RPCError.unavailable("the gateway is shutting down: resume with the last resume_token")
    }

    /// Runs `body` in a child task, so that what its reads stack up is freed when it ends. A task keeps
    /// every slab its async stack ever grew to until the task ends (Swift's task allocator), and reading a
    /// panel grows it to ~15 KB of frames: done in the watcher's own task, a parked watcher kept them all
    /// (16 KiB per idle watcher at 10,000, measured with heaptrack, against the ~4 KiB its wait needs).
    static func inChildTask<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask(operation: body)
            return try await group.next()!
        }
    }

    /// Registers the watcher and sends the first update: the whole panel, or what changed since the
    /// resume token. A token's positions promise that every change up to them is in that update or an
    /// earlier one: they are taken with the marks (PanelWatchHub.take), or before the panel is read.
    func start(shop: String, pageId: String, conversationId: String, resume: Token?, responses: RPCWriter<PanelUpdate>) async throws -> Watching {
        var first: PanelUpdate
        let positions: PanelWatchHub.Positions
        var stale: Set<PanelSection> = []
        var watching: Watching
        if let resume, try await composer.conversation(shop: shop, pageId: pageId, conversationId: conversationId).customerId == resume.customerId {
            let registered = hub.register(shop: shop, pageId: pageId, conversationId: conversationId, customerId: resume.customerId, since: resume.positions)
            watching = Watching(watcher: registered.watcher)
            positions = registered.positions
            // The first update is what changed since the token, read now (possibly nothing).
            let read = (registered.stale ?? Set(PanelSection.allCases)).union(resume.unavailable)
            do {
                let part = try await composer.sections(read, shop: shop, conversationId: conversationId, customerId: resume.customerId)
                first = update(part, read: read, unavailable: &watching.unavailable)
            } catch {
                hub.unregister(watching.watcher)
                throw error
            }
        } else {
            positions = hub.positions
            let panel = try await composer.panel(shop: shop, pageId: pageId, conversationId: conversationId)
            let customerId = panel.conversation?.customerId ?? ""
            let registered = hub.register(shop: shop, pageId: pageId, conversationId: conversationId, customerId: customerId, since: positions)
            watching = Watching(watcher: registered.watcher)
            // Changed while the panel was read: read again right after it.
            stale = registered.stale ?? Set(PanelSection.allCases)
            first = update(panel, read: Set(PanelSection.allCases), unavailable: &watching.unavailable)
        }
        first.resumeToken = Token(positions: positions, customerId: watching.watcher.customerId, unavailable: Set(watching.unavailable.keys)).text
        do {
            try await responses.write(first, stallLimit: stallLimit)
        } catch {
            hub.unregister(watching.watcher)
            throw error
        }
        watching.watcher.mark(stale)?()
        return watching
    }

    /// The stale sections, read again and sent.
    func send(_ watching: inout Watching, responses: RPCWriter<PanelUpdate>) async throws {
        let (sections, positions) = hub.take(watching.watcher)
        guard !sections.isEmpty else { return }
        let watcher = watching.watcher
        let part = try await composer.sections(sections, shop: watcher.shop, conversationId: watcher.conversationId, customerId: watcher.customerId)
        var next = update(part, read: sections, unavailable: &watching.unavailable)
        next.resumeToken = Token(positions: positions, customerId: watcher.customerId, unavailable: Set(watching.unavailable.keys)).text
        try await responses.write(next, stallLimit: stallLimit)
    }

    /// The update for `panel`, which holds the sections `read` (or says why one could not be),
    /// and the sections unavailable now.
    func update(_ panel: Panel, read: Set<PanelSection>, unavailable: inout [PanelSection: UnavailableSection]) -> PanelUpdate {
        var panel = panel
        for section in read { unavailable[section] = nil }
        for entry in panel.unavailableSections {
            if let section = PanelSection(rawValue: entry.section) { unavailable[section] = entry }
        }
        panel.unavailableSections = []
        let changed = read.subtracting(unavailable.keys).sorted().map(\.rawValue)
        return PanelUpdate(
            panel: panel, changedSections: changed, unavailableSections: unavailable.keys.sorted().map { unavailable[$0]! }
        )
    }
}
