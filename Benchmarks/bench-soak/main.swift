import ArgumentParser
import ChatMeshAPI
import Foundation
import MeshHTTP2
import MeshRPC
import Synchronization

/// The soak's load (issue 23; scripts/soak runs it against a seeded mesh and watches the processes):
/// `--calls` calls in rounds of twenty — the panel through the gateway three times, the reads a chat
/// tool makes (conversation, list, messages, notes, member, points history, order summary, order), and
/// the writes (a tag attached then detached, a note added then deleted, points given then taken back,
/// an order created, created again with its key, then paid or cancelled). Every answer must be a
/// success that says what the call did; any other is counted and the first ones printed.
///
/// Each worker keeps to its own conversations, so that its attach-then-detach and give-then-take are
/// answered as they would be for one staff member, whatever the other workers do.
/// Progress goes to standard output; "soak: warmed up" once the first half of the calls is done (the
/// processes' bounded caches and pools take a few hundred thousand calls to fill),
/// "soak: done" at the end — and then the connections stay open until standard input closes, so that
/// whoever watches the servers counts them at the end as at warm-up.
@main
struct BenchSoak: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-soak", abstract: "A mixed workload against a seeded mesh, every answer checked.")

    @Option(help: "A file of 'conversation_id<TAB>customer_id' lines: the conversations to work on (customers that are loyalty members).")
    var conversations: String
    @Option var shop = "demo-shop"
    @Option var pageId = "demo-page"
    @Option(help: "Calls in all (rounded up to whole rounds of 20).")
    var calls = 1_000_000
    @Option(help: "Calls in flight.")
    var workers = 32
    @Option(help: "Connections to each service.")
    var connections = 4
    @Option(help: "Idempotency keys are <prefix>-<worker>-<round>.")
    var keyPrefix = "soak"

    func run() async throws {
        let env = MeshEnvironment()
        let token = TokenSigner(key: env.authKey).mint(shopId: shop, staffId: "soak-staff", role: .owner, validFor: 86_400)
        let options = CallOptions.bearer(token, timeout: .seconds(30))
        func address(_ name: String) throws -> String {
            guard let value = ProcessInfo.processInfo.environment["CHATMESH_\(name)_ADDRS"], !value.isEmpty else {
                throw ValidationError("CHATMESH_\(name)_ADDRS is not set")
            }
            return value
        }
        let targets = try String(contentsOfFile: conversations, encoding: .utf8).split(separator: "\n").compactMap { line -> Target? in
            let cells = line.split(separator: "\t").map(String.init)
            return cells.count == 2 ? Target(conversationId: cells[0], customerId: cells[1]) : nil
        }
        guard targets.count >= workers else { throw ValidationError("\(targets.count) conversations for \(workers) workers") }
        var mesh: [Mesh] = []
        for _ in 0..<connections {
            mesh.append(Mesh(
                gateway: PanelService.Client(channel: try HTTP2Channel(addresses: address("GATEWAY")), defaultOptions: options),
                conversation: ConversationService.Client(channel: try HTTP2Channel(addresses: address("CONVERSATION")), defaultOptions: options),
                order: OrderService.Client(channel: try HTTP2Channel(addresses: address("ORDER")), defaultOptions: options),
                loyalty: LoyaltyService.Client(channel: try HTTP2Channel(addresses: address("LOYALTY")), defaultOptions: options)
            ))
        }
        // The soak's own tag and product: nothing the seed made is changed by the rounds.
        guard let folder = try await mesh[0].conversation.listTags(ListTagsRequest(shopId: shop, pageId: pageId, includeHidden: true)).folders.first else {
            throw ValidationError("\(pageId) has no tag folder: seed the shop first")
        }
        let tag = try await mesh[0].conversation.createTag(CreateTagRequest(
            shopId: shop, pageId: pageId, folderId: folder.folderId, name: "Soak \(keyPrefix)", color: "#888888", visible: true
        ))
        let variant = "var_\(keyPrefix)"
        _ = try await mesh[0].order.upsertProduct(UpsertProductRequest(
            shopId: shop, productId: "prd_\(keyPrefix)", name: "Áo soak",
            variants: [Variant(variantId: variant, sku: "SOAK-\(keyPrefix)", title: "Trắng / M", priceVnd: 150_000, stock: 10_000_000, weightG: 200)]
        ))
        let plan = Plan(shop: shop, pageId: pageId, tagId: tag.tagId, variantId: variant, keyPrefix: keyPrefix)
        let rounds = (calls + Plan.callsPerRound - 1) / Plan.callsPerRound
        let tally = Tally(total: rounds * Plan.callsPerRound)
        let started = ContinuousClock.now
        let workers = self.workers
        let partitions = (0..<workers).map { w in stride(from: w, to: targets.count, by: workers).map { targets[$0] } }
        await withTaskGroup(of: Void.self) { group in
            for w in 0..<workers {
                let clients = mesh[w % mesh.count]
                let mine = partitions[w]
                group.addTask {
                    var round = w
                    while round < rounds {
                        await plan.round(round, worker: w, target: mine[(round / workers) % mine.count], clients, tally)
                        round += workers
                    }
                }
            }
        }
        let seconds = Double((ContinuousClock.now - started).components.seconds) + Double((ContinuousClock.now - started).components.attoseconds) / 1e18
        let (done, failed, keys) = tally.totals
        say(String(format: "soak: done: %d calls in %.0f s (%.0f calls/s), %d failed, %d order keys", done, seconds, Double(done) / seconds, failed, keys))
        // Held open until told: the watcher counts descriptors with the load's connections still up.
        while readLine() != nil {}
        if failed > 0 { throw ExitCode(1) }
    }
}

