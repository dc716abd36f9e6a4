import ChatMeshAPI
import MeshRPC
import Synchronization
import MeshStore
import VietnamCommerce

/// Sends broadcasts (R-MSG-2): takes the audience from loyalty-svc, then goes
/// through it in batches — render and check each member, reserve the batch,
/// deliver it with a bounded number of provider calls in flight, settle it.
/// Counters move with every batch, so GetBroadcast shows progress while it
/// runs. Everything it needs to go on is in the store: after a restart it
/// picks RUNNING broadcasts up where they were (see MessagingStore+Broadcasts).
/// Replicas share the work through leases (RunnerLease): each broadcast is worked
/// by one runner at a time, and taken over when its runner stops renewing.
public struct BroadcastRunner: Sendable {
    /// How many recipients a round takes and how many sends run at once (CHATMESH_BROADCAST_BATCH, CHATMESH_BROADCAST_CONCURRENCY).
    public struct Settings: Sendable {
        public var batchSize = 500
        /// Provider calls in flight at once.
        public var concurrency = 32
        public var audiencePageSize = 1_000
        /// Rounds loyalty-svc may fail in a row before the broadcast is FAILED.
        public var maxAttempts = 30
        /// A temporary provider failure is tried again this many times, with back-off, before it counts as failed.
        public var retries = 2
        public var retryBackoff: Duration = .milliseconds(500)
        /// This runner among the replicas (CHATMESH_MESSAGING_LEASE_S sets the duration).
        public var lease = RunnerLease(holder: RunnerLease.uniqueHolder())

        public init() {}
    }

    let store: MessagingStore
    let audience: any AudienceSource
    let sender: MessageSender
    let settings: Settings

    public init(store: MessagingStore, audience: any AudienceSource, sender: MessageSender, settings: Settings = Settings()) {
        self.store = store
        self.audience = audience
        self.sender = sender
        self.settings = settings
    }

    /// Works every due broadcast no other replica holds to its end, or until cancelled: then it
    /// stops after the batch in hand and gives the broadcast up for another replica to go on with.
    /// Returns how many broadcasts it worked on.
    @discardableResult
    public func runDue() async throws -> Int {
        let now = sender.now()
        // After a failed round (loyalty-svc unreachable) wait 1 s, 2 s, 4 s … up to a minute before the next.
        let due = try await store.dueBroadcasts(nowMs: now, holder: settings.lease.holder).filter { job in
            job.attempts == 0 || now - job.updatedAtMs >= min(60_000, 1_000 << min(job.attempts - 1, 6))
        }
        var worked = 0
        for job in due where !Task.isCancelled {
            guard try await store.claimBroadcast(shop: job.shop, id: job.broadcastId, lease: settings.lease, nowMs: sender.now()) else { continue }
            worked += 1
            let held = HeldLease(store: store, job: job, lease: settings.lease, now: sender.now)
            let heartbeat = Task { await held.keep() }
            defer { heartbeat.cancel() }
            do {
                try await run(job, held: held)
            } catch MessagingError.leaseLost {
                // Another replica has it now, and goes on from what this one settled.
            }
            // Not cancelled with the caller: at shutdown the next replica should not have to wait out the lease.
            let (store, lease) = (store, settings.lease)
            try await Task { try await store.releaseBroadcast(shop: job.shop, id: job.broadcastId, lease: lease) }.value
        }
        return worked
    }

