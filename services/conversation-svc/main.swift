import ChatMeshAPI
import Conversations
import Foundation
import Logging
import MeshHTTP2
import MeshHealth
import MeshRPC
import MeshStore

// conversation-svc: pages, conversations, customers, tags, notes, custom
// fields, activity history and the staff conversation report (DOMAIN.md §1).
// Configuration: CHATMESH_LISTEN, CHATMESH_DATA_DIR or DATABASE_URL, CHATMESH_AUTH_KEY, LOG_LEVEL.
let env = MeshEnvironment()
MeshProcess.bootstrap(env)
let logger = Logger(label: "conversation-svc")
do {
    let location = try StoreLocation.resolve(service: "conversation", databaseURL: env.databaseURL, dataDirectory: env.dataDirectory)
    let config = try GRPCServer.Config(listen: env.listen(service: "conversation"))
    let database = try await location.open(logger: logger)
    try await database.closing {
        let store = try await SQLConversationStore.open(database)
        // R-ACT-2: tag history older than 30 days goes; block history stays. Hourly is
        // well within the rule's day-level precision.
        let retention = MeshProcess.PeriodicJob(name: "activity-retention", every: .seconds(3600)) {
            let purged = try await store.purgeExpiredActivity(nowMs: Clock.nowMs())
            if purged > 0 { logger.info("purged expired tag history", metadata: ["entries": "\(purged)"]) }
        }
        try await MeshProcess.serve(
            name: "conversation-svc", config: config,
            services: [ConversationServiceHandler(store: store), HealthService(services: [ConversationService.name])],
            env: env, jobs: [retention], logger: logger
        )
    }
} catch {
    logger.critical("conversation-svc failed", metadata: ["error": "\(error)"])
    exit(1)
}
