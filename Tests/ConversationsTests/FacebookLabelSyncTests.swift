@testable import Conversations
import Testing

@Suite struct FacebookLabelSyncTests {
    typealias Sync = FacebookLabelSync

    static func labels(_ n: Int) -> [Sync.Label] {
        (1...n).map { Sync.Label(fbLabelId: "fb-\($0)", name: "Nhãn \($0)") }
    }

    @Test func aNewPageTakesAtMostAHundredLabelsEvenUnattached() {
        let plan = Sync.plan(labels: Self.labels(130), attachments: [Sync.Attachment(customerExternalId: "u1", fbLabelIds: ["fb-1", "fb-120"])],
                             mode: .backfill, syncedLabelIds: [], tagsOnConversation: [:])
        #expect(plan.newLabels.count == 100)
        #expect(plan.newLabels.first?.fbLabelId == "fb-1" && plan.newLabels.last?.fbLabelId == "fb-100")
        #expect(plan.attach.map(\.fbLabelId) == ["fb-1"])   // fb-120 was not synced
        #expect(plan.skipped == 30 + 1)
        #expect(plan.reasons.count == 2)
    }

    @Test func aConversationNeverCarriesMoreThanFiftyTags() {
        let ids = (1...60).map { "fb-\($0)" }
        let plan = Sync.plan(labels: Self.labels(60), attachments: [Sync.Attachment(customerExternalId: "u1", fbLabelIds: ids)],
                             mode: .backfill, syncedLabelIds: [], tagsOnConversation: ["u1": 5])
        #expect(plan.attach.count == 45)  // 5 tags already there
        #expect(plan.skipped == 15)
    }

    @Test func syncSwitchedOnLaterGetsNoBackfill() {
        let plan = Sync.plan(labels: Self.labels(10), attachments: [Sync.Attachment(customerExternalId: "u9", fbLabelIds: ["fb-3"])],
                             mode: .attachEventsOnly, syncedLabelIds: [], tagsOnConversation: [:])
        #expect(plan.newLabels.map(\.fbLabelId) == ["fb-3"])
        #expect(plan.attach.count == 1)
        #expect(plan.skipped == 9)
    }

    @Test func syncOffWritesNothingAndKnownLabelsAreNotCreatedTwice() {
        let off = Sync.plan(labels: Self.labels(3), attachments: [Sync.Attachment(customerExternalId: "u", fbLabelIds: ["fb-1"])],
                            mode: .off, syncedLabelIds: [], tagsOnConversation: [:])
        #expect(off.newLabels.isEmpty && off.attach.isEmpty && off.skipped == 4)
        let again = Sync.plan(labels: Self.labels(3), attachments: [Sync.Attachment(customerExternalId: "u", fbLabelIds: ["fb-1", "fb-2"])],
                              mode: .backfill, syncedLabelIds: ["fb-1", "fb-2", "fb-3"], tagsOnConversation: ["u": 1],
                              attachedAlready: [Sync.Attach(customerExternalId: "u", fbLabelId: "fb-1")])
        #expect(again.newLabels.isEmpty)
        #expect(again.attach.map(\.fbLabelId) == ["fb-2"])
        #expect(again.skipped == 0)
    }
}
