import ChatMeshAPI
import Foundation
import Gateway
import Logging
import MeshHTTP2
import MeshMetrics
import MeshHealth
import MeshProcess
import MeshReflection
import MeshRPC

// gateway: the chat tool panel and the staff report, composed from conversation-,
// order- and loyalty-svc (DOMAIN.md §5). It keeps no data.
// Configuration: CHATMESH_LISTEN, CHATMESH_AUTH_KEY, LOG_LEVEL, CHATMESH_CONVERSATION_ADDRS,
// CHATMESH_ORDER_ADDRS, CHATMESH_LOYALTY_ADDRS, CHATMESH_PANEL_SECTION_TIMEOUT_MS (each section's
// deadline inside the caller's, 500 by default), CHATMESH_WATCH_STALL_S (a WatchPanel reader that makes
// no room this long is cut off; 60 by default), CHATMESH_PANEL_WATCH_MEMORY (changes kept per feed for
// watchers that resume; 65,536). When it stops it logs how long each section took (p50/p99/max of the
// last 10,000 of each), which scripts/bench prints after its GetPanel rows.
let env = MeshEnvironment()
MeshProcess.bootstrap(env)
let logger = Logger(label: "gateway")
do {
    var sectionTimeout = Duration.milliseconds(500)
    if let text = env.values["CHATMESH_PANEL_SECTION_TIMEOUT_MS"] {
        guard let ms = Int(text), (1...60_000).contains(ms) else {
            throw ConfigurationError("CHATMESH_PANEL_SECTION_TIMEOUT_MS=\(text): expected 1 to 60000 milliseconds")
        }
        sectionTimeout = .milliseconds(ms)
    }
    let config = try GRPCServer.Config(listen: env.listen(service: "gateway"))
    let conversation = try HTTP2Channel(addresses: env.addresses(of: "conversation"))
    let order = try HTTP2Channel(addresses: env.addresses(of: "order"))
    let loyalty = try HTTP2Channel(addresses: env.addresses(of: "loyalty"))
    let timings = SectionTimings()
    let composer = PanelComposer(
        clients: .init(conversation: conversation, order: order, loyalty: loyalty), sectionTimeout: sectionTimeout, timings: timings,
        metrics: ProcessMetrics.isEnabled ? PanelMetrics() : nil
    )
    // R-PANEL-4: one change feed per service for the whole process (every shop, a service token),
    // however many staff watch panels through it.
    let hub = PanelWatchHub(memory: env.positiveInteger("CHATMESH_PANEL_WATCH_MEMORY") ?? PanelWatchHub.defaultMemory)
    // Minted at each (re)connection: a stream outlives its token, which is checked when it opens.
    let tokens = ServiceTokens(service: "gateway", environment: env)
    let token: @Sendable () -> String = { tokens.forEveryShop() }
    let followers = [
        ChangeFollower.following(.conversation, channel: conversation, hub: hub, token: token, logger: logger),
        ChangeFollower.following(.order, channel: order, hub: hub, token: token, logger: logger),
        ChangeFollower.following(.loyalty, channel: loyalty, hub: hub, token: token, logger: logger),
    ]
    try await MeshProcess.serve(
        name: "gateway", config: config,
        services: ReflectionService.adding(to: [
            PanelServiceHandler(composer: composer, hub: hub, stallLimit: env.watchStallLimit), HealthService(services: [PanelService.name]),
        ]),
        env: env, jobs: [], workers: followers.map { follower in MeshProcess.Worker(name: "changes") { await follower.run() } }, logger: logger
    )
    for s in timings.summary() {
        logger.notice("section time", metadata: [
            "section": "\(s.section)", "calls": "\(s.count)", "p50_ms": "\(String(format: "%.2f", s.p50))",
            "p99_ms": "\(String(format: "%.2f", s.p99))", "max_ms": "\(String(format: "%.2f", s.max))",
        ])
    }
    await conversation.close()
    await order.close()
    await loyalty.close()
} catch {
    logger.critical("gateway failed", metadata: ["error": "\(error)"])
    exit(1)
}
