import MeshRPC
import MeshStore
import Testing

/// The outbox row's rules as tables, with no database: what each answer means and what
/// it does to the row, through every attempt to dead.
@Suite struct OutboxAttemptTests {
    typealias A = OutboxAttempt

    @Test func everyStatusCodeIsARefusalOrAnAbsence() {
        let away: Set<RPCError.Code> = [.unavailable, .deadlineExceeded, .cancelled, .resourceExhausted]
        for code in RPCError.Code.allCases where code != .ok {
            let outcome = A.outcome(of: RPCError(code, "x"))
            if away.contains(code) {
                #expect(outcome == .unreachable("\(code.name): x"), "\(code.name)")
            } else {
                #expect(outcome == .refused("\(code.name): x"), "\(code.name)")
            }
        }
        #expect(A.outcome(of: CancellationError()) == .stopping)
        struct Decoding: Error {}
        #expect(A.outcome(of: Decoding()) == .refused("Decoding()"))
    }

    @Test func refusalsBackOffDoublingUpToTheCapThenTheRowIsDead() {
        var policy = OutboxDispatcher.Configuration()
        policy.maxAttempts = 6
        policy.retryBaseMs = 1_000
        policy.retryMaxMs = 5_000
        let now: Int64 = 1_000_000
        // attempts before → decision
        let table: [(Int64, A.Decision)] = [
            (0, .retry(attempts: 1, atMs: now + 1_000)),
            (1, .retry(attempts: 2, atMs: now + 2_000)),
            (2, .retry(attempts: 3, atMs: now + 4_000)),
            (3, .retry(attempts: 4, atMs: now + 5_000)),
            (4, .retry(attempts: 5, atMs: now + 5_000)),
            (5, .dead(attempts: 6)),
        ]
        for (attempts, expected) in table {
            #expect(A.decide(.refused("no"), attempts: attempts, nowMs: now, policy: policy) == expected, "after \(attempts)")
        }
    }

    @Test func onlyARefusalCountsAnAttempt() {
        let policy = OutboxDispatcher.Configuration()
        #expect(A.decide(.delivered, attempts: 3, nowMs: 0, policy: policy) == .delete)
        #expect(A.decide(.unreachable("down"), attempts: 3, nowMs: 0, policy: policy) == .untouched)
        #expect(A.decide(.stopping, attempts: 3, nowMs: 0, policy: policy) == .untouched)
    }
}
