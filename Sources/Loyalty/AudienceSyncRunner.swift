import ChatMeshAPI
import MeshRPC

/// R-SEG-3: runs the audience syncs that are due (asked for, or their day has come):
/// makes the custom audience on the first run, walks the segment and what the audience
/// was sent side by side, sends who joined and who left in sessions of numbered batches,
/// and records each accepted batch before the next, so a run stopped by a crash, a rate
/// limit or an expired token resumes from what the platform holds.
public struct AudienceSyncRunner: Sendable {
    public static let dayMs: Int64 = 86_400_000
    let store: LoyaltyStore
    let platform: any AudiencePlatform
    let sealer: AdTokenSealer
    let batchSize: Int
    let now: @Sendable () -> Int64

    public init(
        store: LoyaltyStore, platform: any AudiencePlatform, sealer: AdTokenSealer, batchSize: Int = AudienceRules.maxBatch,
        now: @escaping @Sendable () -> Int64 = WallClock.nowMs
    ) {
        self.store = store
        self.platform = platform
        self.sealer = sealer
        self.batchSize = min(max(batchSize, 1), AudienceRules.maxBatch)
        self.now = now
    }

    /// Runs every due sync, one after another; returns how many ran.
    @discardableResult
    public func runDue() async throws -> Int {
        var ran = 0
        // A run holds its claim this long; one that outlives it (a dead replica) is taken again.
        while let run = try await store.claimDueAudienceSync(nowMs: now(), leaseMs: 30 * 60_000) {
            try await self.run(run)
            ran += 1
        }
        return ran
    }

    /// What one run did.
    struct Tally {
        var uploaded: Int64 = 0
        var removed: Int64 = 0
        var skipped: Int64 = 0
    }

    func run(_ run: LoyaltyStore.AudienceRun) async throws {
        var tally = Tally()
        let daily: Int64? = run.schedule == .off ? nil : now() + Self.dayMs
        do {
            guard let account = try await store.adAccount(shop: run.shop) else {
                throw AudiencePlatformError.refused("the shop has no ad account linked (LinkAdAccount)")
            }
            guard let token = sealer.open(account.sealedToken, shop: run.shop) else {
                throw AudiencePlatformError.refused("the ad account's token cannot be read (CHATMESH_AUTH_KEY changed?): link the ad account again")
            }
            let rule = try await store.segmentRule(shop: run.shop, segmentId: run.segmentId)
            var audienceId = run.audienceId
            if audienceId.isEmpty {
                let name = try await store.segments(shop: run.shop).first { $0.segmentId == run.segmentId }?.name ?? run.segmentId
                audienceId = try await platform.createAudience(adAccountId: account.id, name: "ChatMesh: \(name)", token: token)
                try await store.setAudienceId(shop: run.shop, segmentId: run.segmentId, audienceId: audienceId)
            }
            let estimate = Int(try await store.countSegment(shop: run.shop, rule: rule))
            var adds = Uploader(kind: .add, estimate: estimate)
            var removes = Uploader(kind: .remove, estimate: estimate)
            let send: (inout Uploader, Bool) async throws -> Void = { uploader, last in
                while let batch = uploader.next(size: batchSize, last: last) {
                    try await platform.send(batch.batch, audienceId: audienceId, token: token)
                    try await store.recordAudienceBatch(shop: run.shop, segmentId: run.segmentId, kind: batch.batch.kind, members: batch.members)
                    if batch.batch.kind == .add { tally.uploaded += Int64(batch.members.count) } else { tally.removed += Int64(batch.members.count) }
                }
            }
            // The walk: both sides a page at a time, in customer id order.
            var current = Pager { after, limit in
                try await store.segmentMembers(shop: run.shop, rule: rule, after: after, limit: limit).map {
                    AudienceRules.Member(customerId: $0.customerId, identity: AudienceRules.Identity(phone: $0.phone, email: $0.email))
                }
            }
            var sent = Pager { after, limit in try await store.audienceMembers(shop: run.shop, segmentId: run.segmentId, after: after, limit: limit) }
            while true {
                let step = AudienceRules.step(current: try await current.peek(), sent: try await sent.peek())
                if !step.takesCurrent && !step.takesSent { break }
                if step.takesCurrent { current.take() }
                if step.takesSent { sent.take() }
                if step.skipped { tally.skipped += 1 }
                for change in step.changes {
                    switch change {
                    case .add(let customer, let identity): adds.append(customer, identity)
                    case .remove(let customer, let identity): removes.append(customer, identity)
                    }
                }
                // Removals first: a changed member's old identity leaves before their new one is added.
                try await send(&removes, false)
                try await send(&adds, false)
            }
            try await send(&removes, true)
            try await send(&adds, true)
            try await store.finishAudienceRun(
                run, status: .synced, uploaded: tally.uploaded, removed: tally.removed, skipped: tally.skipped, error: "", nextRunAtMs: daily, nowMs: now()
            )
        } catch let error as AudiencePlatformError {
            // A temporary failure is tried again when the platform allows (at least a minute on); a refusal waits for its day.
            var next = daily
            if case .temporary(_, let after) = error { next = now() + max(after, 60_000) }
            try await store.finishAudienceRun(
                run, status: .failed, uploaded: tally.uploaded, removed: tally.removed, skipped: tally.skipped, error: error.reason, nextRunAtMs: next, nowMs: now()
            )
        } catch let error as LoyaltyError {
            try await store.finishAudienceRun(
                run, status: .failed, uploaded: tally.uploaded, removed: tally.removed, skipped: tally.skipped, error: error.rpcError.message, nextRunAtMs: daily,
                nowMs: now()
            )
        }
    }

    /// One side of the walk, read a page at a time.
    struct Pager {
        static let page = 10_000
        let read: (_ after: String, _ limit: Int) async throws -> [AudienceRules.Member]
        var buffer: [AudienceRules.Member] = []
        var index = 0
        var after = ""
        var done = false

        init(_ read: @escaping (_ after: String, _ limit: Int) async throws -> [AudienceRules.Member]) {
            self.read = read
        }

        mutating func peek() async throws -> AudienceRules.Member? {
            if index == buffer.count && !done {
                buffer = try await read(after, Self.page)
                index = 0
                done = buffer.count < Self.page
                if let last = buffer.last { after = last.customerId }
            }
            return index < buffer.count ? buffer[index] : nil
        }

        mutating func take() {
            index += 1
        }
    }

    /// Changes gathered into a session's batches. A batch goes only once a change after it is
    /// known (or the walk is over), so the session's last batch is the one flagged last.
    struct Uploader {
        let kind: AudienceBatch.Kind
        let estimate: Int
        let sessionId = Int64.random(in: 1...Int64.max)
        var pending: [(customerId: String, identity: AudienceRules.Identity)] = []
        var sequence = 0

        init(kind: AudienceBatch.Kind, estimate: Int) {
            self.kind = kind
            self.estimate = estimate
        }

        mutating func append(_ customer: String, _ identity: AudienceRules.Identity) {
            pending.append((customer, identity))
        }

        mutating func next(size: Int, last: Bool) -> (batch: AudienceBatch, members: [(customerId: String, identity: AudienceRules.Identity)])? {
            guard last ? !pending.isEmpty : pending.count > size else { return nil }
            let members = Array(pending.prefix(size))
            pending.removeFirst(members.count)
            sequence += 1
            let batch = AudienceBatch(
                kind: kind, rows: members.map(\.identity), sessionId: sessionId, sequence: sequence, last: last && pending.isEmpty,
                estimatedTotal: max(estimate, sequence * size)
            )
            return (batch, members)
        }
    }
}
