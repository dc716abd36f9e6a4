import ArgumentParser
import BenchSupport
import ChatMeshAPI
import Conversations
import Foundation
import Logging
import MeshHTTP2
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// The scale benchmark of conversation-svc (issue 3): a page with 100,000
/// conversations and 1,000,000 messages, then ingest, attach-tag and
/// tag-filter list calls through the real service over h2c, each with its
/// own latency percentiles. `seed` writes the data straight into the
/// service's SQLite file (through its own migrations) because a million
/// messages through RPC would take longer than the measurement itself.
@main
struct BenchConversations: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-conversations",
        abstract: "Seed and load conversation-svc.",
        subcommands: [Seed.self, Load.self]
    )

    static let shop = "bench-shop"
    static let page = "bench-page"

    static func conversationId(_ i: Int) -> String { "cv_bench_\(i)" }
    static func externalId(_ i: Int) -> String { "psid_\(i)" }

    struct Seed: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a page of N conversations and M messages into DIR/conversation.sqlite.")

        @Option(help: "Data directory of the conversation-svc to seed.")
        var dataDir: String

        @Option var conversations = 100_000
        @Option var messages = 1_000_000

        func run() async throws {
            let started = Date()
            let path = (dataDir as NSString).appendingPathComponent("conversation.sqlite")
            let database = try await SQLiteStore.open(path: path, synchronous: .normal)
            let store = try await SQLConversationStore.open(database)
            _ = try await store.connectPage(shop: shop, pageId: page, name: "Bench page", platform: .facebook, facebookLabelSync: false, nowMs: WallClock.nowMs())
            let tagIds = try await store.listTags(shop: shop, pageId: page, includeHidden: true).folders.flatMap(\.tags).map(\.tagId)
            let now = WallClock.nowMs()
            let perConversation = max(1, messages / conversations)
            let batch = 500
            for start in stride(from: 0, to: conversations, by: batch) {
                let range = start..<min(start + batch, conversations)
                try await database.write { db in
                    var customers: [SQLQueryString] = []
                    var rows: [SQLQueryString] = []
                    var msgs: [SQLQueryString] = []
                    var tags: [SQLQueryString] = []
                    var localRandom = SystemRandomNumberGenerator()
                    for i in range {
                        let customer = "cu_bench_\(i)"
                        let name = "Khách \(i)"
                        customers.append("(\(bind: shop), \(bind: customer), \(bind: page), \(bind: externalId(i)), \(bind: name), \(bind: now))")
                        // Activity spread over the last 30 days.
                        let last = now - Int64(i) * 25_000
                        rows.append("""
                            (\(bind: shop), \(bind: conversationId(i)), \(bind: page), \(bind: customer), \(bind: Int64(1)), \(bind: last), \(bind: "tin cuối"),
                             \(bind: name), \(bind: TagName.key(name)), \(bind: now))
                            """)
                        for m in 0..<perConversation {
                            let staff = m % 2 == 1
                            msgs.append("""
                                (\(bind: shop), \(bind: "msg_bench_\(i)_\(m)"), \(bind: conversationId(i)), \(bind: page), \(bind: Int64(1)),
                                 \(bind: Int64(staff ? 2 : 1)), \(bind: staff ? "agent-\(i % 20)" : ""), \(bind: staff ? "dạ shop chào chị" : "còn hàng không shop"),
                                 \(bind: last - Int64(perConversation - m) * 60_000))
                                """)
                        }
                        // About a third of the conversations carry two tags.
                        if Int.random(in: 0..<3, using: &localRandom) == 0 {
                            let a = Int.random(in: 0..<tagIds.count, using: &localRandom)
                            let b = (a + 1 + Int.random(in: 0..<(tagIds.count - 1), using: &localRandom)) % tagIds.count
                            for tag in [tagIds[a], tagIds[b]] {
                                tags.append("(\(bind: shop), \(bind: conversationId(i)), \(bind: tag), \(bind: now), \(bind: last))")
                            }
                        }
                    }
                    try await db.raw("INSERT INTO customers (shop_id, customer_id, page_id, external_id, name, created_at_ms) VALUES " + customers.joined(separator: ", ")).run()
                    try await db.raw("""
                        INSERT INTO conversations (shop_id, conversation_id, page_id, customer_id, status, last_message_at_ms, last_message_text,
                                                   customer_name, search_key, created_at_ms) VALUES
                        """ + rows.joined(separator: ", ")).run()
                    for chunk in stride(from: 0, to: msgs.count, by: 1000) {
                        try await db.raw("""
                            INSERT INTO messages (shop_id, message_id, conversation_id, page_id, kind, sender, staff_id, text, sent_at_ms) VALUES
                            """ + Array(msgs[chunk..<min(chunk + 1000, msgs.count)]).joined(separator: ", ")).run()
                    }
                    if !tags.isEmpty {
                        try await db.raw("INSERT INTO conversation_tags (shop_id, conversation_id, tag_id, attached_at_ms, last_message_at_ms) VALUES " + tags.joined(separator: ", ")).run()
                    }
                }
            }
            try await database.write { db in try await db.raw("ANALYZE").run() }
            try await database.close()
            print(String(format: "seeded %d conversations, %d messages in %.1f s", conversations, conversations * perConversation, Date().timeIntervalSince(started)))
        }
    }

    struct Load: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Call a running conversation-svc and print latency percentiles per RPC.")

        @Option(help: "host:port of conversation-svc.")
        var target: String

        @Option(help: "Conversations the seeded page has.")
        var conversations = 100_000

        @Option(help: "Calls per RPC.")
        var calls = 5_000

        @Option(help: "Calls in flight at most.")
        var concurrency = 16

        @Option(help: "Calls per second to offer (0: as fast as the service answers). Latency counts from when a call was due, so a service that falls behind is charged for the wait.")
        var rate = 0

        func run() async throws {
            let token = TokenSigner(key: MeshEnvironment().authKey).mint(shopId: shop, staffId: "bench-agent", role: .owner, validFor: 3600)
            let channel = try HTTP2Channel(addresses: target)
            let client = ConversationService.Client(channel: channel, defaultOptions: .bearer(token, timeout: .seconds(10)))
            let tagIds = try await client.listTags(ListTagsRequest(shopId: shop, pageId: page, includeHidden: true)).folders.flatMap(\.tags).map(\.tagId)
            let n = conversations
            print(LatencyRun.header)
            let runner = LatencyRun(concurrency: concurrency, rate: rate)
            var worst: Double = 0
            worst = max(worst, try await runner.measure("IngestMessage", calls: calls) { i in
                var random = SystemRandomNumberGenerator()
                let who = Int.random(in: 0..<n, using: &random)
                let customer = i % 3 != 2
                _ = try await client.ingestMessage(IngestMessageRequest(
                    shopId: shop, pageId: page, customerExternalId: externalId(who), kind: .message, sender: customer ? .customer : .staff,
                    staffId: customer ? "" : "agent-\(who % 20)",
                    text: customer ? (i % 5 == 0 ? "sđt em 09\(String(format: "%08d", who)) nha" : "áo này còn size M không shop \(i)") : "dạ còn chị ơi"
                ))
            })
            worst = max(worst, try await runner.measure("AttachTag", calls: calls) { i in
                var random = SystemRandomNumberGenerator()
                _ = try await client.attachTag(AttachTagRequest(
                    shopId: shop, conversationId: conversationId(Int.random(in: 0..<n, using: &random)), tagId: tagIds[i % tagIds.count], staffId: "bench-agent"
                ))
            })
            worst = max(worst, try await runner.measure("ListConversations(tag)", calls: calls) { i in
                let page = try await client.listConversations(ListConversationsRequest(shopId: shop, pageId: page, tagIdsAny: [tagIds[i % tagIds.count]], pageSize: 20))
                if page.conversations.isEmpty { throw RPCError.internal("tag filter found nothing") }
            })
            await channel.close()
            print(String(format: "worst p99: %.2f ms (target < 5 ms)%@", worst, rate > 0 ? " at \(rate) calls/s offered" : " at \(concurrency) in flight"))
        }
    }
}
