import ChatMeshAPI
import Foundation
@testable import Loyalty
import MeshRPC
import MeshStore
import MeshTestSupport
import SQLKit
import Synchronization
import VietnamCommerce

/// messaging-svc's SendMessage as a script: records every request and answers
/// with `failure` while one is set (UNAVAILABLE, a bad template, …).
final class ScriptedMessenger: VoucherMessenger {
    let requests = Mutex<[SendMessageRequest]>([])
    let failure = Mutex<RPCError?>(nil)
    /// The shop's default templates, as messaging-svc keeps them.
    let defaults = Mutex<[MessageDefault.Use: MessageDefault]>([:])

    func messageDefault(shop: String, use: MessageDefault.Use) async throws(RPCError) -> MessageDefault {
        guard let found = defaults.withLock({ $0[use] }) else { throw RPCError.failedPrecondition("template_id: none given, and no default for \(use.protoName)") }
        return found
    }

    func send(_ request: SendMessageRequest) async throws(RPCError) -> SendMessageResponse {
        requests.withLock { $0.append(request) }
        if let failure = failure.withLock({ $0 }) { throw failure }
        // Idempotent by key, as messaging-svc is: the message id follows from it.
        return SendMessageResponse(messageId: "msg-" + request.idempotencyKey, status: "SENT", costVnd: 300)
    }
}

/// loyalty-svc's handler behind a router that checks tokens, as over the wire,
/// on a fresh SQLite file, with a clock the test moves.
struct LoyaltyHarness {
    static let shop = "shop-l"
    static let key = "loyalty-tests-key"
    let database: any SQLStore
    let store: LoyaltyStore
    let messenger = ScriptedMessenger()
    let vouchers: VoucherDelivery
    let client: LoyaltyService.Client
    let router: RPCRouter
    /// 2026-11-25 10:00 Vietnam time.
    let clock = TestClock(VietnamTime.ms(year: 2026, month: 11, day: 25, hour: 10))

    init() async throws {
        database = try await TestDatabase.open("loyalty")
        store = try await LoyaltyStore.open(database)
        vouchers = VoucherDelivery(store: store, messenger: messenger)
        let clock = self.clock
        router = RPCRouter(
            services: [LoyaltyServiceHandler(store: store, vouchers: vouchers, sealer: AdTokenSealer(authKey: Self.key), now: { clock.now })],
            verifier: TokenVerifier(key: Self.key)
        )
        client = Self.client(router, shop: Self.shop)
    }

    /// Runs `body` on a fresh harness and closes its database however `body` ends.
    static func run(_ body: (LoyaltyHarness) async throws -> Void) async throws {
        let h = try await LoyaltyHarness()
        try await h.database.closing { try await body(h) }
    }

    /// A client acting as a staff member of `shop`.
    func client(shop: String, staff: String = "staff-1") -> LoyaltyService.Client {
        Self.client(router, shop: shop, staff: staff)
    }

    static func client(_ router: RPCRouter, shop: String, staff: String = "staff-1") -> LoyaltyService.Client {
        let token = TokenSigner(key: key).mint(shopId: shop, staffId: staff, role: .agent)
        return LoyaltyService.Client(channel: InProcessChannel(router: router), defaultOptions: .bearer(token))
    }

    /// A paid order for `customer`, `daysAgo` before the clock.
    @discardableResult
    func paid(
        _ customer: String, _ order: String, vnd: Int64, daysAgo: Int64 = 0, offer: Bool = false, district: String = "", province: String = ""
    ) async throws -> RecordOrderEventResponse {
        try await client.recordOrderEvent(RecordOrderEventRequest(
            shopId: Self.shop, eventId: "paid-" + order, orderId: order, customerId: customer, kind: .paid, amountVnd: vnd, channel: .social,
            district: district, province: province, usedOffer: offer, atMs: clock.now - daysAgo * VietnamTime.dayMs
        ))
    }

    /// Every table's row count, to show that a refused call wrote nothing.
    func rowCounts() async throws -> [String: Int] {
        try await database.read { db in
            var counts: [String: Int] = [:]
            for table in ["programs", "tiers", "members", "member_tags", "orders", "points_lots", "points_ledger", "redemptions", "seen_events",
                          "segments", "referral_campaigns", "vouchers"] {
                counts[table] = try await db.raw("SELECT COUNT(*) AS n FROM \(unsafeRaw: table)").first()!.decode(column: "n", as: Int.self)
            }
            return counts
        }
    }

    /// The sum of a member's ledger entries.
    func ledgerSum(_ customer: String) async throws -> Int64 {
        try await store.ledger(shop: Self.shop, customerId: customer).reduce(0) { $0 + $1.points }
    }
}
