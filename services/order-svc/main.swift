import ChatMeshAPI
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
import Orders

// order-svc: catalog, warehouses, campaigns and livestream comments, carts, orders,
// shipments and shipping quotes, staff sales (DOMAIN.md §2).
// Configuration: CHATMESH_LISTEN, CHATMESH_DATA_DIR or DATABASE_URL, CHATMESH_AUTH_KEY, LOG_LEVEL,
// CHATMESH_LOYALTY_ADDRS (checkout prices and points), CHATMESH_MESSAGING_ADDRS (confirmations,
// payment links, cart reminders), CHATMESH_SHIPPING_RATES (a JSON rate table replacing the standard one),
// CHATMESH_PAYMENT_LINK_BASE (where payment and cart pages live), CHATMESH_OUTBOX_MAX_ATTEMPTS and
// CHATMESH_OUTBOX_RETRY_MS (order events for loyalty-svc: attempts before dead, first retry delay).
let env = MeshEnvironment()
MeshProcess.bootstrap(env)
let logger = Logger(label: "order-svc")
do {
    var rates = ShippingRateTable.standard
    if let path = env.values["CHATMESH_SHIPPING_RATES"] {
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigurationError("CHATMESH_SHIPPING_RATES=\(path): no such file") }
        do {
            rates = try ShippingRateTable.decode(json: data)
        } catch {
            throw ConfigurationError("CHATMESH_SHIPPING_RATES=\(path): \(error)")
        }
    }
    let links = OrderServiceHandler.PaymentLinks(base: env.values["CHATMESH_PAYMENT_LINK_BASE"] ?? "https://pay.chatmesh.vn/")
    let config = try GRPCServer.Config(listen: env.listen(service: "order"))
    let loyalty = try HTTP2Channel(addresses: env.addresses(of: "loyalty"))
    let messaging = try HTTP2Channel(addresses: env.addresses(of: "messaging"))
    let outboxConfiguration = try OutboxDispatcher.Configuration(environment: env.values)
    let location = try StoreLocation.resolve(service: "order", databaseURL: env.databaseURL, dataDirectory: env.dataDirectory)
    let database = try await location.open(logger: logger)
    try await database.closing {
        let store = try await OrderStore.open(database)
        let changes = try await ChangeFeed.open(database, bell: store.commitBell, logger: logger)
        let handler = OrderServiceHandler(
            store: store, loyalty: LoyaltyServiceCheckout(channel: loyalty), messenger: MessagingOrderMessenger(channel: messaging), rates: rates, links: links,
            changes: changes, stallLimit: env.watchStallLimit
        )
        // Order events reach loyalty-svc (points) and messaging-svc (broadcast profit) through the
        // outbox, with a service token for each event's shop.
        let tokens = ServiceTokens(service: "order-svc", environment: env)
        let outbox = ServiceOutbox(
            service: "order-svc", listen: env.listen(service: "order"), database: database,
            subscribers: [
                OrderEvents.loyaltySubscriber(channel: loyalty, token: tokens.perShop),
                OrderEvents.messagingSubscriber(channel: messaging, token: tokens.perShop),
            ],
            bell: store.commitBell, configuration: outboxConfiguration, logger: logger
        )
        try await MeshProcess.serve(
            name: "order-svc", config: config,
            services: ReflectionService.adding(to: [
                handler, outbox.operatorService, HealthService(services: [OrderService.name, OutboxService.name]),
            ]),
            env: env, workers: [outbox.worker, changes.worker], collectors: database.metricsCollectors + [outbox.metricsCollector()], logger: logger
        )
    }
    await loyalty.close()
    await messaging.close()
} catch {
    logger.critical("order-svc failed", metadata: ["error": "\(error)"])
    exit(1)
}
