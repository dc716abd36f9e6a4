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

    func run(shop: String, pageId: String, conversationId: String, resumeToken: String, responses: RPCWriter<PanelUpdate>) async throws {
        var resume: Token?
        if !resumeToken.isEmpty {
            guard let token = Token(resumeToken) else { throw RPCError.invalidArgument("resume_token: not a token WatchPanel gave") }
            resume = token
        }
        var unavailable: [PanelSection: UnavailableSection] = [:]
        var positions = hub.positions
        let watcher: PanelWatcher
        var first = PanelUpdate()
        var stale: Set<PanelSection>
        let customerId: String
        if let resume, try await composer.conversation(shop: shop, pageId: pageId, conversationId: conversationId).customerId == resume.customerId {
            customerId = resume.customerId
            watcher = hub.register(shop: shop, pageId: pageId, conversationId: conversationId, customerId: customerId)
            stale = (hub.stale(since: resume.positions, for: watcher) ?? Set(PanelSection.allCases)).union(resume.unavailable)
            // The first update is what changed since the token, read now (possibly nothing).
            positions = hub.positions
            let part = try await composer.sections(stale, shop: shop, conversationId: conversationId, customerId: customerId)
            first = update(part, read: stale, unavailable: &unavailable)
            stale = []
        } else {
            let panel = try await composer.panel(shop: shop, pageId: pageId, conversationId: conversationId)
            customerId = panel.conversation?.customerId ?? ""
            watcher = hub.register(shop: shop, pageId: pageId, conversationId: conversationId, customerId: customerId)
            stale = hub.stale(since: positions, for: watcher) ?? Set(PanelSection.allCases)
            first = update(panel, read: Set(PanelSection.allCases), unavailable: &unavailable)
        }
        defer { hub.unregister(watcher) }
        first.resumeToken = Token(positions: positions, customerId: customerId, unavailable: Set(unavailable.keys)).text
        try await responses.write(first, stallLimit: stallLimit)
        // Changed while the first update was read: read again at once.
        watcher.mark(stale)
        while let sections = await watcher.next() {
            let positions = hub.positions
            let part = try await composer.sections(sections, shop: shop, conversationId: conversationId, customerId: customerId)
            var next = update(part, read: sections, unavailable: &unavailable)
            next.resumeToken = Token(positions: positions, customerId: customerId, unavailable: Set(unavailable.keys)).text
            try await responses.write(next, stallLimit: stallLimit)
        }
        try Task.checkCancellation()
        throw RPCError.unavailable("the gateway is shutting down: resume with the last resume_token")
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
