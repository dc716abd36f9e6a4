/// R-MSG-2 profit as a plain decision: which broadcast a paid order counts for. The
/// last broadcast message delivered to the customer before the payment wins (last
/// touch), if the payment falls within that broadcast's attribution window; a message
/// delivered after the payment never counts.
public enum BroadcastAttribution {
    public static let defaultDays = 7
    public static let maxDays = 90
    static let dayMs: Int64 = 86_400_000

    /// A broadcast message the customer received.
    public struct Touch: Sendable, Hashable {
        public var broadcastId: String
        public var deliveredAtMs: Int64
        public var windowDays: Int

        public init(broadcastId: String, deliveredAtMs: Int64, windowDays: Int) {
            self.broadcastId = broadcastId
            self.deliveredAtMs = deliveredAtMs
            self.windowDays = windowDays
        }
    }

    /// The broadcast an order paid at `paidAtMs` counts for, if any.
    public static func credit(paidAtMs: Int64, touches: [Touch]) -> String? {
        touches.filter { $0.deliveredAtMs <= paidAtMs && paidAtMs - $0.deliveredAtMs <= Int64($0.windowDays) * dayMs }
            .max { ($0.deliveredAtMs, $0.broadcastId) < ($1.deliveredAtMs, $1.broadcastId) }?.broadcastId
    }

    /// Profit: what the attributed orders brought in, less what the broadcast cost.
    public static func profit(revenueVnd: Int64, costVnd: Int64) -> Int64 { revenueVnd - costVnd }
}