    func run(_ initial: MessagingStore.BroadcastJob, held: HeldLease) async throws {
        let lease = settings.lease
        var job = initial
        if !job.audienceLoaded {
            guard try await loadAudience(job) else { return }
            guard let reloaded = try await store.broadcastJob(shop: job.shop, id: job.broadcastId) else { return }
            job = reloaded
        }
        guard job.status == .running || job.status == .scheduled else { return }
        let template: Template
        do {
            template = try await store.template(shop: job.shop, id: job.templateId)
        } catch let error as MessagingError where error == .noTemplate(job.templateId) {
            try await store.failBroadcast(shop: job.shop, id: job.broadcastId, error: error.rpcError.message, lease: lease, nowMs: sender.now())
            return
        }
        guard let adapter = sender.adapters[template.channel] else {
            try await store.failBroadcast(
                shop: job.shop, id: job.broadcastId, error: "no provider is configured for \(template.channel.protoName)", lease: lease, nowMs: sender.now()
            )
            return
        }
        // A batch reserved before a restart and never settled goes first.
        let left = try await store.unsettled(shop: job.shop, broadcastId: job.broadcastId)
        if !left.isEmpty {
            try await deliverAndSettle(job, left, adapter: adapter, held: held)
        }
        var next = job.nextSeq
        while true {
            // Stopping here (shutdown, or the lease gone) leaves nothing half done: the next runner starts at next_seq.
            if Task.isCancelled { return }
            if held.isLost { throw MessagingError.leaseLost(broadcastId: job.broadcastId) }
            let members = try await store.audience(shop: job.shop, id: job.broadcastId, fromSeq: next, limit: settings.batchSize)
            if members.isEmpty { break }
            next = members[members.count - 1].seq + 1
            let current = try await store.template(shop: job.shop, id: job.templateId)
            let (planned, skipped) = try await plan(job, template: current, members: members)
            let price = sender.prices.price(template.channel)
            if price > 0, !planned.isEmpty, let topUps = sender.topUps {
                try await topUps.ensure(shop: job.shop, needVnd: price * Int64(planned.count))
            }
            let reservation = try await store.reserveBatch(
                shop: job.shop, broadcastId: job.broadcastId, template: current, planned: planned, skipped: skipped, nextSeq: next,
                priceVnd: price, zns: template.channel == .zns ? sender.zns : nil, lease: lease, nowMs: sender.now()
            )
            guard case .reserved(let batch) = reservation else { return }
            try await deliverAndSettle(job, batch, adapter: adapter, held: held)
        }
        try await store.completeBroadcast(shop: job.shop, id: job.broadcastId, lease: lease, nowMs: sender.now())
    }

    /// Takes the whole audience, page by page. False when it cannot go on now.
    func loadAudience(_ job: MessagingStore.BroadcastJob) async throws -> Bool {
        let lease = settings.lease
        guard try await store.beginAudience(shop: job.shop, id: job.broadcastId, lease: lease, nowMs: sender.now()) else { return false }
        var token = ""
        var seq: Int64 = 0
        repeat {
            let page: ListSegmentMembersResponse
            do {
                page = try await audience.members(shop: job.shop, segmentId: job.segmentId, pageToken: token, pageSize: settings.audiencePageSize)
            } catch {
                switch error.code {
                case .notFound, .invalidArgument, .permissionDenied:
                    try await store.failBroadcast(shop: job.shop, id: job.broadcastId, error: "segment_id: \(error.message)", lease: lease, nowMs: sender.now())
                default:
                    try await store.broadcastAttemptFailed(
                        shop: job.shop, id: job.broadcastId, error: "loyalty-svc: \(error.message)", maxAttempts: settings.maxAttempts, lease: lease,
                        nowMs: sender.now()
                    )
                }
                return false
            }
            try await store.appendAudience(shop: job.shop, id: job.broadcastId, members: page.members, firstSeq: seq, lease: lease, nowMs: sender.now())
            seq += Int64(page.members.count)
            token = page.nextPageToken
        } while !token.isEmpty
        try await store.finishAudience(shop: job.shop, id: job.broadcastId, lease: lease, nowMs: sender.now())
        return true
    }

    /// Each member's message, or the reason they get none.
    func plan(
        _ job: MessagingStore.BroadcastJob, template: Template, members: [MessagingStore.AudienceMember]
    ) async throws -> (planned: [MessagingStore.PlannedMessage], skipped: [String]) {
        if !template.enabled {
            return ([], Array(repeating: BroadcastSkip.templateDisabled, count: members.count))
        }
        var contacts: [String: MessagingStore.MessengerContact] = [:]
        if template.channel == .messenger {
            contacts = try await store.messengerContacts(shop: job.shop, customerIds: members.map(\.customerId))
        }
        let now = sender.now()
        var planned: [MessagingStore.PlannedMessage] = []
        var skipped: [String] = []
        planned.reserveCapacity(members.count)
        for member in members {
            let recipient: String
            switch template.channel {
            case .zns, .sms:
                guard let phone = VietnamPhone.normalize(member.phone) else {
                    skipped.append(BroadcastSkip.noPhone)
                    continue
                }
                recipient = phone
            case .email:
                guard let email = try? MessageSender.recipient(member.email, channel: .email) else {
                    skipped.append(BroadcastSkip.noEmail)
                    continue
                }
                recipient = email
            default:
                guard let contact = contacts[member.customerId] else {
                    skipped.append(BroadcastSkip.neverMessaged)
                    continue
                }
                guard MessengerPolicy.decide(sender: .broadcast, lastCustomerMessageAtMs: contact.lastCustomerMessageAtMs, nowMs: now) == .allowed else {
                    skipped.append(BroadcastSkip.outsideWindow)
                    continue
                }
                recipient = contact.recipient
            }
            var params = job.params
            params["name"] = params["name"] ?? (member.name.isEmpty ? nil : member.name)
            params["phone"] = params["phone"] ?? (member.phone.isEmpty ? nil : member.phone)
            params["email"] = params["email"] ?? (member.email.isEmpty ? nil : member.email)
            params["customer_id"] = member.customerId
            do {
                let body = try TemplateText.render(template.body, params: params)
                planned.append(.init(customerId: member.customerId, recipient: recipient, body: body, params: params))
            } catch let missing as TemplateText.MissingParameters {
                skipped.append(BroadcastSkip.missing(missing.names))
            }
        }
        return (planned, skipped)
    }

