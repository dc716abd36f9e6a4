import ChatMeshAPI
import Foundation
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// R-BOT-1 and R-MSG-5 storage: scenarios, the steps they scheduled, the
/// events already applied, and when each page-scoped id last wrote to the page.
extension MessagingStore {
    /// A Messenger recipient: their customer and when they last wrote (the 24-hour window, R-MSG-5).
    public struct MessengerContact: Sendable, Hashable {
        public var recipient: String
        public var customerId: String
        public var pageId: String
        public var lastCustomerMessageAtMs: Int64
    }

    /// A scenario step whose time has come.
    public struct DueStep: Sendable, Hashable {
        public var shop: String
        public var stepId: String
        public var customerId: String
        public var pageId: String
        public var tagName: String
        public var recipient: String
        public var channel: Template.Channel
        public var templateId: String
    }

    struct StoredStep: Codable {
        var delayMs: Int64
        var templateId: String
    }

    /// Saves a chatbot scenario started by attaching `tagName` (R-MSG-4).
    public func createScenario(shop: String, tagName: String, channel: Template.Channel, steps: [ScenarioStep], nowMs: Int64) async throws -> Scenario {
        let json = String(decoding: try JSONEncoder().encode(steps.map { StoredStep(delayMs: $0.delayMs, templateId: $0.templateId) }), as: UTF8.self)
        let scenario = Scenario(scenarioId: SortableID.make("scn_", nowMs: nowMs), triggerTagName: tagName, steps: steps, channel: channel)
        try await db.write { db in
            try await db.raw("""
                INSERT INTO scenarios (shop_id, scenario_id, trigger_tag_key, trigger_tag_name, channel, steps, created_at_ms)
                VALUES (\(bind: shop), \(bind: scenario.scenarioId), \(bind: TagName.key(tagName)), \(bind: tagName),
                        \(bind: Int64(channel.rawValue)), \(bind: json), \(bind: nowMs))
                """).run()
        }
        return scenario
    }

    /// The shop's scenarios.
    public func scenarios(shop: String) async throws -> [Scenario] {
        try await db.read { db in
            try await db.raw("SELECT * FROM scenarios WHERE shop_id = \(bind: shop) ORDER BY scenario_id").all().map(Self.scenario)
        }
    }

    static func scenario(_ row: any SQLRow) throws -> Scenario {
        let steps = try JSONDecoder().decode([StoredStep].self, from: Data(try row.string("steps").utf8))
        return Scenario(
            scenarioId: try row.string("scenario_id"), triggerTagName: try row.string("trigger_tag_name"),
            steps: steps.map { ScenarioStep(delayMs: $0.delayMs, templateId: $0.templateId) },
            channel: .init(rawValue: Int32(try row.int64("channel")))
        )
    }

    /// Marks an event applied; false when it was applied before (the caller then does nothing).
    static func firstSight(_ db: any SQLDatabase, shop: String, eventId: String, nowMs: Int64) async throws -> Bool {
        let inserted = try await db.raw("""
            INSERT INTO seen_events (shop_id, event_id, at_ms) VALUES (\(bind: shop), \(bind: eventId), \(bind: nowMs))
            ON CONFLICT (shop_id, event_id) DO NOTHING RETURNING event_id
            """).all()
        return !inserted.isEmpty
    }

    /// R-BOT-1: schedules the steps of every scenario `tagName` triggers, each at
    /// `atMs + delay_ms`. A scenario still running for this customer is not started twice.
    public func startScenarios(
        shop: String, eventId: String, pageId: String, customerId: String, tagName: String, recipient: String, atMs: Int64, nowMs: Int64
    ) async throws -> [String] {
        let key = TagName.key(tagName)
        return try await db.write { db in
            guard try await Self.firstSight(db, shop: shop, eventId: eventId, nowMs: nowMs) else { return [] }
            let scenarios = try await db.raw("""
                SELECT * FROM scenarios WHERE shop_id = \(bind: shop) AND trigger_tag_key = \(bind: key) ORDER BY scenario_id
                """).all().map(Self.scenario)
            var started: [String] = []
            for scenario in scenarios {
                let running = try await db.raw("""
                    SELECT step_id FROM scheduled_steps WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
                      AND status IN (\(binds: Self.unfinished)) AND scenario_id = \(bind: scenario.scenarioId) LIMIT 1
                    """).first()
                if running != nil { continue }
                for (index, step) in scenario.steps.enumerated() {
                    try await db.raw("""
                        INSERT INTO scheduled_steps (shop_id, step_id, scenario_id, step_index, customer_id, page_id, tag_key, tag_name, recipient,
                                                     channel, template_id, started_at_ms, due_at_ms, status)
                        VALUES (\(bind: shop), \(bind: SortableID.make("stp_", nowMs: nowMs)), \(bind: scenario.scenarioId), \(bind: Int64(index)),
                                \(bind: customerId), \(bind: pageId), \(bind: key), \(bind: tagName), \(bind: recipient),
                                \(bind: Int64(scenario.channel.rawValue)), \(bind: step.templateId), \(bind: atMs), \(bind: atMs + step.delayMs),
                                \(bind: ScheduledStepStatus.pending.rawValue))
                        """).run()
                }
                started.append(scenario.scenarioId)
            }
            return started
        }
    }

