import ChatMeshAPI
import MeshRPC

/// chatmesh.v1.PanelService: the chat tool panel (once, or live), the shipping
/// estimate passed through to order-svc, and the staff report.
public struct PanelServiceHandler: PanelService.Handler, DrainingService {
    let composer: PanelComposer
    /// The live panel's view of the change feeds; nil where nothing watches (unit tests).
    let hub: PanelWatchHub?
    let stallLimit: Duration

    public init(composer: PanelComposer, hub: PanelWatchHub? = nil, stallLimit: Duration = .seconds(60)) {
        self.composer = composer
        self.hub = hub
        self.stallLimit = stallLimit
    }

    public func beginDraining() async {
        hub?.drain()
    }

    public func watchPanel(_ request: WatchPanelRequest, responses: RPCWriter<PanelUpdate>, context: ServerContext) async throws {
        let conversation = try FieldCheck.id(request.conversationId, "conversation_id")
        try FieldCheck.optionalId(request.pageId, "page_id")
        guard let hub else { throw RPCError.unimplemented("this gateway follows no change feeds") }
        try await PanelWatch(composer: composer, hub: hub, stallLimit: stallLimit).run(
            shop: request.shopId, pageId: request.pageId, conversationId: conversation, resumeToken: request.resumeToken, responses: responses
        )
    }

    public func getPanel(_ request: GetPanelRequest, context: ServerContext) async throws -> Panel {
        let conversation = try FieldCheck.id(request.conversationId, "conversation_id")
        try FieldCheck.optionalId(request.pageId, "page_id")
        return try await composer.panel(shop: request.shopId, pageId: request.pageId, conversationId: conversation)
    }

    public func estimateShipping(_ request: EstimateShippingRequest, context: ServerContext) async throws -> EstimateShippingResponse {
        try await composer.clients.order.estimateShipping(request, options: CallOptions(timeout: .seconds(5)))
    }

    public func getStaffReport(_ request: GetStaffReportRequest, context: ServerContext) async throws -> GetStaffReportResponse {
        let page = try FieldCheck.id(request.pageId, "page_id")
        guard request.fromMs >= 0, request.toMs > request.fromMs else { throw RPCError.invalidArgument("to_ms must be after from_ms") }
        let clients = composer.clients
        async let conversation = PanelComposer.within(.seconds(10), section: "conversation") { () throws(RPCError) in
            try await clients.conversation.getStaffConversationStats(
                GetStaffConversationStatsRequest(shopId: request.shopId, pageId: page, fromMs: request.fromMs, toMs: request.toMs),
                options: CallOptions(timeout: .seconds(10))
            ).staff
        }
        async let sales = PanelComposer.within(.seconds(10), section: "sales") { () throws(RPCError) in
            try await clients.order.getStaffSalesStats(
                GetStaffSalesStatsRequest(shopId: request.shopId, fromMs: request.fromMs, toMs: request.toMs, pageId: request.pageId), options: CallOptions(timeout: .seconds(10))
            ).staff
        }
        let (c, s) = await (conversation, sales)
        // Both refused for the same reason (a bad token, another shop): that is the answer.
        if case .failure(let a) = c, case .failure(let b) = s, a.code == b.code, [.permissionDenied, .unauthenticated, .invalidArgument].contains(a.code) {
            throw a
        }
        var unavailable: [UnavailableSection] = []
        if case .failure(let error) = c { unavailable.append(UnavailableSection(section: "conversation_stats", code: error.code.name, reason: error.message)) }
        if case .failure(let error) = s { unavailable.append(UnavailableSection(section: "sales_stats", code: error.code.name, reason: error.message)) }
        return GetStaffReportResponse(rows: StaffReport.rows(conversation: try? c.get(), sales: try? s.get()), unavailableSections: unavailable)
    }
}
