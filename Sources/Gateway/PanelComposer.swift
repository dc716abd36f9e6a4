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

    public init(clients: Clients, sectionTimeout: Duration = .milliseconds(500), timings: SectionTimings? = nil) {
        self.clients = clients
        self.sectionTimeout = sectionTimeout
        self.timings = timings
    }

    /// How many items of the lists a panel shows.
    static let notes: Int32 = 20
    static let activity: Int32 = 20
    static let recentOrders: Int32 = 5

    enum Section: Sendable {
        case carts([Cart])
        case orderSummary(OrderSummary)
        case member(Member?)
    }

    public func panel(shop: String, pageId: String, conversationId: String) async throws(RPCError) -> Panel {
        let started = ContinuousClock.now
        // One call for conversation-svc's five sections: each call crossing processes costs more than
        // the reads behind it (README, Performance). Without it there is no panel, so it may take longer
        // than an optional section — up to the caller's deadline, at most `conversationTimeout`: a burst
        // queued at conversation-svc is served late rather than refused at the section deadline.
        let context = try await clients.conversation.getConversationContext(
            GetConversationContextRequest(shopId: shop, conversationId: conversationId, notesLimit: Self.notes, activityLimit: Self.activity),
            options: CallOptions(timeout: Self.timeAmount(sectionTimeout * Self.conversationTimeoutFactor))
        )
        timings?.record("conversation", milliseconds: Self.milliseconds(since: started))
        let conversation = context.conversation ?? Conversation()
        if !pageId.isEmpty && conversation.pageId != pageId {
            throw .notFound("conversation_id: no conversation \(conversationId) on page \(pageId)")
        }
        var panel = Panel(conversation: conversation)
        panel.customer = context.customer
        panel.referral = context.customer?.referral
        panel.customFields = context.customer?.customFields ?? []
        let attached = conversation.tags.filter { $0.visible }
        let ids = Set(attached.map(\.tagId))
        panel.tags = PanelTags(attached: attached, available: (context.tags?.folders ?? []).flatMap(\.tags).filter { $0.visible && !ids.contains($0.tagId) })
        panel.notes = context.notes
        panel.activity = context.activity

        let customer = conversation.customerId
        let c = clients
        let options = self.options
        let timeout = sectionTimeout
        let timings = self.timings
        // One deadline for the other services' sections (one timer per panel, not one per call): what has
        // not answered when it passes is DEADLINE_EXCEEDED and its call is cancelled.
        let results = await withTaskGroup(of: (String, Result<Section, RPCError>)?.self) { group in
            var names: [String] = []
            func ask(_ name: String, _ call: @escaping @Sendable () async throws(RPCError) -> Section) {
                names.append(name)
                group.addTask {
                    let started = ContinuousClock.now
                    let result = await rpcResult(call)
                    // A section cut off at the deadline is recorded there, not again here.
                    if !Task.isCancelled { timings?.record(name, milliseconds: Self.milliseconds(since: started)) }
                    return (name, result)
                }
            }
            ask("carts") { () throws(RPCError) in .carts(try await c.order.listCarts(ListCartsRequest(shopId: shop, customerId: customer), options: options).carts) }
            ask("order_summary") { () throws(RPCError) in
                .orderSummary(try await c.order.getOrderSummary(
                    GetOrderSummaryRequest(shopId: shop, customerId: customer, recentLimit: Self.recentOrders), options: options
                ))
            }
            ask("member") { () throws(RPCError) in
                switch await rpcResult({ () throws(RPCError) in try await c.loyalty.getMember(GetMemberRequest(shopId: shop, customerId: customer), options: options) }) {
                case .success(let member): return .member(member)
                case .failure(let error) where error.code == .notFound: return .member(nil)   // not a member yet: nothing wrong
                case .failure(let error): throw error
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            var out: [(String, Result<Section, RPCError>)] = []
            for await answer in group {
                guard let answer else { break }
                out.append(answer)
                if out.count == names.count { break }
            }
            group.cancelAll()
            for name in names where !out.contains(where: { $0.0 == name }) {
                timings?.record(name, milliseconds: Self.milliseconds(since: started))
                out.append((name, .failure(.deadlineExceeded("\(name): no answer within \(timeout)"))))
            }
            return out
        }
        for (name, result) in results.sorted(by: { $0.0 < $1.0 }) {
            switch result {
            case .success(.carts(let carts)): panel.carts = carts
            case .success(.orderSummary(let summary)): panel.orderSummary = summary
            case .success(.member(let member)): panel.member = member
            case .failure(let error):
                panel.unavailableSections.append(UnavailableSection(section: name, code: error.code.name, reason: error.message))
            }
        }
        return panel
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
