import ChatMeshAPI
import Foundation
import MeshRPC
import MeshStore
import VietnamCommerce

/// chatmesh.v1.MessagingService: decodes, checks, calls the store, the
/// sender (one message) or the store's broadcast and scenario records, which
/// `BroadcastRunner` and `ScenarioScheduler` work through in the background.
public struct MessagingServiceHandler: MessagingService.Handler {
    let store: MessagingStore
    let sender: MessageSender
    let replies: ReplySender
    var zns: ZnsQualityPolicy { sender.zns }
    var now: @Sendable () -> Int64 { sender.now }

    /// - Parameter replies: how staff replies reach the platforms; the sandbox (nothing leaves) when nil.
    public init(store: MessagingStore, sender: MessageSender, replies: ReplySender? = nil) {
        self.store = store
        self.sender = sender
        self.replies = replies ?? ReplySender(store: store, adapters: .sandbox, now: sender.now)
    }

    // MARK: Templates (R-MSG-1, R-ZNS-3)

    public func createTemplate(_ request: CreateTemplateRequest, context: ServerContext) async throws -> Template {
        let channel = try MessageSender.channel(request.channel)
        let name = request.name.trimmingCharacters(in: .whitespacesAndNewlines)
        if name.isEmpty { throw RPCError.invalidArgument("name is required") }
        if name.count > 200 { throw RPCError.invalidArgument("name is longer than 200 characters") }
        if request.body.count > 5_000 { throw RPCError.invalidArgument("body is longer than 5000 characters") }
        let placeholders: [String]
        do {
            placeholders = try TemplateText.placeholders(in: request.body)
        } catch {
            throw RPCError.invalidArgument("body: \(error)")
        }
        switch request.purpose {
        case .transactionUpdate, .transactionComplete, .accountUpdate, .productUpdate: break
        case .marketing where channel == .zns:
            throw RPCError.invalidArgument("purpose: ZNS carries no marketing; its purposes are transaction, account and product updates (R-ZNS-3)")
        case .marketing: break
        default: throw RPCError.invalidArgument("purpose must be TRANSACTION_UPDATE, TRANSACTION_COMPLETE, ACCOUNT_UPDATE, PRODUCT_UPDATE or MARKETING")
        }
        if channel == .zns && request.providerTemplateId.isEmpty {
            throw RPCError.invalidArgument("provider_template_id: a ZNS template names the template Zalo approved")
        }
        let template = Template(
            channel: channel, name: name, body: request.body, purpose: request.purpose, providerTemplateId: request.providerTemplateId,
            placeholders: placeholders
        )
        return try await store.createTemplate(shop: request.shopId, template, nowMs: now())
    }

    public func listTemplates(_ request: ListTemplatesRequest, context: ServerContext) async throws -> ListTemplatesResponse {
        let channel: Template.Channel? = request.channel == .channelUnspecified ? nil : try MessageSender.channel(request.channel)
        let page = try ListPage.of(try await store.templates(shop: request.shopId, channel: channel), size: request.pageSize, token: request.pageToken)
        return ListTemplatesResponse(templates: page.items, nextPageToken: page.next)
    }

    // MARK: Default templates

    public func setMessageDefault(_ request: SetMessageDefaultRequest, context: ServerContext) async throws -> MessageDefault {
        let use = try Self.use(request.use)
        try FieldCheck.optionalId(request.templateId, "template_id")
        if !request.templateId.isEmpty {
            let template: Template
            do {
                template = try await store.template(shop: request.shopId, id: request.templateId)
            } catch MessagingError.noTemplate {
                throw RPCError.notFound("template_id: no template \(request.templateId)")
            }
            // A referral voucher goes to the friend's phone or e-mail address (R-REF-1).
            if use == .referralOffer && ![.zns, .sms, .email].contains(template.channel) {
                throw RPCError.invalidArgument("template_id: a referral offer goes by ZNS, SMS or EMAIL, not \(template.channel.protoName)")
            }
        }
        return try await store.setMessageDefault(shop: request.shopId, use: use, templateId: request.templateId)
    }

    public func getMessageDefault(_ request: GetMessageDefaultRequest, context: ServerContext) async throws -> MessageDefault {
        try await messageDefault(shop: request.shopId, use: try Self.use(request.use))
    }

