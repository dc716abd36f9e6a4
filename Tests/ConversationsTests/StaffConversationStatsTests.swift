@testable import Conversations
import MeshRPC
import Testing
import VietnamCommerce

@Suite struct StaffConversationStatsTests {
    typealias Calc = StaffConversationStatsCalculator
    typealias Event = Calc.Event

    static func at(_ hour: Int, _ minute: Int, _ second: Int = 0, day: Int = 25) -> Int64 {
        VietnamTime.ms(year: 2026, month: 11, day: day, hour: hour, minute: minute, second: second)
    }

    static func customer(_ c: String, _ t: Int64, _ kind: Calc.ReplyKind = .message) -> Event {
        Event(conversationId: c, atMs: t, what: .message(kind, .customer))
    }

    static func staff(_ s: String, _ c: String, _ t: Int64, _ kind: Calc.ReplyKind = .message) -> Event {
        Event(conversationId: c, atMs: t, what: .message(kind, .staff(s)))
    }

    static func bot(_ c: String, _ t: Int64) -> Event {
        Event(conversationId: c, atMs: t, what: .message(.message, .bot))
    }

    @Test func vietnamDaysStartAtSevenHoursBeforeUTCMidnight() {
        let day = VietnamTime.day(year: 2026, month: 11, day: 25)
        // 2026-11-25 00:00 ICT = 2026-11-24 17:00 UTC = 1 795 539 600 000 ms (checked with Python datetime).
        #expect(day.lowerBound == 1_795_539_600_000)
        #expect(day.upperBound - day.lowerBound == 86_400_000)
        #expect(VietnamTime.ms(year: 2024, month: 2, day: 29, hour: 7) == 1_709_164_800_000)  // 2024-02-29 00:00 UTC
    }

    /// A scripted day of traffic on one page, figures computed by hand below.
    @Test func aScriptedDay() {
        let events: [Event] = [
            // cv-1: a wait opened the evening before (23:50 on the 24th), answered by lan at 08:00 → 490 min,
            // credited today because the reply is today.
            Self.customer("cv-1", Self.at(23, 50, day: 24)),
            Event(conversationId: "cv-1", atMs: Self.at(7, 59), what: .assigned(staffId: "lan", .auto)),
            Self.staff("lan", "cv-1", Self.at(8, 0)),
            // Customer writes twice; the second message starts no new wait; a bot answer ends nothing.
            Self.customer("cv-1", Self.at(9, 0)),
            Self.bot("cv-1", Self.at(9, 0, 5)),
            Self.customer("cv-1", Self.at(9, 2)),
            Self.staff("lan", "cv-1", Self.at(9, 10)),          // wait 9:00 → 9:10 = 10 min
            Self.staff("lan", "cv-1", Self.at(9, 11)),          // a second reply: counted, no wait
            Event(conversationId: "cv-1", atMs: Self.at(9, 30), what: .closed(staffId: "lan")),

            // cv-2: a comment answered by hoa, then an inbox message answered by lan.
            Self.customer("cv-2", Self.at(10, 0), .comment),
            Event(conversationId: "cv-2", atMs: Self.at(10, 1), what: .assigned(staffId: "hoa", .manual)),
            Self.staff("hoa", "cv-2", Self.at(10, 4), .comment),  // wait 4 min
            Self.customer("cv-2", Self.at(11, 0)),
            Self.staff("lan", "cv-2", Self.at(11, 6)),          // wait 6 min
            Event(conversationId: "cv-2", atMs: Self.at(11, 30), what: .closed(staffId: "hoa")),

            // cv-3: hoa writes first (no wait), the customer answers, hoa replies after 20 min.
            Self.staff("hoa", "cv-3", Self.at(14, 0)),
            Self.customer("cv-3", Self.at(14, 5)),
            Self.staff("hoa", "cv-3", Self.at(14, 25)),         // wait 20 min
            Event(conversationId: "cv-3", atMs: Self.at(13, 59), what: .assigned(staffId: "hoa", .auto)),

            // cv-4: tomorrow's traffic (00:10 on the 26th, Vietnam time) is outside today's range.
            Self.customer("cv-4", Self.at(0, 5, day: 26)),
            Self.staff("lan", "cv-4", Self.at(0, 10, day: 26)),
            // cv-5: still waiting at the end of the day: no reply, nothing credited.
            Self.customer("cv-5", Self.at(23, 0)),
        ]
        let today = VietnamTime.day(year: 2026, month: 11, day: 25)
        let stats = Calc.compute(events.shuffled(), fromMs: today.lowerBound, toMs: today.upperBound)

        var hoa = Calc.Stats(staffId: "hoa")
        hoa.avgResponseMs = (4 + 20) * 60_000 / 2       // 12 min
        hoa.assignedAuto = 1
        hoa.assignedManual = 1
        hoa.closed = 1
        hoa.commentsReplied = 1
        hoa.messagesReplied = 2                          // cv-3 at 14:00 and 14:25
        hoa.customersReplied = 2                         // cv-2, cv-3

        var lan = Calc.Stats(staffId: "lan")
        lan.avgResponseMs = (490 + 10 + 6) * 60_000 / 3  // 168 min 40 s
        lan.assignedAuto = 1
        lan.closed = 1
        lan.messagesReplied = 4                          // cv-1 ×3, cv-2 ×1
        lan.customersReplied = 2                         // cv-1, cv-2

        #expect(stats == [hoa, lan])
    }

    @Test func theRangeDecidesWhichWaitsCount() {
        let events = [Self.customer("c", 1_000), Self.staff("s", "c", 5_000), Self.customer("c", 6_000), Self.staff("s", "c", 9_000)]
        #expect(Calc.compute(events, fromMs: 0, toMs: 5_000).isEmpty)
        #expect(Calc.compute(events, fromMs: 5_000, toMs: 9_000).first?.avgResponseMs == 4_000)
        #expect(Calc.compute(events, fromMs: 0, toMs: 10_000).first?.avgResponseMs == 3_500)
        #expect(Calc.compute(events, fromMs: 0, toMs: 10_000).first?.messagesReplied == 2)
    }
}
