import ChatMeshAPI
import MeshRPC
import NIOCore

/// R-PANEL-1..2: one conversation's panel from conversation-, order- and
/// loyalty-svc. conversation-svc is asked first, once, for everything it holds
/// (GetConversationContext: the conversation names the customer, and without it
/// there is no panel); then order-svc's and loyalty-svc's sections are asked for
/// at once under one deadline inside the caller's, and a section whose service is
/// slow, down or erroring is listed in `unavailable_sections` with the status it
/// gave while the rest is served. Calls carry the caller's token (MeshRPC
/// forwards it), so every service checks the shop itself.
public struct PanelComposer: Sendable {
    /// The three services a panel is read from.
    public struct Clients: Sendable {
        public var conversation: ConversationService.Client
        public var order: OrderService.Client
        public var loyalty: LoyaltyService.Client

        public init(conversation: any RPCChannel, order: any RPCChannel, loyalty: any RPCChannel) {
            self.conversation = ConversationService.Client(channel: conversation)
            self.order = OrderService.Client(channel: order)
            self.loyalty = LoyaltyService.Client(channel: loyalty)
        }
    }

    let clients: Clients
    /// The longest a section may take (the caller's deadline may be sooner).
    let sectionTimeout: Duration
    /// Where each section's time is recorded, when someone wants to know.
    let timings: SectionTimings?
    /// Sections that could not be served, counted for /metrics when metrics are on.
    let metrics: PanelMetrics?

    public init(clients: Clients, sectionTimeout: Duration = .milliseconds(500), timings: SectionTimings? = nil, metrics: PanelMetrics? = nil) {
        self.clients = clients
        self.sectionTimeout = sectionTimeout
        self.timings = timings
        self.metrics = metrics
    }

    /// How many items of the lists a panel shows.
    static let notes: Int32 = 20
    static let activity: Int32 = 20
    static let messages: Int32 = 20
    static let recentOrders: Int32 = 5

    enum Section: Sendable {
        case carts([Cart])
        case orderSummary(OrderSummary)
        case orders([Cart], OrderSummary)
        case member(Member?)
    }

    /// The whole chat tool panel (R-PANEL-1..3): every section read at once, each within its own deadline; a section whose service fails or is late is marked unavailable, never the whole panel.
    public func panel(shop: String, pageId: String, conversationId: String) async throws(RPCError) -> Panel {
        let started = ContinuousClock.now
        // One call for conversation-svc's five sections: each call crossing processes costs more than
        // the reads behind it (README, Performance). Without it there is no panel, so it may take longer
        // than an optional section — up to the caller's deadline, at most `conversationTimeout`: a burst
        // queued at conversation-svc is served late rather than refused at the section deadline.
        let context = try await clients.conversation.getConversationContext(
            GetConversationContextRequest(
                shopId: shop, conversationId: conversationId, notesLimit: Self.notes, activityLimit: Self.activity, messagesLimit: Self.messages
            ),
            options: CallOptions(timeout: Self.timeAmount(sectionTimeout * Self.conversationTimeoutFactor))
        )
        timings?.record("conversation", milliseconds: Self.milliseconds(since: started))
        let conversation = context.conversation ?? Conversation()
        if !pageId.isEmpty && conversation.pageId != pageId {
            throw .notFound("conversation_id: no conversation \(conversationId) on page \(pageId)")
        }
        var panel = Panel()
        Self.apply(context, PanelSection.fromConversationService, to: &panel)
        await fill([.carts, .orderSummary, .member], shop: shop, customer: conversation.customerId, into: &panel)
        metrics?.count(panel.unavailableSections)
        return panel
    }