    public func listMessageDefaults(_ request: ListMessageDefaultsRequest, context: ServerContext) async throws -> ListMessageDefaultsResponse {
        let page = try ListPage.of(try await store.messageDefaults(shop: request.shopId), size: request.pageSize, token: request.pageToken)
        return ListMessageDefaultsResponse(defaults: page.items, nextPageToken: page.next)
    }

    /// The shop's default for `use`, or the refusal that names the field the caller left out.
    func messageDefault(shop: String, use: MessageDefault.Use) async throws -> MessageDefault {
        guard let found = try await store.messageDefault(shop: shop, use: use) else {
            throw RPCError.failedPrecondition("template_id: none given, and the shop has no default template for \(use.protoName) (SetMessageDefault)")
        }
        return found
    }

    static func use(_ use: MessageDefault.Use) throws(RPCError) -> MessageDefault.Use {
        guard [.cartReminder, .orderConfirmation, .paymentLink, .scenarioStep, .referralOffer].contains(use) else {
            throw .invalidArgument("use must be CART_REMINDER, ORDER_CONFIRMATION, PAYMENT_LINK, SCENARIO_STEP or REFERRAL_OFFER")
        }
        return use
    }

    // MARK: Balance (R-MSG-3)

    public func getBalance(_ request: ShopRequest, context: ServerContext) async throws -> Balance {
        try await store.balance(shop: request.shopId)
    }

    public func topUp(_ request: TopUpRequest, context: ServerContext) async throws -> Balance {
        if request.amountVnd <= 0 { throw RPCError.invalidArgument("amount_vnd must be positive") }
        if request.amountVnd > 1_000_000_000 { throw RPCError.invalidArgument("amount_vnd is over 1,000,000,000 VND for one top-up") }
        let ref = request.paymentRef.trimmingCharacters(in: .whitespaces)
        if ref.isEmpty || ref.utf8.count > 128 { throw RPCError.invalidArgument("payment_ref is required (at most 128 bytes)") }
        return try await store.topUp(shop: request.shopId, amountVnd: request.amountVnd, paymentRef: ref, nowMs: now())
    }

    public func setAutoTopUp(_ request: SetAutoTopUpRequest, context: ServerContext) async throws -> Balance {
        if request.enabled {
            if request.thresholdVnd < 0 { throw RPCError.invalidArgument("threshold_vnd must not be negative") }
            if request.amountVnd <= 0 { throw RPCError.invalidArgument("amount_vnd must be positive when auto top-up is on") }
        }
        return try await store.setAutoTopUp(
            shop: request.shopId, AutoTopUp(enabled: request.enabled, thresholdVnd: request.thresholdVnd, amountVnd: request.amountVnd)
        )
    }

    // MARK: Sends (R-MSG-4)

    public func sendMessage(_ request: SendMessageRequest, context: ServerContext) async throws -> SendMessageResponse {
        let channel = try MessageSender.channel(request.channel)
        let key = request.idempotencyKey
        if key.isEmpty || key.utf8.count > 200 { throw RPCError.invalidArgument("idempotency_key is required (at most 200 bytes)") }
        if key.hasPrefix("bc:") || key.hasPrefix("step:") {
            throw RPCError.invalidArgument("idempotency_key: keys starting with \"bc:\" or \"step:\" are messaging-svc's own")
        }
        let recipient = try MessageSender.recipient(request.recipient, channel: channel)
        if request.templateId.isEmpty { throw RPCError.invalidArgument("template_id is required") }
        let template = try await store.template(shop: request.shopId, id: request.templateId)
        guard template.channel == channel else {
            throw RPCError.invalidArgument("template_id: template \(template.templateId) is for \(template.channel.protoName), not \(channel.protoName)")
        }
        var humanAgent = false
        if channel == .messenger {
            // R-MSG-5: SendMessage is a staff member's message.
            let last = try await store.messengerContact(shop: request.shopId, recipient: recipient)?.lastCustomerMessageAtMs
            switch MessengerPolicy.decide(sender: .staff, lastCustomerMessageAtMs: last, nowMs: now()) {
            case .allowed: break
            case .allowedWithHumanAgentTag: humanAgent = true
            case .refused(let reason): throw RPCError.failedPrecondition("recipient: \(reason)")
            }
        }
        let sent = try await sender.send(
            shop: request.shopId, template: template, recipient: recipient, params: request.params, idempotencyKey: key,
            customerId: request.customerId, humanAgent: humanAgent
        )
        return Self.answer(sent)
    }

