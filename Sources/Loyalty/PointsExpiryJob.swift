import VietnamCommerce

/// R-PTS-2 and R-LOY-2 over time, as loyalty-svc runs them (hourly by default,
/// CHATMESH_EXPIRY_INTERVAL): points whose expiry has come leave every shop's
/// balances each round; once a Vietnam day, members of rolling and calendar
/// cycles are re-ranked, since spend leaves their window as days pass.
public actor PointsExpiryJob {
    /// What one round did, for the log.
    public struct Round: Sendable, Hashable {
        /// Points expired, by shop (shops with none left out).
        public var expired: [String: Int64] = [:]
        /// Shops whose members were re-ranked.
        public var reranked: [String] = []
    }

    let store: LoyaltyStore
    /// The Vietnam day members were last re-ranked on.
    var rankedDay: Int64 = -1

    public init(store: LoyaltyStore) {
        self.store = store
    }

    /// One round at `nowMs` over every shop with a program.
    public func run(nowMs: Int64) async throws -> Round {
        let today = VietnamTime.dayNumber(atMs: nowMs)
        // Claimed before the round, as loyalty-svc always has: a round that fails half-way leaves the
        // re-rank to tomorrow's first round rather than repeating a whole-shop re-rank every hour.
        let rankToday = today != rankedDay
        rankedDay = today
        var round = Round()
        for (shop, program) in try await store.programs() {
            let expired = try await store.expire(shop: shop, asOfMs: nowMs, nowMs: nowMs)
            if expired > 0 { round.expired[shop] = expired }
            // A lifetime cycle's window never moves: its members rank when they buy.
            if rankToday && program.cycle != .lifetime {
                try await store.rerankAll(shop: shop, nowMs: nowMs)
                round.reranked.append(shop)
            }
        }
        return round
    }
}