    /// R-PANEL-4: the sections named, read again, for a panel already shown: only they are set,
    /// and each that could not be served is in `unavailable_sections` (R-PANEL-2), conversation-svc's
    /// too. Throws only what the watcher itself must hear: its token refused, the conversation gone.
    public func sections(_ wanted: Set<PanelSection>, shop: String, conversationId: String, customerId: String) async throws(RPCError) -> Panel {
        var panel = Panel()
        let fromConversation = wanted.intersection(PanelSection.fromConversationService)
        if !fromConversation.isEmpty {
            let started = ContinuousClock.now
            do throws(RPCError) {
                let context: ConversationContext
                // A message changes the conversation and its messages alone, the most frequent change: they are
                // all that is read then (`messages_only`), not the page's tags, the notes and the activity besides.
                if fromConversation == [.conversation] {
                    let conversation = try await clients.conversation.getConversation(
                        GetConversationRequest(shopId: shop, conversationId: conversationId), options: options
                    )
                    context = ConversationContext(conversation: conversation)
                } else {
                    context = try await clients.conversation.getConversationContext(
                        GetConversationContextRequest(
                            shopId: shop, conversationId: conversationId, notesLimit: Self.notes, activityLimit: Self.activity, messagesLimit: Self.messages,
                            messagesOnly: fromConversation.isSubset(of: [.conversation, .messages])
                        ),
                        options: options
                    )
                }
                timings?.record("conversation", milliseconds: Self.milliseconds(since: started))
                Self.apply(context, fromConversation, to: &panel)
            } catch where [.unauthenticated, .permissionDenied, .notFound, .invalidArgument].contains(error.code) {
                throw error
            } catch {
                for section in fromConversation.sorted() {
                    panel.unavailableSections.append(UnavailableSection(section: section.rawValue, code: error.code.name, reason: error.message))
                }
            }
        }
        await fill(wanted.subtracting(PanelSection.fromConversationService), shop: shop, customer: customerId, into: &panel)
        metrics?.count(panel.unavailableSections)
        return panel
    }

    /// The conversation alone (a resumed watch learns its customer), checked against the page.
    func conversation(shop: String, pageId: String, conversationId: String) async throws(RPCError) -> Conversation {
        let conversation = try await clients.conversation.getConversation(
            GetConversationRequest(shopId: shop, conversationId: conversationId), options: CallOptions(timeout: Self.timeAmount(sectionTimeout * Self.conversationTimeoutFactor))
        )
        if !pageId.isEmpty && conversation.pageId != pageId {
            throw .notFound("conversation_id: no conversation \(conversationId) on page \(pageId)")
        }
        return conversation
    }

    /// conversation-svc's sections of a panel, those of `wanted` only.
    static func apply(_ context: ConversationContext, _ wanted: Set<PanelSection>, to panel: inout Panel) {
        let conversation = context.conversation ?? Conversation()
        if wanted.contains(.conversation) { panel.conversation = conversation }
        if wanted.contains(.customer) { panel.customer = context.customer }
        if wanted.contains(.referral) { panel.referral = context.customer?.referral }
        if wanted.contains(.customFields) { panel.customFields = context.customer?.customFields ?? [] }
        if wanted.contains(.tags) {
            let attached = conversation.tags.filter { $0.visible }
            let ids = Set(attached.map(\.tagId))
            panel.tags = PanelTags(attached: attached, available: (context.tags?.folders ?? []).flatMap(\.tags).filter { $0.visible && !ids.contains($0.tagId) })
        }
        if wanted.contains(.notes) { panel.notes = context.notes }
        if wanted.contains(.activity) { panel.activity = context.activity }
        if wanted.contains(.messages) { panel.messages = context.messages }
    }