    // MARK: ZNS quality (R-ZNS-1..3)

    public func recordDeliveryReport(_ request: DeliveryReportRequest, context: ServerContext) async throws -> SendMessageResponse {
        if request.messageId.isEmpty { throw RPCError.invalidArgument("message_id is required") }
        if request.reason.utf8.count > 1_000 { throw RPCError.invalidArgument("reason is longer than 1000 bytes") }
        return Self.answer(try await store.report(
            shop: request.shopId, messageId: request.messageId, delivered: request.delivered, reason: request.reason, nowMs: now()
        ))
    }

    static func answer(_ sent: MessageDelivery.Sent) -> SendMessageResponse {
        SendMessageResponse(messageId: sent.messageId, status: sent.status.rawValue, costVnd: sent.costVnd)
    }

    public func recordFeedback(_ request: RecordFeedbackRequest, context: ServerContext) async throws -> Empty {
        if request.messageId.isEmpty { throw RPCError.invalidArgument("message_id is required") }
        try await store.recordFeedback(shop: request.shopId, messageId: request.messageId, negative: request.negative, nowMs: now())
        return Empty()
    }

    public func getZnsQuality(_ request: ShopRequest, context: ServerContext) async throws -> ZnsQuality {
        try await store.znsQuality(shop: request.shopId, policy: zns, nowMs: now())
    }

    // MARK: Broadcasts (R-MSG-2)

    public func createBroadcast(_ request: CreateBroadcastRequest, context: ServerContext) async throws -> Broadcast {
        let channel = try MessageSender.channel(request.channel)
        if request.templateId.isEmpty { throw RPCError.invalidArgument("template_id is required") }
        let segment = request.segmentId.trimmingCharacters(in: .whitespaces)
        if segment.isEmpty || segment.utf8.count > 128 { throw RPCError.invalidArgument("segment_id is required (at most 128 bytes)") }
        if request.scheduleAtMs < 0 { throw RPCError.invalidArgument("schedule_at_ms must not be negative (0 sends now)") }
        if request.scheduleAtMs > now() + 366 * 86_400_000 { throw RPCError.invalidArgument("schedule_at_ms is more than a year ahead") }
        if request.idempotencyKey.utf8.count > 200 { throw RPCError.invalidArgument("idempotency_key is longer than 200 bytes") }
        let template = try await store.template(shop: request.shopId, id: request.templateId)
        guard template.channel == channel else {
            throw RPCError.invalidArgument("template_id: template \(template.templateId) is for \(template.channel.protoName), not \(channel.protoName)")
        }
        guard template.enabled else {
            throw RPCError.failedPrecondition("template_id: template \(template.templateId) is disabled (poor ZNS quality, R-ZNS-2)")
        }
        let perMember: Set<String> = ["name", "phone", "email", "customer_id"]
        let missing = template.placeholders.filter { request.params[$0] == nil && !perMember.contains($0) }
        if !missing.isEmpty {
            throw RPCError.invalidArgument("params: no value for \(missing.map { "{{\($0)}}" }.joined(separator: ", ")) (each member brings only {{name}}, {{phone}}, {{email}} and {{customer_id}})")
        }
        guard sender.adapters[channel] != nil else {
            throw RPCError.failedPrecondition("channel: no provider is configured for \(channel.protoName)")
        }
        guard (0...Int32(BroadcastAttribution.maxDays)).contains(request.attributionDays) else {
            throw RPCError.invalidArgument("attribution_days must be 1 to \(BroadcastAttribution.maxDays) (0: \(BroadcastAttribution.defaultDays))")
        }
        let key = request.idempotencyKey.isEmpty ? SortableID.make("auto_", nowMs: now()) : request.idempotencyKey
        return try await store.createBroadcast(
            shop: request.shopId, idempotencyKey: key, channel: channel, templateId: template.templateId, segmentId: segment,
            scheduleAtMs: request.scheduleAtMs, params: request.params,
            attributionDays: request.attributionDays == 0 ? BroadcastAttribution.defaultDays : Int(request.attributionDays), nowMs: now()
        )
    }

