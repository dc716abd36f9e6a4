import ArgumentParser
import BenchSupport
import ChatMeshAPI
import Foundation
import MeshHTTP2
import MeshRPC
import MeshStore
import Orders
import SQLKit

/// The scale benchmark of order-svc (issue 4): 10,000 products and 100,000
/// orders seeded into its store, then CreateOrder (each with its PreviewOrder
/// call to a real loyalty-svc), GetOrderSummary and ListCarts over h2c, and a
/// livestream burst of comments at a fixed rate whose carts are checked
/// afterwards: every comment kept, every intent in a cart.
@main
struct BenchOrders: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-orders",
        abstract: "Seed and load order-svc.",
        subcommands: [Seed.self, Load.self, Create.self]
    )

    static let shop = "bench-shop"
    static func variantId(_ i: Int) -> String { String(format: "var_bench_%05d", i) }
    static func customerId(_ i: Int) -> String { String(format: "cu_%06d", i) }

    struct Seed: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write N products and M orders into DIR/order.sqlite.")

        @Option(help: "Data directory of the order-svc to seed.")
        var dataDir: String

        @Option var products = 10_000
        @Option var orders = 100_000
        @Option var customers = 20_000

        func run() async throws {
            let started = Date()
            let database = try await SQLiteStore.open(path: (dataDir as NSString).appendingPathComponent("order.sqlite"), synchronous: .normal)
            let store = try await OrderStore.open(database)
            let now = WallClock.nowMs()
            _ = try await store.upsertWarehouse(
                shop: shop, Warehouse(warehouseId: "wh_bench", name: "Kho Quận 1", address: Address(street: "12 Lý Tự Trọng", district: "Quận 1", province: "Hồ Chí Minh")),
                nowMs: now
            )
            for start in stride(from: 0, to: products, by: 500) {
                let range = start..<min(start + 500, products)
                try await database.write { db in
                    let productRows: [SQLQueryString] = range.map { i in
                        "(\(bind: shop), \(bind: "prd_bench_\(i)"), \(bind: "Sản phẩm \(i)"), \(bind: "san pham \(i)"))"
                    }
                    let variantRows: [SQLQueryString] = range.map { i in
                        """
                        (\(bind: shop), \(bind: variantId(i)), \(bind: "prd_bench_\(i)"), \(bind: "SKU\(i)"), \(bind: "Size M"),
                         \(bind: Int64(100_000 + (i % 50) * 10_000)), \(bind: Int64(1_000_000)), \(bind: Int64(300)), 0)
                        """
                    }
                    try await db.raw("INSERT INTO products (shop_id, product_id, name, name_key) VALUES " + productRows.joined(separator: ", ")).run()
                    try await db.raw("""
                        INSERT INTO variants (shop_id, variant_id, product_id, sku, title, price_vnd, stock, weight_g, position) VALUES
                        """ + " " + variantRows.joined(separator: ", ")).run()
                }
            }
            for start in stride(from: 0, to: orders, by: 500) {
                let range = start..<min(start + 500, orders)
                try await database.write { db in
                    var orderRows: [SQLQueryString] = []
                    var itemRows: [SQLQueryString] = []
                    for i in range {
                        let id = "ord_bench_\(i)"
                        let product = (i * 7919) % products
                        let price = Int64(100_000 + (product % 50) * 10_000)
                        let status = Int64([1, 2, 3, 4, 4, 4, 5][i % 7])
                        orderRows.append("""
                            (\(bind: shop), \(bind: id), \(bind: customerId(i % customers)), \(bind: status), \(bind: price), 0, 0, 0, 25000, \(bind: price + 25_000), 0,
                             1, 1, 0, 'Khách', '0912345678', '1 Lê Lợi', '', 'Quận 1', 'Hồ Chí Minh', '', \(bind: "agent-\(i % 20)"), \(bind: id),
                             \(bind: now - Int64(orders - i) * 20_000), \(bind: status == 2 || status == 4 ? now : 0 as Int64))
                            """)
                        itemRows.append("(\(bind: shop), \(bind: id), \(bind: variantId(product)), 1, \(bind: price), \(bind: "Sản phẩm \(product)"), 'Size M', 0)")
                    }
                    try await db.raw("""
                        INSERT INTO orders (shop_id, order_id, customer_id, status, subtotal_vnd, tier_discount_vnd, points_discount_vnd, redeemed_points,
                            shipping_fee_vnd, total_vnd, points_earned, payment_method, channel, has_promotion, ship_name, ship_phone, street, ward, district,
                            province, quote_id, created_by_staff_id, idempotency_key, created_at_ms, paid_at_ms) VALUES
                        """ + " " + orderRows.joined(separator: ", ")).run()
                    try await db.raw("""
                        INSERT INTO order_items (shop_id, order_id, variant_id, quantity, price_vnd, product_name, variant_title, position) VALUES
                        """ + " " + itemRows.joined(separator: ", ")).run()
                }
            }
            try await database.write { db in try await db.raw("ANALYZE").run() }
            try await database.close()
            print(String(format: "seeded %d products, %d orders of %d customers in %.1f s", products, orders, customers, Date().timeIntervalSince(started)))
        }
    }

    struct Load: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Call a running order-svc (with its loyalty-svc) and print latency per RPC, then a comment burst.")

        @Option(help: "host:port of order-svc.")
        var target: String

        @Option var products = 10_000
        @Option(help: "Customers the seed gave orders to (every one has some).")
        var customers = 20_000

        @Option(help: "Calls per RPC.")
        var calls = 3_000

        @Option(help: "Comments per second in the burst.")
        var commentRate = 2_000

        @Option(help: "Seconds the burst lasts.")
        var burstSeconds = 30

        func run() async throws {
            let token = TokenSigner(key: MeshEnvironment().authKey).mint(shopId: shop, staffId: "bench-agent", role: .owner, validFor: 3600)
            let channel = try HTTP2Channel(addresses: target)
            let client = OrderService.Client(channel: channel, defaultOptions: .bearer(token, timeout: .seconds(10)))
            let run = UUID().uuidString.prefix(8)
            let (products, customers) = (self.products, self.customers)
            let shipping = ShippingInfo(name: "Khách bench", phone: "0912345678", address: Address(street: "88 Nguyễn Trãi", district: "Quận 5", province: "Hồ Chí Minh"))
            print(LatencyRun.header)
            let create = try await LatencyRun(concurrency: 16, rate: 200).measure("CreateOrder @200/s", calls: calls) { i in
                let order = try await client.createOrder(CreateOrderRequest(
                    shopId: shop, customerId: customerId(i % customers), items: [OrderItemRequest(variantId: variantId((i * 31) % products), quantity: 1)],
                    shipping: shipping, paymentMethod: .cod, channel: .social, idempotencyKey: "bench-\(run)-\(i)"
                ))
                if order.items.count != 1 { throw RPCError.internal("CreateOrder answered without its item") }
            }
            let flat = try await LatencyRun(concurrency: 16, rate: 0).measure("CreateOrder 16 in flight", calls: calls) { i in
                _ = try await client.createOrder(CreateOrderRequest(
                    shopId: shop, customerId: customerId(i % customers), items: [OrderItemRequest(variantId: variantId((i * 17) % products), quantity: 1)],
                    shipping: shipping, paymentMethod: .cod, idempotencyKey: "bench-\(run)-flat-\(i)"
                ))
            }
            let summary = try await LatencyRun(concurrency: 16, rate: 500).measure("GetOrderSummary @500/s", calls: calls) { i in
                let s = try await client.getOrderSummary(GetOrderSummaryRequest(shopId: shop, customerId: customerId((i * 13) % customers)))
                if (s.stats?.orderCount ?? 0) == 0 { throw RPCError.internal("a seeded customer has no orders") }
            }
            // The live campaign: 100 codes over the first products.
            let live = try await client.createCampaign(CreateCampaignRequest(
                shopId: shop, pageId: "bench-page", kind: .livestream, name: "Live bench \(run)", live: true,
                items: (0..<100).map { CampaignItem(code: "A\($0)", variantId: variantId($0), priceVnd: 99_000) }
            ))
            let carts = try await LatencyRun(concurrency: 16, rate: 500).measure("ListCarts @500/s", calls: calls) { i in
                _ = try await client.listCarts(ListCartsRequest(shopId: shop, customerId: customerId((i * 11) % customers)))
            }
            print(String(format: "CreateOrder p99 %.2f ms at 200/s, %.2f ms flat out (target < 20 ms): %@", create, flat, create < 20 ? "PASS" : "FAIL"))
            print(String(format: "GetOrderSummary p99 %.2f ms, ListCarts p99 %.2f ms (target < 5 ms): %@", summary, carts, max(summary, carts) < 5 ? "PASS" : "FAIL"))

            // The burst: commenters 0..<5,000, each comment "A<k> x<q>" (an intent) or chatter.
            let total = commentRate * burstSeconds
            let burst = try await LatencyRun(concurrency: 64, rate: commentRate).measure("IngestComment @\(commentRate)/s", calls: total) { i in
                let text = i % 4 == 3 ? "shop ơi còn hàng không" : "A\(i % 100) x\(1 + i % 3) 😍"
                let answer = try await client.ingestComment(IngestCommentRequest(
                    shopId: shop, campaignId: live.campaignId, customerId: "live_\(i % 5_000)", text: text
                ))
                if answer.intents.count != (i % 4 == 3 ? 0 : 1) { throw RPCError.internal("comment \(i) read as \(answer.intents.count) intents") }
            }
            let stats = try await client.getCampaign(GetCampaignRequest(shopId: shop, campaignId: live.campaignId)).stats ?? CampaignStats()
            var expectedRevenue: Int64 = 0
            for i in 0..<total where i % 4 != 3 { expectedRevenue += Int64(1 + i % 3) * 99_000 }
            let lossless = stats.estimatedRevenueVnd == expectedRevenue && stats.customers == Int32(min(total, 5_000))
            print(String(format: "burst: %d comments in %d s, p99 %.2f ms; carts hold %d VND of %d expected, %d commenters: %@",
                         total, burstSeconds, burst, stats.estimatedRevenueVnd, expectedRevenue, stats.customers, lossless ? "nothing lost" : "LOST"))
            await channel.close()
            if !lossless { throw ExitCode(1) }
        }
    }

    /// The CreateOrder load of scripts/bench: h2load sends one body over and over, and
    /// CreateOrder needs a new idempotency key per call, so this client plays its part —
    /// `connections` HTTP/2 connections with `streams` calls in flight on each, for
    /// `duration` seconds, every call a new key `<key-prefix>-<n>`. It writes one line
    /// per call in h2load's --log-file form (start µs, status, latency µs; status 200
    /// for a gRPC OK, else 1000 + the gRPC code) and prints the counts; scripts/bench
    /// then reads order-svc's store for one order per acknowledged key.
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "CreateOrder with unique idempotency keys, h2load-style log.")

        @Option(help: "host:port of order-svc.")
        var target: String
        @Option var shop = "demo-shop"
        @Option(help: "Customer ids to order for, comma-separated (taken in turn).")
        var customers: String
        @Option var connections = 16
        @Option var streams = 32
        @Option(help: "Seconds of load.")
        var duration = 5.0
        @Option(help: "File to write the per-call log to.")
        var log: String
        @Option(help: "Idempotency keys are <prefix>-<n>.")
        var keyPrefix: String

        func run() async throws {
            let token = TokenSigner(key: MeshEnvironment().authKey).mint(shopId: shop, staffId: "bench-agent", role: .owner, validFor: 3600)
            let customerIds = customers.split(separator: ",").map(String.init)
            guard !customerIds.isEmpty else { throw ValidationError("--customers names no customer") }
            let channels = try (0..<connections).map { _ in try HTTP2Channel(addresses: target) }
            let clients = channels.map { OrderService.Client(channel: $0, defaultOptions: .bearer(token, timeout: .seconds(10))) }
            // One variant whose stock (the most a variant may hold) outlasts any run, so every call is a real order and none a stock refusal.
            let variant = "var_bench_load"
            _ = try await clients[0].upsertProduct(UpsertProductRequest(
                shopId: shop, productId: "prd_bench_load", name: "Áo thun bench",
                variants: [Variant(variantId: variant, sku: "BENCH-LOAD", title: "Trắng / M", priceVnd: 150_000, stock: 10_000_000, weightG: 200)]
            ))
            let shipping = ShippingInfo(name: "Khách bench", phone: "0912345678", address: Address(street: "88 Nguyễn Trãi", district: "Quận 5", province: "Hồ Chí Minh"))
            let (shop, streams, prefix, duration) = (self.shop, self.streams, keyPrefix, self.duration)
            let started = ContinuousClock.now
            let end = started + .milliseconds(Int64(duration * 1000))
            let epochStartUs = Int64(Date().timeIntervalSince1970 * 1e6)
            let workers = connections * streams
            let results = try await withThrowingTaskGroup(of: (lines: [String], ok: Int, failed: Int).self) { group in
                for worker in 0..<workers {
                    let client = clients[worker % clients.count]
                    group.addTask {
                        var lines: [String] = []
                        var (ok, failed) = (0, 0)
                        var n = worker
                        while ContinuousClock.now < end {
                            let t0 = ContinuousClock.now
                            let request = CreateOrderRequest(
                                shopId: shop, customerId: customerIds[n % customerIds.count], items: [OrderItemRequest(variantId: variant, quantity: 1)],
                                shipping: shipping, paymentMethod: .cod, channel: .social, idempotencyKey: "\(prefix)-\(n)"
                            )
                            let status: Int
                            switch await rpcResult({ () throws(RPCError) in try await client.createOrder(request) }) {
                            case .success: status = 200; ok += 1
                            case .failure(let error): status = 1000 + Int(error.code.rawValue); failed += 1
                            }
                            let startUs = epochStartUs + Int64(LatencyRun.milliseconds(t0 - started) * 1000)
                            lines.append("\(startUs)\t\(status)\t\(Int64(LatencyRun.milliseconds(ContinuousClock.now - t0) * 1000))")
                            n += workers
                        }
                        return (lines, ok, failed)
                    }
                }
                var all: (lines: [String], ok: Int, failed: Int) = ([], 0, 0)
                for try await part in group { all.lines += part.lines; all.ok += part.ok; all.failed += part.failed }
                return all
            }
            let seconds = LatencyRun.milliseconds(ContinuousClock.now - started) / 1000
            try (results.lines.joined(separator: "\n") + "\n").write(toFile: log, atomically: true, encoding: .utf8)
            for channel in channels { await channel.close() }
            print("calls \(results.ok + results.failed) ok \(results.ok) failed \(results.failed) seconds \(String(format: "%.3f", seconds))")
        }
    }
}