    /// order-svc's and loyalty-svc's sections of `wanted`, asked for at once under one deadline.
    func fill(_ wanted: Set<PanelSection>, shop: String, customer: String, into panel: inout Panel) async {
        guard !wanted.isEmpty else { return }
        let started = ContinuousClock.now
        let c = clients
        let options = self.options
        let timeout = sectionTimeout
        let timings = self.timings
        // One deadline for the other services' sections (one timer per panel, not one per call): what has
        // not answered when it passes is DEADLINE_EXCEEDED and its call is cancelled.
        let results = await withTaskGroup(of: ([String], Result<Section, RPCError>)?.self) { group in
            var asked: [[String]] = []
            // `names`: the sections one call answers (they are timed, and unavailable, together).
            func ask(_ names: [String], _ call: @escaping @Sendable () async throws(RPCError) -> Section) {
                asked.append(names)
                group.addTask {
                    let started = ContinuousClock.now
                    let result = await rpcResult(call)
                    // A section cut off at the deadline is recorded there, not again here.
                    if !Task.isCancelled { for name in names { timings?.record(name, milliseconds: Self.milliseconds(since: started)) } }
                    return (names, result)
                }
            }
            let carts = { @Sendable () async throws(RPCError) -> [Cart] in
                try await c.order.listCarts(ListCartsRequest(shopId: shop, customerId: customer), options: options).carts
            }
            let summary = { @Sendable () async throws(RPCError) -> OrderSummary in
                try await c.order.getOrderSummary(GetOrderSummaryRequest(shopId: shop, customerId: customer, recentLimit: Self.recentOrders), options: options)
            }
            if wanted.isSuperset(of: [.carts, .orderSummary]) {
                // Both of order-svc's sections in one call: a call between processes costs more than the
                // reads behind it. An order-svc older than the gateway (a rolling upgrade) answers
                // UNIMPLEMENTED, and then the two are asked for as before.
                ask(["carts", "order_summary"]) { () throws(RPCError) in
                    let request = GetCustomerOrderContextRequest(shopId: shop, customerId: customer, recentLimit: Self.recentOrders)
                    switch await rpcResult({ () throws(RPCError) in try await c.order.getCustomerOrderContext(request, options: options) }) {
                    case .success(let context): return .orders(context.carts, context.summary ?? OrderSummary())
                    case .failure(let error) where error.code == .unimplemented:
                        async let oldCarts = rpcResult(carts)
                        async let oldSummary = rpcResult(summary)
                        return .orders(try await oldCarts.get(), try await oldSummary.get())
                    case .failure(let error): throw error
                    }
                }
            } else if wanted.contains(.carts) {
                ask(["carts"]) { () throws(RPCError) in .carts(try await carts()) }
            } else if wanted.contains(.orderSummary) {
                ask(["order_summary"]) { () throws(RPCError) in .orderSummary(try await summary()) }
            }
            if wanted.contains(.member) {
                ask(["member"]) { () throws(RPCError) in
                    switch await rpcResult({ () throws(RPCError) in try await c.loyalty.getMember(GetMemberRequest(shopId: shop, customerId: customer), options: options) }) {
                    case .success(let member): return .member(member)
                    case .failure(let error) where error.code == .notFound: return .member(nil)   // not a member yet: nothing wrong
                    case .failure(let error): throw error
                    }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            var out: [([String], Result<Section, RPCError>)] = []
            for await answer in group {
                guard let answer else { break }
                out.append(answer)
                if out.count == asked.count { break }
            }
            group.cancelAll()
            for names in asked where !out.contains(where: { $0.0 == names }) {
                for name in names { timings?.record(name, milliseconds: Self.milliseconds(since: started)) }
                out.append((names, .failure(.deadlineExceeded("\(names.joined(separator: ", ")): no answer within \(timeout)"))))
            }
            return out
        }
        var unavailable: [UnavailableSection] = []
        for (names, result) in results {
            switch result {
            case .success(.carts(let carts)): panel.carts = carts
            case .success(.orderSummary(let summary)): panel.orderSummary = summary
            case .success(.orders(let carts, let summary)):
                panel.carts = carts
                panel.orderSummary = summary
            case .success(.member(let member)): panel.member = member
            case .failure(let error):
                for name in names { unavailable.append(UnavailableSection(section: name, code: error.code.name, reason: error.message)) }
            }
        }
        panel.unavailableSections += unavailable.sorted { $0.section < $1.section }
    }

    var options: CallOptions {
        CallOptions(timeout: Self.timeAmount(sectionTimeout))
    }

    /// The conversation's call may take this many section timeouts (5 s with the default 500 ms).
    static let conversationTimeoutFactor = 10

    static func timeAmount(_ d: Duration) -> TimeAmount {
        TimeAmount.nanoseconds(Int64(d.components.seconds) * 1_000_000_000 + d.components.attoseconds / 1_000_000_000)
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
    }

    /// `call`, or DEADLINE_EXCEEDED when it has not answered within `timeout`
    /// (whatever the transport does with deadlines), its task then cancelled.
    static func within<T: Sendable>(_ timeout: Duration, section: String, _ call: @escaping @Sendable () async throws(RPCError) -> T) async -> Result<T, RPCError> {
        await withTaskGroup(of: Result<T, RPCError>?.self) { group in
            group.addTask { await rpcResult(call) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return Task.isCancelled ? nil : .failure(.deadlineExceeded("\(section): no answer within \(timeout)"))
            }
            var outcome: Result<T, RPCError> = .failure(.deadlineExceeded("\(section): no answer"))
            for await result in group {
                if let result {
                    outcome = result
                    break
                }
            }
            group.cancelAll()
            return outcome
        }
    }
}
