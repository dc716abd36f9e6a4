import ChatMeshAPI
import Foundation
import Logging
import MeshHTTP2
import MeshHealth
import MeshRPC
import MeshStore
import Orders

// order-svc: catalog, warehouses, campaigns and livestream comments, carts, orders,
// shipments and shipping quotes, staff sales (DOMAIN.md §2).
// Configuration: CHATMESH_LISTEN, CHATMESH_DATA_DIR or DATABASE_URL, CHATMESH_AUTH_KEY, LOG_LEVEL,
// CHATMESH_LOYALTY_ADDRS (checkout prices and points), CHATMESH_MESSAGING_ADDRS (confirmations,
// payment links, cart reminders), CHATMESH_SHIPPING_RATES (a JSON rate table replacing the standard one),
// CHATMESH_PAYMENT_LINK_BASE (where payment and cart pages live).
let env = MeshEnvironment()
MeshProcess.bootstrap(env)
let logger = Logger(label: "order-svc")
do {
    var rates = ShippingRateTable.standard
    if let path = env.values["CHATMESH_SHIPPING_RATES"] {
        guard let data = FileManager.default.contents(atPath: path) else { throw StoreConfigurationError("CHATMESH_SHIPPING_RATES=\(path): no such file") }
        do {
            rates = try ShippingRateTable.decode(json: data)
        } catch {
            throw StoreConfigurationError("CHATMESH_SHIPPING_RATES=\(path): \(error)")
        }
    }
    let links = OrderServiceHandler.PaymentLinks(base: env.values["CHATMESH_PAYMENT_LINK_BASE"] ?? "https://pay.chatmesh.vn/")
    let config = try GRPCServer.Config(listen: env.listen(service: "order"))
    let loyalty = try HTTP2Channel(addresses: env.addresses(of: "loyalty"))
    let messaging = try HTTP2Channel(addresses: env.addresses(of: "messaging"))
    let location = try StoreLocation.resolve(service: "order", databaseURL: env.databaseURL, dataDirectory: env.dataDirectory)
    let database = try await location.open(logger: logger)
    try await database.closing {
        let store = try await OrderStore.open(database)
        let handler = OrderServiceHandler(
            store: store, loyalty: LoyaltyServiceCheckout(channel: loyalty), messenger: MessagingOrderMessenger(channel: messaging), rates: rates, links: links
        )
        try await MeshProcess.serve(
            name: "order-svc", config: config, services: [handler, HealthService(services: [OrderService.name])], env: env, jobs: [], logger: logger
        )
    }
    await loyalty.close()
    await messaging.close()
} catch {
    logger.critical("order-svc failed", metadata: ["error": "\(error)"])
    exit(1)
}
