import ChatMeshAPI
import Foundation
import MeshRPC
import MeshStore
@testable import Messaging
import MeshTestSupport
import Synchronization
import Testing

/// R-CONV-9 / R-MSG-5 in messaging-svc: each platform's window, and one platform call per
/// delivery key whatever is asked again, with what an interrupted attempt answers.
@Suite struct ReplyDeliveryTests {
    static let now: Int64 = 1_800_000_000_000
    static let hour: Int64 = 3_600_000

    static func request(_ platform: Page.Platform = .facebook, _ target: ChatMessage.Target = .inbox, lastAgo: Int64? = 1, commentAgo: Int64 = 0, key: String = "msg_1#1") -> DeliverReplyRequest {
        DeliverReplyRequest(
            shopId: "shop-a", deliveryKey: key, pageId: "page-1", platform: platform, target: target, recipient: "24681357", commentId: "111_222",
            text: "Dạ còn chị", lastCustomerMessageAtMs: lastAgo.map { now - $0 } ?? 0, commentAtMs: now - commentAgo, customerId: "cu_1"
        )
    }

    @Test func eachPlatformsWindow() {
        func permission(_ r: DeliverReplyRequest, zaloDays: Int64 = 7) -> ReplyDelivery.Permission {
            ReplyDelivery.permission(r, nowMs: Self.now, zaloWindowMs: zaloDays * 24 * Self.hour)
        }
        #expect(permission(Self.request(lastAgo: 23 * Self.hour)) == .send(humanAgent: false))
        #expect(permission(Self.request(lastAgo: 25 * Self.hour)) == .send(humanAgent: true))
        guard case .refused(let late) = permission(Self.request(lastAgo: 8 * 24 * Self.hour)), case .refused(let never) = permission(Self.request(lastAgo: nil)) else {
            Issue.record("Messenger past 7 days, or never written to, is refused")
            return
        }
        #expect(late.hasPrefix("window closed") && late.contains("R-MSG-5") && never.contains("never"))
        #expect(permission(Self.request(.facebook, .commentPublic, lastAgo: nil, commentAgo: 30 * 24 * Self.hour)) == .send(humanAgent: false))
        #expect(permission(Self.request(.facebook, .commentPrivate, lastAgo: nil, commentAgo: 6 * 24 * Self.hour)) == .send(humanAgent: false))
        guard case .refused(let old) = permission(Self.request(.facebook, .commentPrivate, commentAgo: 7 * 24 * Self.hour)) else {
            Issue.record("a private reply past 7 days is refused")
            return
        }
        #expect(old.contains("7 days"))
        #expect(permission(Self.request(.zalo, .inbox, lastAgo: 6 * 24 * Self.hour)) == .send(humanAgent: false))
        guard case .refused(let zalo) = permission(Self.request(.zalo, .inbox, lastAgo: 3 * 24 * Self.hour), zaloDays: 2),
              case .refused = permission(Self.request(.zalo, .inbox, lastAgo: nil)), case .refused = permission(Self.request(.zalo, .commentPublic)) else {
            Issue.record("Zalo's configured window, a customer who never wrote, and Zalo comments are refused")
            return
        }
        #expect(zalo.contains("2 days"))
    }

    @Test func anInterruptedAttemptIsNeverSentAgainUnlessThePlatformDedupes() {
        #expect(ReplyDelivery.next(.nothing, target: .inbox, platform: "Messenger") == .call)
        #expect(ReplyDelivery.next(.retrying, target: .inbox, platform: "Messenger") == .call)
        #expect(ReplyDelivery.next(.sent(platformMessageId: "m"), target: .inbox, platform: "Messenger") == .answer(.sent(platformMessageId: "m")))
        #expect(ReplyDelivery.next(.failed(reason: "r"), target: .inbox, platform: "Messenger") == .answer(.failed(reason: "r")))
        for target in [ChatMessage.Target.inbox, .commentPublic] {
            guard case .answer(.failed(let reason)) = ReplyDelivery.next(.attempting, target: target, platform: "Zalo") else {
                Issue.record("an interrupted \(target) attempt is not called again")
                continue
            }
            #expect(reason.contains("interrupted") && reason.contains("Zalo"))
        }
        #expect(ReplyDelivery.next(.attempting, target: .commentPrivate, platform: "Messenger") == .call)
    }

    /// Counts calls; answers from a script, or stops the "process" between the platform's acceptance and the record.
    final class ScriptedPlatform: ReplyAdapter {
        var platformName: String { "Messenger" }
        let calls = Mutex<[ReplyDelivery.Reply]>([])
        let answers: Mutex<[ReplyAdapterAnswer]>

        init(_ answers: [ReplyAdapterAnswer]) {
            self.answers = Mutex(answers)
        }

        func send(_ reply: ReplyDelivery.Reply) async -> ReplyAdapterAnswer {
            calls.withLock { $0.append(reply) }
            return answers.withLock { $0.isEmpty ? .sent(platformMessageId: "m_extra") : $0.removeFirst() }
        }
    }

    @Test func oneCallPerKeyAndTheAnswerIsRemembered() async throws {
        let database = try await TestDatabase.open("messaging")
        let store = try await MessagingStore.open(database)
        let platform = ScriptedPlatform([
            .temporary(reason: "rate limited", afterMs: 30_000), .sent(platformMessageId: "m_1"), .refused(reason: "the customer blocked the page"),
        ])
        let sender = ReplySender(store: store, adapters: ReplyAdapters(messenger: platform), now: { Self.now })
        #expect(try await sender.deliver(Self.request(lastAgo: 25 * Self.hour)) == .retry(reason: "rate limited", afterMs: 30_000))
        #expect(try await sender.deliver(Self.request(lastAgo: 25 * Self.hour)) == .sent(platformMessageId: "m_1"))
        #expect(try await sender.deliver(Self.request(lastAgo: 25 * Self.hour)) == .sent(platformMessageId: "m_1"))
        #expect(platform.calls.withLock { $0.map(\.humanAgent) } == [true, true])
        // A window refusal is answered and remembered without a call; another key is its own.
        guard case .failed = try await sender.deliver(Self.request(lastAgo: nil, key: "msg_2#1")) else { Issue.record("refused by the window"); return }
        #expect(try await sender.deliver(Self.request(key: "msg_3#1")) == .failed(reason: "the customer blocked the page"))
        #expect(platform.calls.withLock { $0.count } == 3)
        // A key left ATTEMPTING (the process died after the platform took it) is not sent again.
        try await database.write { db in
            try await MessagingStore.recordReply(db, shop: "shop-a", key: "msg_4#1", state: .attempting, platformMessageId: "", reason: "", nowMs: Self.now)
        }
        guard case .failed(let interrupted) = try await sender.deliver(Self.request(key: "msg_4#1")) else { Issue.record("interrupted"); return }
        #expect(interrupted.contains("may have reached the customer") && platform.calls.withLock { $0.count } == 3)
        // No provider for a platform: FAILED, saying so.
        guard case .failed(let none) = try await sender.deliver(Self.request(.zalo, .inbox, key: "msg_5#1")) else { Issue.record("no Zalo provider"); return }
        #expect(none.contains("CHATMESH_REPLY_PROVIDERS"))
        try await database.close()
    }
}