    /// R-BOT-1: the tag came off; the steps its scenarios still had for this customer are cancelled.
    public func tagDetached(shop: String, eventId: String, customerId: String, tagName: String, nowMs: Int64) async throws -> Int {
        try await db.write { db in
            guard try await Self.firstSight(db, shop: shop, eventId: eventId, nowMs: nowMs) else { return 0 }
            return try await db.raw("""
                UPDATE scheduled_steps SET status = \(bind: ScheduledStepStatus.cancelled.rawValue), reason = 'tag detached'
                WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND status = \(bind: ScheduledStepStatus.pending.rawValue) AND tag_key = \(bind: TagName.key(tagName))
                RETURNING step_id
                """).all().count
        }
    }

    /// R-MSG-5, R-BOT-1: the customer wrote at `atMs`. Their Messenger window opens,
    /// and the steps of scenarios started before that message are cancelled.
    public func customerMessaged(
        shop: String, eventId: String, pageId: String, customerId: String, recipient: String, atMs: Int64, nowMs: Int64
    ) async throws -> Int {
        try await db.write { db in
            guard try await Self.firstSight(db, shop: shop, eventId: eventId, nowMs: nowMs) else { return 0 }
            if !recipient.isEmpty {
                try await db.raw("""
                    INSERT INTO messenger_contacts (shop_id, recipient, customer_id, page_id, last_customer_message_at_ms)
                    VALUES (\(bind: shop), \(bind: recipient), \(bind: customerId), \(bind: pageId), \(bind: atMs))
                    ON CONFLICT (shop_id, recipient) DO UPDATE SET customer_id = \(bind: customerId), page_id = \(bind: pageId),
                        last_customer_message_at_ms = CASE WHEN messenger_contacts.last_customer_message_at_ms > \(bind: atMs)
                            THEN messenger_contacts.last_customer_message_at_ms ELSE \(bind: atMs) END
                    """).run()
            }
            guard !customerId.isEmpty else { return 0 }
            return try await db.raw("""
                UPDATE scheduled_steps SET status = \(bind: ScheduledStepStatus.cancelled.rawValue), reason = 'customer replied'
                WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId) AND status = \(bind: ScheduledStepStatus.pending.rawValue) AND started_at_ms < \(bind: atMs)
                RETURNING step_id
                """).all().count
        }
    }

    /// The Messenger contact with this recipient id, if known.
    public func messengerContact(shop: String, recipient: String) async throws -> MessengerContact? {
        try await db.read { db in
            try await db.raw("SELECT * FROM messenger_contacts WHERE shop_id = \(bind: shop) AND recipient = \(bind: recipient)").first()
                .map(Self.contact)
        }
    }

    /// The most recent page-scoped id of each customer, for Messenger broadcasts.
    public func messengerContacts(shop: String, customerIds: [String]) async throws -> [String: MessengerContact] {
        guard !customerIds.isEmpty else { return [:] }
        return try await db.read { db in
            var contacts: [String: MessengerContact] = [:]
            for start in stride(from: 0, to: customerIds.count, by: 500) {
                let chunk = Array(customerIds[start..<min(start + 500, customerIds.count)])
                for row in try await db.raw("""
                    SELECT * FROM messenger_contacts WHERE shop_id = \(bind: shop) AND customer_id IN (\(binds: chunk))
                    """).all() {
                    let contact = try Self.contact(row)
                    if let known = contacts[contact.customerId], known.lastCustomerMessageAtMs >= contact.lastCustomerMessageAtMs { continue }
                    contacts[contact.customerId] = contact
                }
            }
            return contacts
        }
    }

