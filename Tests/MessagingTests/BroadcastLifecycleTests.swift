import ChatMeshAPI
import Messaging
import Testing

/// R-MSG-2: every step on a broadcast in every status, as the table says, with no database.
@Suite struct BroadcastLifecycleTests {
    typealias B = BroadcastLifecycle
    static let statuses: [Broadcast.Status] = [.scheduled, .running, .completed, .cancelled, .failed]

    @Test func stepsMoveOnlyFromTheirStatuses() {
        // step → (statuses it moves from, status it moves to)
        let table: [B.Step: ([Broadcast.Status], Broadcast.Status)] = [
            .start: ([.scheduled, .running], .running),
            .cancel: ([.scheduled, .running], .cancelled),
            .fail: ([.running], .failed),
            .complete: ([.running], .completed),
        ]
        #expect(Set(table.keys) == Set(B.Step.allCases))
        for (step, (from, to)) in table {
            #expect(B.from(step) == from, "\(step)")
            #expect(B.to(step) == to, "\(step)")
            // A finished broadcast never moves again.
            for finished in [Broadcast.Status.completed, .failed, .cancelled] {
                #expect(!B.from(step).contains(finished), "\(step) from \(finished)")
            }
        }
    }

    @Test func cancelChangesALiveBroadcastRepeatsQuietlyAndRefusesAFinishedOne() {
        for status in Self.statuses {
            let answer = B.cancel("b1", from: status)
            switch status {
            case .scheduled, .running: #expect(answer == .success(true), "\(status)")
            case .cancelled: #expect(answer == .success(false), "\(status)")
            default: #expect(answer == .failure(.broadcastNotCancellable("b1", status)), "\(status)")
            }
        }
    }
}