    public func getBroadcast(_ request: BroadcastRequest, context: ServerContext) async throws -> Broadcast {
        if request.broadcastId.isEmpty { throw RPCError.invalidArgument("broadcast_id is required") }
        return try await store.broadcast(shop: request.shopId, id: request.broadcastId)
    }

    public func cancelBroadcast(_ request: BroadcastRequest, context: ServerContext) async throws -> Broadcast {
        if request.broadcastId.isEmpty { throw RPCError.invalidArgument("broadcast_id is required") }
        return try await store.cancelBroadcast(shop: request.shopId, id: request.broadcastId, nowMs: now())
    }

    // MARK: Chatbot scenarios (R-BOT-1)

    public func createScenario(_ request: CreateScenarioRequest, context: ServerContext) async throws -> Scenario {
        var request = request
        if let problem = TagName.validate(request.triggerTagName) { throw RPCError.invalidArgument("trigger_tag_name: \(problem)") }
        // A scenario without a channel whose steps name their templates goes by the first one's channel.
        if request.channel == .channelUnspecified, let first = request.steps.first?.templateId, !first.isEmpty,
           !request.steps.contains(where: { $0.templateId.isEmpty }), let template = try? await store.template(shop: request.shopId, id: first) {
            request.channel = template.channel
        }
        // A step without a template, or a scenario without a channel, takes the shop's SCENARIO_STEP default.
        if request.channel == .channelUnspecified || request.steps.contains(where: { $0.templateId.isEmpty }) {
            let fallback = try await messageDefault(shop: request.shopId, use: .scenarioStep)
            if request.channel == .channelUnspecified { request.channel = fallback.channel }
            for index in request.steps.indices where request.steps[index].templateId.isEmpty { request.steps[index].templateId = fallback.templateId }
        }
        let channel = try MessageSender.channel(request.channel)
        if request.steps.isEmpty { throw RPCError.invalidArgument("steps: a scenario has at least one step") }
        if request.steps.count > 20 { throw RPCError.invalidArgument("steps: at most 20 steps") }
        for (index, step) in request.steps.enumerated() {
            let field = "steps[\(index)]"
            if step.delayMs < 0 || step.delayMs > 30 * 86_400_000 {
                throw RPCError.invalidArgument("\(field).delay_ms must be between 0 and 30 days")
            }
            let template: Template
            do {
                template = try await store.template(shop: request.shopId, id: step.templateId)
            } catch MessagingError.noTemplate {
                throw RPCError.notFound("\(field).template_id: no template \(step.templateId)")
            }
            guard template.channel == channel else {
                throw RPCError.invalidArgument("\(field).template_id: template \(step.templateId) is for \(template.channel.protoName), not \(channel.protoName)")
            }
            let unknown = template.placeholders.filter { !ScenarioScheduler.placeholders.contains($0) }
            if !unknown.isEmpty {
                throw RPCError.invalidArgument(
                    "\(field).template_id: a bot can fill only {{customer_id}}, {{page_id}} and {{tag_name}}, not \(unknown.map { "{{\($0)}}" }.joined(separator: ", "))"
                )
            }
        }
        let name = request.triggerTagName.trimmingCharacters(in: .whitespacesAndNewlines)
        return try await store.createScenario(shop: request.shopId, tagName: name, channel: channel, steps: request.steps, nowMs: now())
    }

    public func listScenarios(_ request: ListScenariosRequest, context: ServerContext) async throws -> ListScenariosResponse {
        let page = try ListPage.of(try await store.scenarios(shop: request.shopId), size: request.pageSize, token: request.pageToken)
        return ListScenariosResponse(scenarios: page.items, nextPageToken: page.next)
    }

    static func event(_ eventId: String, customerId: String, atMs: Int64) throws(RPCError) {
        if eventId.isEmpty || eventId.utf8.count > 200 { throw .invalidArgument("event_id is required (at most 200 bytes)") }
        if customerId.isEmpty || customerId.utf8.count > 128 { throw .invalidArgument("customer_id is required (at most 128 bytes)") }
        if atMs <= 0 { throw .invalidArgument("at_ms is required") }
    }

