import ChatMeshAPI
@testable import Gateway
import Testing

/// R-PANEL-4: what the hub marks stale for whom, what it remembers for watchers that start or resume,
/// and the resume token's round trip.
@Suite struct PanelWatchHubTests {
    static func change(_ position: Int64, _ kind: Change.Kind, shop: String = "s", page: String = "p", customer: String) -> Change {
        Change(position: position, shopId: shop, kind: kind, pageId: page, customerId: customer)
    }

    /// What a stream does: waits for stale sections, then takes them.
    static func next(_ hub: PanelWatchHub, _ watcher: PanelWatcher) async -> Set<PanelSection>? {
        guard await watcher.waitForStale() else { return nil }
        return hub.take(watcher).sections
    }

    @Test func takenSectionsCoverEveryChangeUpToTheirPositions() {
        let hub = PanelWatchHub()
        hub.up(.conversation, position: 5, resumed: false)
        hub.deliver(.conversation, [Self.change(6, .notes, customer: "hoa")], through: 6)
        // Registered since position 5: the note of position 6 is already stale, and the positions say 6.
        let registered = hub.register(shop: "s", pageId: "p", conversationId: "cv1", customerId: "hoa", since: [5, 0, 0])
        #expect(registered.stale == [.notes] && registered.positions == [6, 0, 0])
        hub.deliver(.conversation, [Self.change(7, .customer, customer: "hoa")], through: 7)
        let taken = hub.take(registered.watcher)
        #expect(taken.sections == [.customer, .referral, .customFields, .conversation] && taken.positions == [7, 0, 0])
        #expect(hub.take(registered.watcher).sections.isEmpty)
    }

    @Test func aChangeMarksOnlyItsCustomersWatchersAndOnlyTheSectionsItStales() async {
        let hub = PanelWatchHub()
        hub.up(.order, position: 10, resumed: false)
        hub.up(.conversation, position: 0, resumed: false)
        let hoa = hub.register(shop: "s", pageId: "p", conversationId: "cv1", customerId: "hoa", since: hub.positions).watcher
        let duc = hub.register(shop: "s", pageId: "p", conversationId: "cv2", customerId: "duc", since: hub.positions).watcher
        let otherShop = hub.register(shop: "t", pageId: "p", conversationId: "cv3", customerId: "hoa", since: hub.positions).watcher
        hub.deliver(.order, [Self.change(11, .orders, customer: "hoa")], through: 11)
        #expect(await Self.next(hub, hoa) == [.orderSummary, .carts])
        // A page's tags changed: every watcher of the page, in that shop only.
        hub.deliver(.conversation, [Self.change(1, .tags, customer: "")], through: 1)
        #expect(await Self.next(hub, hoa) == [.tags, .conversation, .activity])
        #expect(await Self.next(hub, duc) == [.tags, .conversation, .activity])
        // Marks gather while nobody takes them: one set, the union.
        hub.deliver(.conversation, [Self.change(2, .notes, customer: "duc"), Self.change(3, .message, customer: "duc")], through: 3)
        hub.deliver(.conversation, [Self.change(4, .notes, customer: "duc")], through: 4)
        #expect(await Self.next(hub, duc) == [.notes, .conversation, .messages])
        otherShop.end()
        #expect(await Self.next(hub, otherShop) == nil)
        #expect(hub.positions == [4, 11, 0])
        hub.unregister(hoa)
        hub.unregister(duc)
        hub.unregister(otherShop)
        #expect(hub.watcherCount == 0)
    }

    @Test func staleSinceAPositionIsKnownWhileTheChangesAreKept() {
        let hub = PanelWatchHub(memory: 4)
        hub.up(.loyalty, position: 100, resumed: false)
        let watcher = hub.register(shop: "s", pageId: "p", conversationId: "cv1", customerId: "hoa", since: hub.positions).watcher
        let before = hub.positions
        hub.deliver(.loyalty, [Self.change(101, .member, customer: "duc")], through: 101)
        #expect(hub.stale(since: before, for: watcher) == [])
        hub.deliver(.loyalty, [Self.change(102, .member, customer: "hoa")], through: 102)
        #expect(hub.stale(since: before, for: watcher) == [.member])
        #expect(hub.stale(since: hub.positions, for: watcher) == [])
        // Past what is kept (4, trimmed a quarter at a time): unknown, so the caller reads everything.
        hub.deliver(.loyalty, (103...110).map { Self.change($0, .member, customer: "duc") }, through: 110)
        #expect(hub.stale(since: before, for: watcher) == nil)
        // A feed the service reset: everything before is unknown too.
        let now = hub.positions
        hub.reset(.loyalty, through: 500)
        #expect(hub.stale(since: now, for: watcher) == nil)
    }

    @Test func aFeedGoingDownOrComingBackMarksItsSectionsForEveryWatcher() async {
        let hub = PanelWatchHub()
        hub.up(.order, position: 1, resumed: false)
        let watcher = hub.register(shop: "s", pageId: "p", conversationId: "cv1", customerId: "hoa", since: hub.positions).watcher
        hub.down(.order)
        #expect(await Self.next(hub, watcher) == [.carts, .orderSummary])
        hub.down(.order)   // already down: nothing new
        // Reconnecting failed: the service is not there (it may have died after the feed went down).
        hub.unreachable(.order)
        #expect(await Self.next(hub, watcher) == [.carts, .orderSummary])
        hub.unreachable(.order)   // once per outage
        hub.up(.order, position: 1, resumed: true)
        #expect(await Self.next(hub, watcher) == [.carts, .orderSummary])
        #expect(hub.isLive(.order))
        hub.drain()
        #expect(await Self.next(hub, watcher) == nil)
    }

    @Test func aResumeTokenRoundTrips() {
        let token = PanelWatch.Token(positions: [12, 0, 7], customerId: "cu_01.x", unavailable: [.member, .carts])
        #expect(PanelWatch.Token(token.text) == token)
        #expect(PanelWatch.Token("wp1.1.2") == nil)
        #expect(PanelWatch.Token("wp1.1.2.x.0.cu") == nil)
        #expect(PanelWatch.Token("wp1.1.2.3.0.") == nil)
        #expect(PanelWatch.Token("wp1.-1.2.3.0.cu") == nil)
    }
}
