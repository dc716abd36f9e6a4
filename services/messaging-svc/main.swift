import ChatMeshAPI
import Foundation
import Logging
import MeshHTTP2
import MeshHealth
import MeshRPC
import MeshStore
import Messaging

// messaging-svc: templates, the prepaid balance, transactional sends, broadcasts,
// ZNS quality and chatbot scenarios (DOMAIN.md §4).
// Configuration: CHATMESH_LISTEN, CHATMESH_DATA_DIR or DATABASE_URL, CHATMESH_AUTH_KEY, LOG_LEVEL,
// CHATMESH_MESSAGING_PROVIDERS (only "sandbox" so far), CHATMESH_PRICE_ZNS_VND, CHATMESH_PRICE_SMS_VND,
// CHATMESH_PAYMENT_GATEWAY ("sandbox" or "none"), CHATMESH_LOYALTY_ADDRS (broadcast audiences),
// CHATMESH_BROADCAST_BATCH, CHATMESH_BROADCAST_CONCURRENCY.
let env = MeshEnvironment()
MeshProcess.bootstrap(env)
let logger = Logger(label: "messaging-svc")
do {
    let providers = env.values["CHATMESH_MESSAGING_PROVIDERS"] ?? "sandbox"
    guard providers == "sandbox" else {
        throw StoreConfigurationError("CHATMESH_MESSAGING_PROVIDERS=\(providers): only the sandbox provider is built so far")
    }
    var prices = MessagePrices()
    if let zns = env.values["CHATMESH_PRICE_ZNS_VND"].flatMap({ Int64($0) }) { prices.znsVnd = zns }
    if let sms = env.values["CHATMESH_PRICE_SMS_VND"].flatMap({ Int64($0) }) { prices.smsVnd = sms }
    let location = try StoreLocation.resolve(service: "messaging", databaseURL: env.databaseURL, dataDirectory: env.dataDirectory)
    let database = try await location.open(logger: logger)
    let store = try await MessagingStore.open(database)
    let sandbox = SandboxAdapter()
    var topUps: AutomaticTopUps?
    switch env.values["CHATMESH_PAYMENT_GATEWAY"] ?? "sandbox" {
    case "sandbox": topUps = AutomaticTopUps(store: store, gateway: SandboxPaymentGateway())
    case "none": topUps = nil
    case let other: throw StoreConfigurationError("CHATMESH_PAYMENT_GATEWAY=\(other): expected sandbox or none")
    }
    let sender = MessageSender(
        store: store, adapters: [.zns: sandbox, .email: sandbox, .sms: sandbox, .messenger: sandbox], prices: prices, topUps: topUps
    )
    let handler = MessagingServiceHandler(store: store, sender: sender)
    logger.notice("delivering through the sandbox: nothing leaves this machine; sent messages are rows in messaging.sqlite")
    // Broadcast audiences come from loyalty-svc, called with a service token that acts for every shop.
    let signer = TokenSigner(key: env.authKey)
    let loyalty = try HTTP2Channel(addresses: env.addresses(of: "loyalty"))
    var runnerSettings = BroadcastRunner.Settings()
    if let batch = env.values["CHATMESH_BROADCAST_BATCH"].flatMap({ Int($0) }), batch > 0 { runnerSettings.batchSize = batch }
    if let concurrency = env.values["CHATMESH_BROADCAST_CONCURRENCY"].flatMap({ Int($0) }), concurrency > 0 { runnerSettings.concurrency = concurrency }
    let runner = BroadcastRunner(
        store: store,
        audience: LoyaltySegmentAudience(channel: loyalty) {
            signer.mint(shopId: Principal.anyShop, staffId: "messaging-svc", role: .service, validFor: 300)
        },
        sender: sender, settings: runnerSettings
    )
    let scheduler = ScenarioScheduler(store: store, sender: sender)
    // What a crash or a provider's temporary failure left QUEUED is delivered again.
    let redelivery = MeshProcess.PeriodicJob(name: "redelivery", every: .seconds(30)) {
        let tried = try await sender.redeliverQueued()
        if tried > 0 { logger.info("redelivered queued messages", metadata: ["count": "\(tried)"]) }
    }
    // Broadcasts that are due, and those a restart interrupted.
    let broadcasts = MeshProcess.PeriodicJob(name: "broadcasts", every: .seconds(1)) {
        try await runner.runDue()
    }
    // Chatbot steps whose time has come.
    let scenarios = MeshProcess.PeriodicJob(name: "scenarios", every: .seconds(1)) {
        while try await scheduler.sendDue() > 0 {}
    }
    try await MeshProcess.serve(
        name: "messaging-svc",
        config: try GRPCServer.Config(listen: env.listen(service: "messaging")),
        services: [handler, HealthService(services: [MessagingService.name])],
        env: env, jobs: [redelivery, broadcasts, scenarios], logger: logger
    )
    await loyalty.close()
    try await database.close()
} catch {
    logger.critical("messaging-svc failed", metadata: ["error": "\(error)"])
    exit(1)
}