    /// Delivers a reserved batch and settles it. Its own task, which a shutdown's cancellation
    /// does not reach: a batch once begun is finished and settled, not left to be sent again.
    /// With the lease lost it launches no more sends and settles nothing: the runner that took
    /// over delivers what is still QUEUED, with the same message ids, which providers take as
    /// their request's idempotency key (eSMS RequestId, ZNS tracking_id).
    func deliverAndSettle(
        _ job: MessagingStore.BroadcastJob, _ batch: [(delivery: Delivery, costVnd: Int64, day: Int64)], adapter: any DeliveryAdapter,
        held: HeldLease
    ) async throws {
        try await Task { try await deliverAndSettleNow(job, batch, adapter: adapter, held: held) }.value
    }

    private func deliverAndSettleNow(
        _ job: MessagingStore.BroadcastJob, _ batch: [(delivery: Delivery, costVnd: Int64, day: Int64)], adapter: any DeliveryAdapter,
        held: HeldLease
    ) async throws {
        let retries = settings.retries
        let backoff = settings.retryBackoff
        var results: [(delivery: Delivery, costVnd: Int64, day: Int64, outcome: DeliveryOutcome)] = []
        results.reserveCapacity(batch.count)
        try await withThrowingTaskGroup(of: (Int, DeliveryOutcome).self) { group in
            var nextIndex = 0
            var outcomes = [DeliveryOutcome?](repeating: nil, count: batch.count)
            func launch() {
                let index = nextIndex
                let delivery = batch[index].delivery
                nextIndex += 1
                group.addTask {
                    var outcome = await adapter.deliver(delivery)
                    var attempt = 0
                    while case .failedTemporarily = outcome, attempt < retries {
                        attempt += 1
                        try await Task.sleep(for: backoff * (1 << (attempt - 1)))
                        outcome = await adapter.deliver(delivery)
                    }
                    return (index, outcome)
                }
            }
            while nextIndex < min(settings.concurrency, batch.count) { launch() }
            while let (index, outcome) = try await group.next() {
                outcomes[index] = outcome
                if nextIndex < batch.count, !held.isLost { launch() }
            }
            if held.isLost { throw MessagingError.leaseLost(broadcastId: job.broadcastId) }
            for (index, item) in batch.enumerated() {
                results.append((item.delivery, item.costVnd, item.day, outcomes[index]!))
            }
        }
        try await store.settleBatch(
            shop: job.shop, broadcastId: job.broadcastId, results: results, provider: adapter.name, lease: settings.lease, nowMs: sender.now()
        )
    }
}

/// The lease a runner holds on the broadcast it works: renewed every third of its duration
/// while the work goes on, and lost when another runner took the broadcast over or when no
/// renewal got through for a whole duration (then another replica may have taken it).
final class HeldLease: Sendable {
    let store: MessagingStore
    let job: MessagingStore.BroadcastJob
    let lease: RunnerLease
    let now: @Sendable () -> Int64
    private let state: Mutex<(lost: Bool, renewedAtMs: Int64)>

    init(store: MessagingStore, job: MessagingStore.BroadcastJob, lease: RunnerLease, now: @escaping @Sendable () -> Int64) {
        self.store = store
        self.job = job
        self.lease = lease
        self.now = now
        state = Mutex((false, now()))
    }

    var isLost: Bool {
        let now = now()
        return state.withLock { $0.lost || now - $0.renewedAtMs >= lease.durationMs }
    }

    /// Renews until cancelled or lost.
    func keep() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(max(1, lease.durationMs / 3)))
            if Task.isCancelled { return }
            let at = now()
            do {
                let held = try await store.renewBroadcast(shop: job.shop, id: job.broadcastId, lease: lease, nowMs: at)
                state.withLock { held ? ($0.renewedAtMs = at) : ($0.lost = true) }
                if !held { return }
            } catch {
                // The database unreachable: isLost turns true once the lease may have run out.
            }
        }
    }
}
