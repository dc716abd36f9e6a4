@testable import Messaging
import Testing

@Suite struct TemplateTextTests {
    @Test func placeholdersAreFoundOnceInOrder() throws {
        let body = "Chào {{name}}, đơn {{ order.code }} của {{name}} tổng {{total_vnd}}đ. Mã: {{_ref}}"
        #expect(try TemplateText.placeholders(in: body) == ["name", "order.code", "total_vnd", "_ref"])
        #expect(try TemplateText.placeholders(in: "Cảm ơn bạn đã mua hàng!") == [])
    }

    @Test(arguments: [
        ("Chào {{name", "never closed"),
        ("Chào {{}}", "not a placeholder"),
        ("Chào {{tên}}", "not a placeholder"),
        ("Chào {{1st}}", "not a placeholder"),
        ("Chào {{first name}}", "not a placeholder"),
        ("   ", "empty"),
    ])
    func malformedBodiesAreRefused(body: String, problem: String) {
        #expect {
            _ = try TemplateText.placeholders(in: body)
        } throws: { error in
            "\(error)".contains(problem)
        }
    }

    @Test func renderFillsEveryPlaceholderAndNeverLeavesAHole() throws {
        let body = "Chào {{name}}, đơn {{code}} đã giao cho {{carrier}}."
        #expect(try TemplateText.render(body, params: ["name": "Hoa", "code": "DH123", "carrier": "GHN", "unused": "x"])
            == "Chào Hoa, đơn DH123 đã giao cho GHN.")
        #expect(throws: TemplateText.MissingParameters(names: ["code", "carrier"])) {
            _ = try TemplateText.render(body, params: ["name": "Hoa", "code": ""])
        }
        // A value that looks like a placeholder is text, not expanded again.
        #expect(try TemplateText.render("{{a}}", params: ["a": "{{b}}"]) == "{{b}}")
    }
}

@Suite struct MessengerPolicyTests {
    static let hour: Int64 = 3_600_000
    static let now: Int64 = 1_800_000_000_000

    @Test func withinADayAnyoneMaySend() {
        for sender in [MessengerPolicy.Sender.staff, .bot, .broadcast] {
            #expect(MessengerPolicy.decide(sender: sender, lastCustomerMessageAtMs: Self.now - 23 * Self.hour, nowMs: Self.now) == .allowed)
        }
    }

    @Test func afterADayOnlyAHumanWithinSevenDays() {
        let last = Self.now - 25 * Self.hour
        #expect(MessengerPolicy.decide(sender: .staff, lastCustomerMessageAtMs: last, nowMs: Self.now) == .allowedWithHumanAgentTag)
        for sender in [MessengerPolicy.Sender.bot, .broadcast] {
            guard case .refused(let reason) = MessengerPolicy.decide(sender: sender, lastCustomerMessageAtMs: last, nowMs: Self.now) else {
                Issue.record("\(sender) should be refused outside 24 hours")
                continue
            }
            #expect(reason.contains("24-hour"))
        }
        // Exactly 24 hours is outside the window; exactly 7 days is outside the human window.
        #expect(MessengerPolicy.decide(sender: .bot, lastCustomerMessageAtMs: Self.now - 24 * Self.hour, nowMs: Self.now) != .allowed)
        guard case .refused = MessengerPolicy.decide(sender: .staff, lastCustomerMessageAtMs: Self.now - 7 * 24 * Self.hour, nowMs: Self.now) else {
            Issue.record("a human past 7 days should be refused")
            return
        }
    }

    @Test func aCustomerWhoNeverWroteCannotBeMessaged() {
        guard case .refused(let reason) = MessengerPolicy.decide(sender: .staff, lastCustomerMessageAtMs: nil, nowMs: Self.now) else {
            Issue.record("expected a refusal")
            return
        }
        #expect(reason.contains("never messaged"))
    }
}