    static func contact(_ row: any SQLRow) throws -> MessengerContact {
        MessengerContact(
            recipient: try row.string("recipient"), customerId: try row.string("customer_id"), pageId: try row.string("page_id"),
            lastCustomerMessageAtMs: try row.int64("last_customer_message_at_ms")
        )
    }

    /// Scenario steps whose time has come, across shops, oldest first.
    public func dueSteps(nowMs: Int64, limit: Int) async throws -> [DueStep] {
        try await db.read { db in
            try await db.raw("""
                SELECT * FROM scheduled_steps WHERE \(Self.claimable(nowMs: nowMs)) AND due_at_ms <= \(bind: nowMs)
                ORDER BY due_at_ms LIMIT \(literal: limit)
                """).all().map { row in
                DueStep(
                    shop: try row.string("shop_id"), stepId: try row.string("step_id"), customerId: try row.string("customer_id"),
                    pageId: try row.string("page_id"), tagName: try row.string("tag_name"), recipient: try row.string("recipient"),
                    channel: .init(rawValue: Int32(try row.int64("channel"))), templateId: try row.string("template_id")
                )
            }
        }
    }

    /// Steps not yet done: waiting, or being sent.
    static let unfinished = [ScheduledStepStatus.pending.rawValue, ScheduledStepStatus.sending.rawValue]

    /// Records how a step being sent ended (SENT, SKIPPED or FAILED).
    public func finishStep(shop: String, stepId: String, status: ScheduledStepStatus, reason: String, messageId: String) async throws {
        try await db.write { db in
            try await db.raw("""
                UPDATE scheduled_steps SET status = \(bind: status.rawValue), reason = \(bind: reason), message_id = \(bind: messageId)
                WHERE shop_id = \(bind: shop) AND step_id = \(bind: stepId) AND status = \(bind: ScheduledStepStatus.sending.rawValue)
                """).run()
        }
    }

    /// Takes a due step for sending unless a detach or a reply cancelled it since it was read.
    /// From then on it is SENDING: a reply arriving while it goes out no longer cancels it (it
    /// would be recorded as cancelled though sent). The claim is the sender's for `claimMs`, so
    /// that another replica reading the same due steps leaves it alone; a step left SENDING by a
    /// crash is taken again once its claim ran out, and its idempotency key keeps it to one message.
    public func claimStep(shop: String, stepId: String, nowMs: Int64, claimMs: Int64) async throws -> Bool {
        try await db.write { db in
            try await !db.raw("""
                UPDATE scheduled_steps SET status = \(bind: ScheduledStepStatus.sending.rawValue), claimed_until_ms = \(bind: nowMs + claimMs)
                WHERE shop_id = \(bind: shop) AND step_id = \(bind: stepId) AND \(Self.claimable(nowMs: nowMs))
                RETURNING step_id
                """).all().isEmpty
        }
    }

    /// A step a sender may take: waiting, or SENDING under a claim that ran out (its sender died).
    static func claimable(nowMs: Int64) -> SQLQueryString {
        """
        (status = \(bind: ScheduledStepStatus.pending.rawValue)
         OR (status = \(bind: ScheduledStepStatus.sending.rawValue) AND claimed_until_ms < \(bind: nowMs)))
        """
    }

    /// The steps scheduled for a customer, in order; for tests and operators.
    public func steps(shop: String, customerId: String) async throws -> [(stepId: String, status: ScheduledStepStatus, reason: String, dueAtMs: Int64)] {
        try await db.read { db in
            try await db.raw("""
                SELECT step_id, status, reason, due_at_ms FROM scheduled_steps WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customerId)
                ORDER BY due_at_ms, step_id
                """).all().map { row in
                    let stored = try row.string("status")
                    guard let status = ScheduledStepStatus(rawValue: stored) else { throw MessagingError.unknownStatus(what: "a scenario step", stored: stored) }
                    return (try row.string("step_id"), status, try row.string("reason"), try row.int64("due_at_ms"))
                }
        }
    }
}