    public func onTagAttached(_ request: OnTagAttachedRequest, context: ServerContext) async throws -> OnTagAttachedResponse {
        try Self.event(request.eventId, customerId: request.customerId, atMs: request.atMs)
        if let problem = TagName.validate(request.tagName) { throw RPCError.invalidArgument("tag_name: \(problem)") }
        if request.recipient.utf8.count > 254 { throw RPCError.invalidArgument("recipient is longer than 254 bytes") }
        let started = try await store.startScenarios(
            shop: request.shopId, eventId: request.eventId, pageId: request.pageId, customerId: request.customerId, tagName: request.tagName,
            recipient: request.recipient.trimmingCharacters(in: .whitespaces), atMs: request.atMs, nowMs: now()
        )
        return OnTagAttachedResponse(scenarioIds: started)
    }

    public func onTagDetached(_ request: OnTagDetachedRequest, context: ServerContext) async throws -> CancelledStepsResponse {
        try Self.event(request.eventId, customerId: request.customerId, atMs: request.atMs)
        if let problem = TagName.validate(request.tagName) { throw RPCError.invalidArgument("tag_name: \(problem)") }
        let cancelled = try await store.tagDetached(
            shop: request.shopId, eventId: request.eventId, customerId: request.customerId, tagName: request.tagName, nowMs: now()
        )
        return CancelledStepsResponse(cancelledSteps: Int32(cancelled))
    }

    public func onCustomerMessage(_ request: OnCustomerMessageRequest, context: ServerContext) async throws -> CancelledStepsResponse {
        try Self.event(request.eventId, customerId: request.customerId, atMs: request.atMs)
        var recipient = ""
        // R-MSG-5: a comment opens no Messenger window.
        if !request.recipient.isEmpty && !request.comment {
            recipient = try MessageSender.recipient(request.recipient, channel: .messenger)
        }
        let cancelled = try await store.customerMessaged(
            shop: request.shopId, eventId: request.eventId, pageId: request.pageId, customerId: request.customerId, recipient: recipient,
            atMs: request.atMs, nowMs: now()
        )
        return CancelledStepsResponse(cancelledSteps: Int32(cancelled))
    }

    /// R-MSG-2: order-svc's order events, for the broadcasts' profit.
    public func onOrderEvent(_ request: OnOrderEventRequest, context: ServerContext) async throws -> OnOrderEventResponse {
        try Self.event(request.eventId, customerId: request.customerId, atMs: request.atMs)
        _ = try FieldCheck.id(request.orderId, "order_id")
        guard [.paid, .cancelled, .refunded].contains(request.kind) else { throw RPCError.invalidArgument("kind must be PAID, CANCELLED or REFUNDED") }
        if request.amountVnd < 0 { throw RPCError.invalidArgument("amount_vnd must not be negative") }
        let broadcast = try await store.orderEvent(
            shop: request.shopId, eventId: request.eventId, orderId: request.orderId, customerId: request.customerId, paid: request.kind == .paid,
            amountVnd: request.amountVnd, atMs: request.atMs, nowMs: now()
        )
        return OnOrderEventResponse(broadcastId: broadcast ?? "")
    }

    // MARK: Staff replies (R-CONV-9)

    public func deliverReply(_ request: DeliverReplyRequest, context: ServerContext) async throws -> DeliverReplyResponse {
        _ = try FieldCheck.id(request.deliveryKey, "delivery_key")
        _ = try FieldCheck.id(request.pageId, "page_id")
        guard request.platform == .facebook || request.platform == .zalo else { throw RPCError.invalidArgument("platform must be FACEBOOK or ZALO") }
        switch request.target {
        case .inbox: _ = try FieldCheck.id(request.recipient, "recipient")
        case .commentPublic, .commentPrivate: _ = try FieldCheck.text(request.commentId, "comment_id", max: 200, required: true)
        default: throw RPCError.invalidArgument("target must be INBOX, COMMENT_PUBLIC or COMMENT_PRIVATE")
        }
        _ = try FieldCheck.text(request.text, "text", max: 8_000, required: true)
        _ = try FieldCheck.time(request.lastCustomerMessageAtMs, "last_customer_message_at_ms")
        _ = try FieldCheck.time(request.commentAtMs, "comment_at_ms")
        switch try await replies.deliver(request) {
        case .sent(let id): return DeliverReplyResponse(outcome: .sent, platformMessageId: id)
        case .failed(let reason): return DeliverReplyResponse(outcome: .failed, reason: reason)
        case .retry(let reason, let afterMs): return DeliverReplyResponse(outcome: .retry, reason: reason, retryAfterMs: afterMs)
        }
    }
}
