import ChatMeshAPI
import Foundation
import Logging
import Loyalty
import LoyaltyAudiences
import MeshHTTP2
import MeshMetrics
import MeshChanges
import MeshHealth
import MeshProcess
import MeshReflection
import MeshRPC
import MeshStore

// loyalty-svc: the loyalty program and tiers, members, the points ledger with
// expiry, segments, referral vouchers and the offer dashboard (DOMAIN.md §3).
// Configuration: CHATMESH_LISTEN, CHATMESH_DATA_DIR or DATABASE_URL, CHATMESH_AUTH_KEY, LOG_LEVEL,
// CHATMESH_MESSAGING_ADDRS (where referral vouchers are sent), CHATMESH_EXPIRY_INTERVAL (seconds between
// runs of the expiry and re-ranking job, 3600 by default; 0 leaves it to an outside scheduler calling ExpirePoints),
// CHATMESH_ADS_PROVIDER and CHATMESH_MARKETING_API_URL (R-SEG-3 audiences: sandbox or facebook).
let env = MeshEnvironment()
MeshProcess.bootstrap(env)
let logger = Logger(label: "loyalty-svc")
do {
    var expiryInterval: Int64 = 3600
    if let text = env.values["CHATMESH_EXPIRY_INTERVAL"] {
        guard let value = Int64(text), value >= 0 else { throw ConfigurationError("CHATMESH_EXPIRY_INTERVAL=\(text): expected whole seconds (0: off)") }
        expiryInterval = value
    }
    let config = try GRPCServer.Config(listen: env.listen(service: "loyalty"))
    let audiencePlatform = try AudienceConfiguration.platform(env.values)
    let messaging = try HTTP2Channel(addresses: env.addresses(of: "messaging"))
    let location = try StoreLocation.resolve(service: "loyalty", databaseURL: env.databaseURL, dataDirectory: env.dataDirectory)
    let database = try await location.open(logger: logger)
    try await database.closing {
        let store = try await LoyaltyStore.open(database)
        let changes = try await ChangeFeed.open(database, bell: store.commitBell, logger: logger)
        // Vouchers go to messaging-svc with a service token for their shop.
        let tokens = ServiceTokens(service: "loyalty-svc", environment: env)
        let vouchers = VoucherDelivery(store: store, messenger: MessagingVoucherMessenger(channel: messaging, token: tokens.perShop))
        // Vouchers that messaging-svc could not take when they were made.
        let voucherRetry = MeshProcess.PeriodicJob(name: "voucher-retry", every: .seconds(10)) {
            let counts = try await vouchers.redeliver(nowMs: WallClock.nowMs())
            if counts.sent + counts.deferred > 0 {
                logger.info("voucher retry", metadata: ["sent": "\(counts.sent)", "still_unsent": "\(counts.deferred)"])
            }
        }
        // R-SEG-3: segments synced to Facebook custom audiences when asked and each day after.
        let sealer = AdTokenSealer(authKey: env.authKey)
        let audienceRunner = AudienceSyncRunner(store: store, platform: audiencePlatform, sealer: sealer)
        let audiences = MeshProcess.PeriodicJob(name: "audience-sync", every: .seconds(1)) {
            try await audienceRunner.runDue()
        }
        let expiry = PointsExpiryJob(store: store)
        let nightly = MeshProcess.PeriodicJob(name: "expiry-and-ranking", every: .seconds(max(expiryInterval, 1))) {
            let round = try await expiry.run(nowMs: WallClock.nowMs())
            for (shop, points) in round.expired.sorted(by: { $0.key < $1.key }) {
                logger.info("points expired", metadata: ["shop": "\(shop)", "points": "\(points)"])
            }
        }
        try await MeshProcess.serve(
            name: "loyalty-svc", config: config,
            services: ReflectionService.adding(to: [LoyaltyServiceHandler(store: store, vouchers: vouchers, changes: changes, stallLimit: env.watchStallLimit, sealer: sealer), HealthService(services: [LoyaltyService.name])]),
            env: env, jobs: expiryInterval > 0 ? [nightly, voucherRetry, audiences] : [voucherRetry, audiences],
            workers: [changes.worker], collectors: database.metricsCollectors, logger: logger
        )
    }
    await messaging.close()
} catch {
    logger.critical("loyalty-svc failed", metadata: ["error": "\(error)"])
    exit(1)
}
