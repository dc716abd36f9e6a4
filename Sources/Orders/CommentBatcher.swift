import MeshRPC
import MeshStore

/// Group commit for livestream comments: the calls that arrive while a write is
/// running go together in the next transaction, so a burst of thousands of
/// comments a second costs a few transactions a second rather than one each
/// (SQLite commits one transaction at a time). Every caller still gets its own
/// answer; a comment that is refused (an unknown campaign) fails alone.
public actor CommentBatcher {
    typealias Waiter = CheckedContinuation<OrderStore.CommentResult, any Error>

    let store: OrderStore
    let maxBatch: Int
    let now: @Sendable () -> Int64
    var pending: [(shop: String, comment: OrderStore.Comment, waiter: Waiter)] = []
    var flushing = false

    public init(store: OrderStore, maxBatch: Int = 500, now: @escaping @Sendable () -> Int64 = { WallClock.nowMs() }) {
        self.store = store
        self.maxBatch = maxBatch
        self.now = now
    }

    /// Reads one comment, written with the others that arrive meanwhile in one transaction.
    public func ingest(shop: String, _ comment: OrderStore.Comment) async throws -> OrderStore.CommentResult {
        try await withCheckedThrowingContinuation { (waiter: Waiter) in
            pending.append((shop, comment, waiter))
            if !flushing {
                flushing = true
                Task { await self.flush() }
            }
        }
    }

    func flush() async {
        while !pending.isEmpty {
            let batch = Array(pending.prefix(maxBatch))
            pending.removeFirst(batch.count)
            // One transaction per shop in the batch (the store's rows are per shop).
            var byShop: [String: [Int]] = [:]
            for (index, entry) in batch.enumerated() { byShop[entry.shop, default: []].append(index) }
            for (shop, indices) in byShop {
                do {
                    let results = try await store.ingest(shop: shop, indices.map { batch[$0].comment }, nowMs: now())
                    for (index, result) in zip(indices, results) {
                        switch result {
                        case .success(let value): batch[index].waiter.resume(returning: value)
                        case .failure(let error): batch[index].waiter.resume(throwing: error)
                        }
                    }
                } catch {
                    for index in indices { batch[index].waiter.resume(throwing: error) }
                }
            }
        }
        flushing = false
    }
}
