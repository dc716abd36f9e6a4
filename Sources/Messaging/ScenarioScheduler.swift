import ChatMeshAPI
import MeshRPC

/// Sends chatbot scenario steps when they are due (R-BOT-1). The steps are rows
/// in the store, so a restart loses none: a step that fell due while the
/// service was down is sent when it is back. Each step sends with the
/// idempotency key `step:<step id>`, so a step interrupted between its send
/// and its bookkeeping is not sent twice. Replicas each run one: a step is claimed
/// for the lease's duration (RunnerLease) before it is sent, so one replica sends it.
public struct ScenarioScheduler: Sendable {
    let store: MessagingStore
    let sender: MessageSender
    let claimMs: Int64

    public init(store: MessagingStore, sender: MessageSender, claimMs: Int64 = RunnerLease.defaultDurationMs) {
        self.store = store
        self.sender = sender
        self.claimMs = claimMs
    }

    /// The placeholders a bot can fill: nothing else is known when it sends.
    public static let placeholders: Set<String> = ["customer_id", "page_id", "tag_name"]

    /// Sends what is due; returns how many steps it settled.
    @discardableResult
    public func sendDue(limit: Int = 200) async throws -> Int {
        let due = try await store.dueSteps(nowMs: sender.now(), limit: limit)
        for step in due {
            guard try await store.claimStep(shop: step.shop, stepId: step.stepId, nowMs: sender.now(), claimMs: claimMs) else { continue }
            let (status, reason, messageId) = try await send(step)
            try await store.finishStep(shop: step.shop, stepId: step.stepId, status: status, reason: reason, messageId: messageId)
        }
        return due.count
    }

    func send(_ step: MessagingStore.DueStep) async throws -> (status: ScheduledStepStatus, reason: String, messageId: String) {
        do {
            let template = try await store.template(shop: step.shop, id: step.templateId)
            var recipient = step.recipient
            if recipient.isEmpty, step.channel == .messenger {
                recipient = try await store.messengerContacts(shop: step.shop, customerIds: [step.customerId])[step.customerId]?.recipient ?? ""
            }
            recipient = try MessageSender.recipient(recipient, channel: step.channel)
            if step.channel == .messenger {
                let last = try await store.messengerContact(shop: step.shop, recipient: recipient)?.lastCustomerMessageAtMs
                if case .refused(let reason) = MessengerPolicy.decide(sender: .bot, lastCustomerMessageAtMs: last, nowMs: sender.now()) {
                    return (.skipped, reason, "")
                }
            }
            let answer = try await sender.send(
                shop: step.shop, template: template, recipient: recipient,
                params: ["customer_id": step.customerId, "page_id": step.pageId, "tag_name": step.tagName],
                idempotencyKey: "step:" + step.stepId, customerId: step.customerId
            )
            return (answer.status == .failed ? .failed : .sent, "", answer.messageId)
        } catch {
            // Refusals (balance, quota, a template disabled or deleted) end the step with the reason; faults of our own propagate.
            let status = RPCError(answering: error)
            switch status.code {
            case .unavailable, .internal, .unknown, .deadlineExceeded, .cancelled: throw error
            default: return (.skipped, status.message, "")
            }
        }
    }
}