/// A line to standard output at once (print's buffer would hold it while the watcher waits for it).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

struct Target: Sendable {
    var conversationId: String
    var customerId: String
}

struct Mesh: Sendable {
    var gateway: PanelService.Client
    var conversation: ConversationService.Client
    var order: OrderService.Client
    var loyalty: LoyaltyService.Client
}

/// Calls done and failed, with the first failures kept to print; a progress line each tenth.
final class Tally: Sendable {
    let total: Int
    private let state = Mutex<(done: Int, failed: Int, keys: Int, printed: Int)>((0, 0, 0, 0))

    init(total: Int) { self.total = total }

    var totals: (done: Int, failed: Int, keys: Int) { state.withLock { ($0.done, $0.failed, $0.keys) } }

    func record(_ calls: Int, failures: [String], keys: Int) {
        let (before, after, failed, printable) = state.withLock { s -> (Int, Int, Int, [String]) in
            let before = s.done
            s.done += calls
            s.failed += failures.count
            s.keys += keys
            let room = max(0, 20 - s.printed)
            s.printed += min(room, failures.count)
            return (before, s.done, s.failed, Array(failures.prefix(room)))
        }
        for failure in printable { say("soak: FAILED \(failure)") }
        let tenth = max(total / 10, 1)
        if before / tenth != after / tenth {
            say("soak: \(after) calls, \(failed) failed")
        }
        let half = max(total / 2, 1)
        if before < half, after >= half { say("soak: warmed up") }
    }
}

/// One round of twenty calls for one conversation, each answer checked.
struct Plan: Sendable {
    static let callsPerRound = 20
    let shop: String
    let pageId: String
    let tagId: String
    let variantId: String
    let keyPrefix: String

