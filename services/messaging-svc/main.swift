import ChatMeshAPI
import Foundation
import Logging
import MeshHTTP2
import MeshHealth
import MeshRPC
import MeshStore
import Messaging

// messaging-svc: templates, the prepaid balance, transactional sends and ZNS
// quality (DOMAIN.md §4; broadcasts and chatbot scenarios still to come).
// Configuration: CHATMESH_LISTEN, CHATMESH_DATA_DIR or DATABASE_URL, CHATMESH_AUTH_KEY, LOG_LEVEL,
// CHATMESH_MESSAGING_PROVIDERS (only "sandbox" so far), CHATMESH_PRICE_ZNS_VND, CHATMESH_PRICE_SMS_VND.
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
    let handler = MessagingServiceHandler(
        store: store, adapters: [.zns: sandbox, .email: sandbox, .sms: sandbox, .messenger: sandbox], prices: prices
    )
    logger.notice("delivering through the sandbox: nothing leaves this machine; sent messages are rows in messaging.sqlite")
    // What a crash or a provider's temporary failure left QUEUED is delivered again.
    let redelivery = MeshProcess.PeriodicJob(name: "redelivery", every: .seconds(30)) {
        let tried = try await handler.redeliverQueued()
        if tried > 0 { logger.info("redelivered queued messages", metadata: ["count": "\(tried)"]) }
    }
    try await MeshProcess.serve(
        name: "messaging-svc",
        config: try GRPCServer.Config(listen: env.listen(service: "messaging")),
        services: [handler, HealthService(services: [MessagingService.name])],
        env: env, jobs: [redelivery], logger: logger
    )
    try await database.close()
} catch {
    logger.critical("messaging-svc failed", metadata: ["error": "\(error)"])
    exit(1)
}
