import ChatMeshAPI
import Conversations
import Foundation
import Logging
import MeshHTTP2
import MeshMetrics
import MeshChanges
import MeshHealth
import MeshProcess
import MeshReflection
import MeshOutbox
import MeshRPC
import MeshStore

// conversation-svc: pages, conversations, customers, tags, notes, custom
// fields, activity history and the staff conversation report (DOMAIN.md §1).
// Configuration: CHATMESH_LISTEN, CHATMESH_DATA_DIR or DATABASE_URL, CHATMESH_AUTH_KEY, LOG_LEVEL,
// CHATMESH_LOYALTY_ADDRS (customer profiles for segments), CHATMESH_MESSAGING_ADDRS (tag and
// customer-message events for chatbot scenarios and the Messenger window; staff replies to deliver), CHATMESH_OUTBOX_MAX_ATTEMPTS
// and CHATMESH_OUTBOX_RETRY_MS (the outbox: attempts before an event is dead, first retry delay).
let env = MeshEnvironment()
MeshProcess.bootstrap(env)
let logger = Logger(label: "conversation-svc")
do {
    let location = try StoreLocation.resolve(service: "conversation", databaseURL: env.databaseURL, dataDirectory: env.dataDirectory)
    let config = try GRPCServer.Config(listen: env.listen(service: "conversation"))
    let outboxConfiguration = try OutboxDispatcher.Configuration(environment: env.values)
    let loyalty = try HTTP2Channel(addresses: env.addresses(of: "loyalty"))
    let messaging = try HTTP2Channel(addresses: env.addresses(of: "messaging"))
    let database = try await location.open(logger: logger)
    try await database.closing {
        let store = try await SQLConversationStore.open(database)
        let changes = try await ChangeFeed.open(database, bell: store.commitBell, logger: logger)
        // Profiles go to loyalty-svc, and tag / message events and staff replies (R-CONV-9: messaging-svc
        // talks to the platforms) to messaging-svc through the outbox, each call with a service token
        // for the event's shop.
        let tokens = ServiceTokens(service: "conversation-svc", environment: env)
        let outbox = ServiceOutbox(
            service: "conversation-svc", listen: env.listen(service: "conversation"), database: database,
            subscribers: [
                ConversationEvents.profileSubscriber(store: store, loyalty: loyalty, token: tokens.perShop),
                ConversationEvents.messagingSubscriber(messaging: messaging, token: tokens.perShop),
                ConversationEvents.replySubscriber(
                    store: store, messaging: messaging, token: tokens.perShop, giveUpAfterAttempts: max(1, outboxConfiguration.maxAttempts - 1)
                ),
            ],
            bell: store.commitBell, configuration: outboxConfiguration, logger: logger
        )
        // R-ACT-2: tag history older than 30 days goes; block history stays. Hourly is
        // well within the rule's day-level precision.
        let retention = MeshProcess.PeriodicJob(name: "activity-retention", every: .seconds(3600)) {
            let purged = try await store.purgeExpiredActivity(nowMs: WallClock.nowMs())
            if purged > 0 { logger.info("purged expired tag history", metadata: ["entries": "\(purged)"]) }
        }
        try await MeshProcess.serve(
            name: "conversation-svc", config: config,
            services: ReflectionService.adding(to: [
                ConversationServiceHandler(store: store, changes: changes, stallLimit: env.watchStallLimit), outbox.operatorService,
                HealthService(services: [ConversationService.name, OutboxService.name]),
            ]),
            env: env, jobs: [retention], workers: [outbox.worker, changes.worker],
            collectors: database.metricsCollectors + [outbox.metricsCollector()], logger: logger
        )
    }
    await loyalty.close()
    await messaging.close()
} catch {
    logger.critical("conversation-svc failed", metadata: ["error": "\(error)"])
    exit(1)
}