    func round(_ round: Int, worker: Int, target: Target, _ mesh: Mesh, _ tally: Tally) async {
        var failures: [String] = []
        var calls = 0
        func call<T>(_ name: String, _ body: () async throws(RPCError) -> T, check: (T) -> String? = { _ in nil }) async -> T? {
            calls += 1
            switch await rpcResult(body) {
            case .success(let value):
                if let problem = check(value) {
                    failures.append("\(name) \(target.conversationId): \(problem)")
                    return nil
                }
                return value
            case .failure(let error):
                failures.append("\(name) \(target.conversationId): \(error)")
                return nil
            }
        }
        let (shop, conversation, customer) = (self.shop, target.conversationId, target.customerId)
        let panel = GetPanelRequest(shopId: shop, pageId: pageId, conversationId: conversation)
        let whole: (Panel) -> String? = { $0.unavailableSections.isEmpty ? nil : "sections unavailable: \($0.unavailableSections.map(\.section))" }

        _ = await call("GetPanel", { () throws(RPCError) in try await mesh.gateway.getPanel(panel) }, check: whole)
        _ = await call("ListConversations", { () throws(RPCError) in
            try await mesh.conversation.listConversations(ListConversationsRequest(shopId: shop, pageId: pageId, pageSize: 20))
        }, check: { $0.conversations.isEmpty ? "no conversations listed" : nil })
        _ = await call("GetConversation", { () throws(RPCError) in
            try await mesh.conversation.getConversation(GetConversationRequest(shopId: shop, conversationId: conversation))
        }, check: { $0.customerId == customer ? nil : "another customer: \($0.customerId)" })
        let tagId = self.tagId
        _ = await call("AttachTag", { () throws(RPCError) in
            try await mesh.conversation.attachTag(AttachTagRequest(shopId: shop, conversationId: conversation, tagId: tagId, staffId: "soak-staff"))
        }, check: { $0.tags.contains { $0.tagId == tagId } ? nil : "the tag is not attached" })
        _ = await call("GetPanel", { () throws(RPCError) in try await mesh.gateway.getPanel(panel) }, check: whole)
        _ = await call("DetachTag", { () throws(RPCError) in
            try await mesh.conversation.detachTag(DetachTagRequest(shopId: shop, conversationId: conversation, tagId: tagId, staffId: "soak-staff"))
        }, check: { $0.tags.contains { $0.tagId == tagId } ? "the tag is still attached" : nil })
        let text = "Soak note \(round)"
        let note = await call("AddNote", { () throws(RPCError) in
            try await mesh.conversation.addNote(AddNoteRequest(shopId: shop, customerId: customer, text: text, staffId: "soak-staff"))
        }, check: { $0.text == text ? nil : "the note says \($0.text)" })
        _ = await call("ListNotes", { () throws(RPCError) in
            try await mesh.conversation.listNotes(ListNotesRequest(shopId: shop, customerId: customer, pageSize: 20))
        }, check: { notes in note.map { n in notes.notes.contains { $0.noteId == n.noteId } ? nil : "the new note is not listed" } ?? nil })
        if let note {
            _ = await call("DeleteNote", { () throws(RPCError) in
                try await mesh.conversation.deleteNote(DeleteNoteRequest(shopId: shop, customerId: customer, noteId: note.noteId, staffId: "soak-staff"))
            })
        } else {
            calls += 1
        }
        _ = await call("ListMessages", { () throws(RPCError) in
            try await mesh.conversation.listMessages(ListMessagesRequest(shopId: shop, conversationId: conversation, pageSize: 20))
        })
        _ = await call("GetMember", { () throws(RPCError) in
            try await mesh.loyalty.getMember(GetMemberRequest(shopId: shop, customerId: customer))
        }, check: { $0.customerId == customer ? nil : "another member: \($0.customerId)" })
        let points = Int64(1 + round % 50)
        let given = await call("AdjustPoints +", { () throws(RPCError) in
            try await mesh.loyalty.adjustPoints(AdjustPointsRequest(shopId: shop, customerId: customer, points: points, reason: "soak", staffId: "soak-staff"))
        })
        if given != nil {
            _ = await call("AdjustPoints -", { () throws(RPCError) in
                try await mesh.loyalty.adjustPoints(AdjustPointsRequest(shopId: shop, customerId: customer, points: -points, reason: "soak", staffId: "soak-staff"))
            }, check: { $0.points >= 0 ? nil : "a negative balance" })
        } else {
            calls += 1
        }
        _ = await call("ListPointsHistory", { () throws(RPCError) in
            try await mesh.loyalty.listPointsHistory(ListPointsHistoryRequest(shopId: shop, customerId: customer, pageSize: 10))
        })
        let key = "\(keyPrefix)-\(worker)-\(round)"
        let create = CreateOrderRequest(
            shopId: shop, customerId: customer, items: [OrderItemRequest(variantId: variantId, quantity: Int32(1 + round % 3))],
            shipping: ShippingInfo(name: "Khách soak", phone: "0912345678", address: Address(street: "88 Nguyễn Trãi", district: "Quận 5", province: "Hồ Chí Minh")),
            paymentMethod: .bankTransfer, staffId: "soak-staff", channel: .social, idempotencyKey: key, pageId: pageId
        )
        let order = await call("CreateOrder", { () throws(RPCError) in try await mesh.order.createOrder(create) },
                               check: { $0.customerId == customer ? nil : "ordered for \($0.customerId)" })
        // The same key again: the order it made, not another (R-ORD idempotency).
        _ = await call("CreateOrder again", { () throws(RPCError) in try await mesh.order.createOrder(create) },
                       check: { again in order.map { $0.orderId == again.orderId ? nil : "a second order \(again.orderId) for key \(key)" } ?? nil })
        _ = await call("GetOrderSummary", { () throws(RPCError) in
            try await mesh.order.getOrderSummary(GetOrderSummaryRequest(shopId: shop, customerId: customer, recentLimit: 5))
        }, check: { $0.stats == nil || $0.stats!.orderCount > 0 ? nil : "no orders counted" })
        if let order {
            if round % 2 == 0 {
                _ = await call("MarkOrderPaid", { () throws(RPCError) in
                    try await mesh.order.markOrderPaid(MarkOrderPaidRequest(shopId: shop, orderId: order.orderId, staffId: "soak-staff"))
                }, check: { $0.status == .paid ? nil : "status \($0.status)" })
            } else {
                _ = await call("CancelOrder", { () throws(RPCError) in
                    try await mesh.order.cancelOrder(CancelOrderRequest(shopId: shop, orderId: order.orderId, staffId: "soak-staff", reason: "soak"))
                }, check: { $0.status == .cancelled ? nil : "status \($0.status)" })
            }
            _ = await call("GetOrder", { () throws(RPCError) in
                try await mesh.order.getOrder(GetOrderRequest(shopId: shop, orderId: order.orderId))
            }, check: { $0.orderId == order.orderId ? nil : "another order" })
        } else {
            calls += 2
        }
        _ = await call("GetPanel", { () throws(RPCError) in try await mesh.gateway.getPanel(panel) }, check: whole)
        precondition(calls == Self.callsPerRound, "a round made \(calls) calls")
        tally.record(calls, failures: failures, keys: 1)
    }
}
