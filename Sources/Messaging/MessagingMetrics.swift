import ChatMeshAPI
import CoreMetrics
import Foundation
import MeshMetrics
import MeshRPC
import SQLKit
import Synchronization

/// messaging-svc's own series for /metrics. Counted as messages are settled:
/// `chatmesh_messages_total{channel,status}` (the provider's answer: SENT, DELIVERED, FAILED, or QUEUED
/// for a temporary failure) and `chatmesh_messages_charged_vnd_total{channel}` (what the shops paid).
/// Read per scrape: `chatmesh_broadcasts_running` and `chatmesh_broadcast_recipients_remaining`, and
/// `chatmesh_zns_quality_shops{level}` (how many shops' OAs stand at each ZNS level, R-ZNS-1).
public final class MessagingMetrics: Sendable {
    private let messages: [String: Counter]
    private let charged: [Template.Channel: Counter]
    private let factory: any MetricsFactory
    /// ZNS levels take a transaction per shop: read at most once a minute, not every scrape.
    private let znsRead = Mutex<ContinuousClock.Instant?>(nil)
    static let znsEvery: Duration = .seconds(60)

    static let channels: [Template.Channel] = [.zns, .sms, .email, .messenger]

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        var messages: [String: Counter] = [:]
        var charged: [Template.Channel: Counter] = [:]
        for channel in Self.channels {
            for status in MessageDelivery.Status.allCases {
                messages[Self.key(channel, status)] = Counter(
                    label: "chatmesh_messages_total", dimensions: [("channel", channel.protoName), ("status", status.rawValue)], factory: factory
                )
            }
            charged[channel] = Counter(label: "chatmesh_messages_charged_vnd_total", dimensions: [("channel", channel.protoName)], factory: factory)
        }
        self.messages = messages
        self.charged = charged
    }

    private static func key(_ channel: Template.Channel, _ status: MessageDelivery.Status) -> String {
        "\(channel.rawValue)/\(status.rawValue)"
    }

    /// A send settled (not a repeat of an idempotency key: that was counted the first time).
    func settled(_ channel: Template.Channel, _ sent: MessageDelivery.Sent) {
        messages[Self.key(channel, sent.status)]?.increment()
        if sent.status != .failed, sent.costVnd > 0 {
            charged[channel]?.increment(by: sent.costVnd)
        }
    }

    /// The per-scrape reads of `store`.
    public func collector(store: MessagingStore, policy: ZnsQualityPolicy = ZnsQualityPolicy()) -> MetricsCollector {
        let running = Meter(label: "chatmesh_broadcasts_running", dimensions: [], factory: factory)
        let remaining = Meter(label: "chatmesh_broadcast_recipients_remaining", dimensions: [], factory: factory)
        let levels: [(ZnsQuality.Level, Meter)] = [ZnsQuality.Level.good, .medium, .poor].map { level in
            (level, Meter(label: "chatmesh_zns_quality_shops", dimensions: [("level", level.protoName.lowercased())], factory: factory))
        }
        return MetricsCollector(name: "messaging") { [self] in
            let (count, left) = try await store.runningBroadcasts()
            running.set(Double(count))
            remaining.set(Double(left))
            let due = znsRead.withLock { last -> Bool in
                guard last.map({ ContinuousClock.now - $0 >= Self.znsEvery }) ?? true else { return false }
                last = .now
                return true
            }
            guard due else { return }
            var shops: [ZnsQuality.Level: Int] = [:]
            let nowMs = WallClock.nowMs()
            for shop in try await store.znsShops() {
                let quality = try await store.znsQuality(shop: shop, policy: policy, nowMs: nowMs)
                shops[quality.level, default: 0] += 1
            }
            for (level, meter) in levels {
                meter.set(Double(shops[level] ?? 0))
            }
        }
    }
}

extension MessagingStore {
    /// Broadcasts running now, and the recipients they have left.
    func runningBroadcasts() async throws -> (count: Int64, remaining: Int64) {
        try await db.read { db in
            let row = try await db.raw("""
                SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN total > sent + failed + skipped THEN total - sent - failed - skipped ELSE 0 END), 0) AS left
                FROM broadcasts WHERE status = \(bind: Int64(Broadcast.Status.running.rawValue))
                """).first()
            return (try row?.int64("n") ?? 0, try row?.int64("left") ?? 0)
        }
    }

    /// The shops that have used ZNS (their quality standing is kept).
    func znsShops() async throws -> [String] {
        try await db.read { db in
            try await db.raw("SELECT shop_id FROM zns_state ORDER BY shop_id").all().map { try $0.string("shop_id") }
        }
    }
}
