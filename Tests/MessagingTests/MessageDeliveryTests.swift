@testable import Messaging
import Testing

/// R-MSG-3 and R-ZNS-2 as tables: what each provider answer and each delivery report
/// does to a message in every status, with no database.
@Suite struct MessageDeliveryTests {
    typealias D = MessageDelivery

    @Test func aProviderAnswerSettlesTheMessageAndItsHold() {
        let table: [(DeliveryOutcome, D.Settlement)] = [
            (.sent(providerId: "p1"), .init(status: .sent, error: "", releasesHold: false)),
            (.delivered(providerId: "p1"), .init(status: .delivered, error: "", releasesHold: false)),
            // Refused for good: it costs nothing.
            (.rejected(code: .invalidArgument, message: "bad number"), .init(status: .failed, error: "bad number", releasesHold: true)),
            // Tried again later with its price still held.
            (.failedTemporarily(message: "time-out"), .init(status: .queued, error: "time-out", releasesHold: false)),
        ]
        for (outcome, expected) in table {
            #expect(D.settle(outcome) == expected, "\(outcome)")
        }
    }

    @Test func aReportMovesOnlyASentMessage() {
        let undelivered = DeliveryOutcome.rejected(code: .failedPrecondition, message: "the provider reported it undelivered")
        let table: [(D.Status, Bool, String, D.Report)] = [
            (.sent, true, "", .settle(.delivered(providerId: ""))),
            (.sent, false, "", .settle(undelivered)),
            (.sent, false, "số không tồn tại", .settle(.rejected(code: .failedPrecondition, message: "số không tồn tại"))),
            // The same report twice changes nothing.
            (.delivered, true, "", .unchanged),
            (.failed, false, "", .unchanged),
            (.queued, true, "", .notSentYet),
            (.queued, false, "", .notSentYet),
            // A report that contradicts what was settled is refused, not applied.
            (.delivered, false, "", .alreadySettled(.delivered)),
            (.failed, true, "", .alreadySettled(.failed)),
        ]
        #expect(Set(table.map { "\($0.0)\($0.1)" }).count == D.Status.allCases.count * 2)
        for (status, delivered, reason, expected) in table {
            #expect(D.report(current: status, delivered: delivered, reason: reason) == expected, "\(status) delivered=\(delivered)")
        }
    }
}
