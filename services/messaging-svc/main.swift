import ChatMeshAPI
import Foundation
import Logging
import MeshHTTP2
import MeshMetrics
import MeshHealth
import MeshProcess
import MeshReflection
import MeshRPC
import MeshStore
import Messaging
import MessagingDelivery

// messaging-svc: templates, the prepaid balance, transactional sends, broadcasts,
// ZNS quality and chatbot scenarios (DOMAIN.md §4).
// Configuration: CHATMESH_LISTEN, CHATMESH_DATA_DIR or DATABASE_URL, CHATMESH_AUTH_KEY, LOG_LEVEL,
// CHATMESH_MESSAGING_PROVIDERS and each provider's variables (ProviderConfiguration),
// CHATMESH_PRICE_ZNS_VND, CHATMESH_PRICE_SMS_VND, CHATMESH_PAYMENT_GATEWAY, CHATMESH_LOYALTY_ADDRS
// (broadcast audiences), CHATMESH_BROADCAST_BATCH, CHATMESH_BROADCAST_CONCURRENCY, CHATMESH_MESSAGING_LEASE_S
// (how long a replica's hold on a broadcast or a scenario step lasts unrenewed); staff replies (R-CONV-9):
// CHATMESH_REPLY_PROVIDERS, CHATMESH_PAGE_TOKENS_FILE, CHATMESH_FACEBOOK_GRAPH_URL, CHATMESH_ZALO_OA_URL,
// CHATMESH_ZALO_REPLY_WINDOW_DAYS.
let env = MeshEnvironment()
MeshProcess.bootstrap(env)
let logger = Logger(label: "messaging-svc")
do {
    var prices = MessagePrices()
    for (name, keyPath) in [("CHATMESH_PRICE_ZNS_VND", \MessagePrices.znsVnd), ("CHATMESH_PRICE_SMS_VND", \MessagePrices.smsVnd)] {
        guard let text = env.values[name] else { continue }
        guard let value = Int64(text), value >= 0 else { throw ConfigurationError("\(name)=\(text): expected a whole number of VND") }
        prices[keyPath: keyPath] = value
    }
    var runnerSettings = BroadcastRunner.Settings()
    if let batch = env.values["CHATMESH_BROADCAST_BATCH"].flatMap({ Int($0) }), batch > 0 { runnerSettings.batchSize = batch }
    if let concurrency = env.values["CHATMESH_BROADCAST_CONCURRENCY"].flatMap({ Int($0) }), concurrency > 0 { runnerSettings.concurrency = concurrency }
    let leaseSeconds = env.positiveInteger("CHATMESH_MESSAGING_LEASE_S") ?? Int(RunnerLease.defaultDurationMs / 1_000)
    // Every setting is read before the database opens: a wrong one stops the service here, naming it.
    let adapters = try ProviderConfiguration.adapters(env.values)
    let gateway = try ProviderConfiguration.paymentGateway(env.values)
    let replyAdapters = try ProviderConfiguration.replyAdapters(env.values)
    let zaloReplyWindowMs = try ProviderConfiguration.zaloReplyWindowMs(env.values)
    let config = try GRPCServer.Config(listen: env.listen(service: "messaging"))
    // Replicas tell each other apart in leases by host name and address, as the outbox's do: a replica restarted
    // in place takes its own broadcasts back at once, one that moved waits out their lease. A port the system
    // picks (":0") names no replica, so the process id is added.
    let listen = env.listen(service: "messaging")
    let holder = "\(ProcessInfo.processInfo.hostName)/\(listen)" + (listen.hasSuffix(":0") ? "/\(ProcessInfo.processInfo.processIdentifier)" : "")
    runnerSettings.lease = RunnerLease(holder: holder, durationMs: Int64(leaseSeconds) * 1_000)
    let loyalty = try HTTP2Channel(addresses: env.addresses(of: "loyalty"))
    let location = try StoreLocation.resolve(service: "messaging", databaseURL: env.databaseURL, dataDirectory: env.dataDirectory)
    let database = try await location.open(logger: logger)
    try await database.closing {
        let store = try await MessagingStore.open(database)
        let metrics = ProcessMetrics.isEnabled ? MessagingMetrics() : nil
        let sender = MessageSender(
            store: store, adapters: adapters, prices: prices, topUps: gateway.map { AutomaticTopUps(store: store, gateway: $0) }, metrics: metrics
        )
        for (channel, adapter) in adapters.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            let sandbox = adapter.name == "sandbox" ? ": nothing leaves this machine; sent messages are rows in messaging.sqlite" : ""
            logger.notice("\(channel.protoName) delivered by \(adapter.name)\(sandbox)")
        }
        for (kind, adapter) in [("Facebook inbox replies", replyAdapters.messenger), ("Facebook comment replies", replyAdapters.facebookComments), ("Zalo OA replies", replyAdapters.zalo)] {
            logger.notice("\(kind) delivered by \(adapter?.platformName ?? "nobody (CHATMESH_REPLY_PROVIDERS): they fail saying so")")
        }
        let replies = ReplySender(store: store, adapters: replyAdapters, zaloWindowMs: zaloReplyWindowMs)
        // Broadcast audiences come from loyalty-svc, called with a service token that acts for every shop.
        let tokens = ServiceTokens(service: "messaging-svc", environment: env)
        let runner = BroadcastRunner(
            store: store, audience: LoyaltySegmentAudience(channel: loyalty) { tokens.forEveryShop() }, sender: sender, settings: runnerSettings
        )
        let scheduler = ScenarioScheduler(store: store, sender: sender, claimMs: runnerSettings.lease.durationMs)
        // What a crash or a provider's temporary failure left QUEUED is delivered again.
        let redelivery = MeshProcess.PeriodicJob(name: "redelivery", every: .seconds(30)) {
            let tried = try await sender.redeliverQueued()
            if tried > 0 { logger.info("redelivered queued messages", metadata: ["count": "\(tried)"]) }
        }
        // Broadcasts that are due, and those a restart or another replica's end interrupted. At shutdown the runner
        // finishes its batch and gives the broadcast up, for another replica to go on with at once.
        let broadcasts = MeshProcess.PeriodicJob(name: "broadcasts", every: .seconds(1), cancelledAtShutdown: true) {
            try await runner.runDue()
        }
        // Chatbot steps whose time has come.
        let scenarios = MeshProcess.PeriodicJob(name: "scenarios", every: .seconds(1)) {
            while try await scheduler.sendDue() > 0 {}
        }
        try await MeshProcess.serve(
            name: "messaging-svc", config: config,
            services: ReflectionService.adding(to: [MessagingServiceHandler(store: store, sender: sender, replies: replies), HealthService(services: [MessagingService.name])]),
            env: env, jobs: [redelivery, broadcasts, scenarios],
            collectors: database.metricsCollectors + (metrics.map { [$0.collector(store: store)] } ?? []), logger: logger
        )
    }
    await loyalty.close()
} catch {
    logger.critical("messaging-svc failed", metadata: ["error": "\(error)"])
    exit(1)
}
