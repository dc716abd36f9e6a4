import ChatMeshAPI
import Foundation
import MeshRPC
import MeshStore

/// chatmesh.v1.MessagingService. Templates, the balance, transactional sends
/// and ZNS quality are here; broadcasts and chatbot scenarios are still being
/// built (issue 6) and answer UNIMPLEMENTED until then.
public struct MessagingServiceHandler: MessagingService.Handler {
    let store: MessagingStore
    let adapters: [Template.Channel: any DeliveryAdapter]
    let prices: MessagePrices
    let zns: ZnsQualityPolicy
    let now: @Sendable () -> Int64

    /// - Parameter adapters: the provider of each channel; a channel without one refuses sends (FAILED_PRECONDITION).
    public init(
        store: MessagingStore, adapters: [Template.Channel: any DeliveryAdapter], prices: MessagePrices = MessagePrices(),
        zns: ZnsQualityPolicy = ZnsQualityPolicy(), now: @escaping @Sendable () -> Int64 = { Clock.nowMs() }
    ) {
        self.store = store
        self.adapters = adapters
        self.prices = prices
        self.zns = zns
        self.now = now
    }

    static func channel(_ channel: Template.Channel, field: String = "channel") throws(RPCError) -> Template.Channel {
        switch channel {
        case .zns, .email, .sms, .messenger: return channel
        default: throw .invalidArgument("\(field) must be ZNS, EMAIL, SMS or MESSENGER")
        }
    }

    // MARK: Templates (R-MSG-1, R-ZNS-3)

    public func createTemplate(_ request: CreateTemplateRequest, context: ServerContext) async throws -> Template {
        let channel = try Self.channel(request.channel)
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
        let channel: Template.Channel? = request.channel == .channelUnspecified ? nil : try Self.channel(request.channel)
        return ListTemplatesResponse(templates: try await store.templates(shop: request.shopId, channel: channel))
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
        let channel = try Self.channel(request.channel)
        let key = request.idempotencyKey
        if key.isEmpty || key.utf8.count > 200 { throw RPCError.invalidArgument("idempotency_key is required (at most 200 bytes)") }
        let recipient = try Self.recipient(request.recipient, channel: channel)
        if request.templateId.isEmpty { throw RPCError.invalidArgument("template_id is required") }
        let template = try await store.template(shop: request.shopId, id: request.templateId)
        guard template.channel == channel else {
            throw RPCError.invalidArgument("template_id: template \(template.templateId) is for \(template.channel.protoName), not \(channel.protoName)")
        }
        guard template.enabled else {
            throw RPCError.failedPrecondition("template_id: template \(template.templateId) is disabled (poor ZNS quality, R-ZNS-2)")
        }
        let body: String
        do {
            body = try TemplateText.render(template.body, params: request.params)
        } catch let missing as TemplateText.MissingParameters {
            throw RPCError.invalidArgument("params: no value for \(missing.names.map { "{{\($0)}}" }.joined(separator: ", "))")
        }
        guard let adapter = adapters[channel] else {
            throw RPCError.failedPrecondition("channel: no provider is configured for \(channel.protoName)")
        }
        let reservation = try await store.reserve(
            shop: request.shopId, idempotencyKey: key, channel: channel, recipient: recipient, template: template, body: body,
            params: request.params, customerId: request.customerId, priceVnd: prices.price(channel), zns: channel == .zns ? zns : nil, nowMs: now()
        )
        let messageId: String
        switch reservation {
        case .existing(let answer):
            return answer
        case .reserved(let id):
            messageId = id
        }
        var delivery = Delivery(
            messageId: messageId, channel: channel, recipient: recipient, text: body, providerTemplateId: template.providerTemplateId,
            params: request.params
        )
        delivery.subject = template.name
        let outcome = await adapter.deliver(delivery)
        return try await store.settle(shop: request.shopId, messageId: messageId, outcome: outcome, provider: adapter.name, nowMs: now())
    }

    /// Delivers again what a crash or a provider's temporary failure left QUEUED
    /// for longer than `after` (well past any adapter's time-out, so nothing in
    /// flight is sent twice). Returns how many were tried.
    public func redeliverQueued(after: Int64 = 60_000, limit: Int = 500) async throws -> Int {
        let queued = try await store.queued(beforeMs: now() - after, limit: limit)
        for (shop, delivery) in queued {
            guard let adapter = adapters[delivery.channel] else { continue }
            let outcome = await adapter.deliver(delivery)
            _ = try await store.settle(shop: shop, messageId: delivery.messageId, outcome: outcome, provider: adapter.name, nowMs: now())
        }
        return queued.count
    }

    /// Who a channel can reach: a mobile number for ZNS and SMS (stored form), an
    /// e-mail address, or a page-scoped id for Messenger.
    static func recipient(_ raw: String, channel: Template.Channel) throws(RPCError) -> String {
        let value = raw.trimmingCharacters(in: .whitespaces)
        if value.isEmpty { throw .invalidArgument("recipient is required") }
        switch channel {
        case .zns, .sms:
            guard let phone = VietnamPhone.normalize(value) else {
                throw .invalidArgument("recipient must be a Vietnamese mobile number for \(channel.protoName), not \"\(raw)\"")
            }
            return phone
        case .email:
            let parts = value.split(separator: "@", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
                  value.utf8.count <= 254, !value.contains(where: { $0.isWhitespace || $0 == "<" || $0 == ">" || $0 == "\r" || $0 == "\n" }) else {
                throw .invalidArgument("recipient must be an e-mail address, not \"\(raw)\"")
            }
            return value
        default:
            guard value.utf8.count <= 64, value.allSatisfy(\.isNumber) else {
                throw .invalidArgument("recipient must be the customer's page-scoped id (digits) for MESSENGER")
            }
            return value
        }
    }

    // MARK: ZNS quality (R-ZNS-1..3)

    public func recordFeedback(_ request: RecordFeedbackRequest, context: ServerContext) async throws -> Empty {
        if request.messageId.isEmpty { throw RPCError.invalidArgument("message_id is required") }
        try await store.recordFeedback(shop: request.shopId, messageId: request.messageId, negative: request.negative, nowMs: now())
        return Empty()
    }

    public func getZnsQuality(_ request: ShopRequest, context: ServerContext) async throws -> ZnsQuality {
        try await store.znsQuality(shop: request.shopId, policy: zns, nowMs: now())
    }

    // MARK: Still being built (issue 6)

    static func notYet(_ what: String) -> RPCError {
        .unimplemented("\(what) is not built yet")
    }

    public func createBroadcast(_ request: CreateBroadcastRequest, context: ServerContext) async throws -> Broadcast { throw Self.notYet("CreateBroadcast") }
    public func getBroadcast(_ request: BroadcastRequest, context: ServerContext) async throws -> Broadcast { throw Self.notYet("GetBroadcast") }
    public func cancelBroadcast(_ request: BroadcastRequest, context: ServerContext) async throws -> Broadcast { throw Self.notYet("CancelBroadcast") }
    public func createScenario(_ request: CreateScenarioRequest, context: ServerContext) async throws -> Scenario { throw Self.notYet("CreateScenario") }
    public func listScenarios(_ request: ShopRequest, context: ServerContext) async throws -> ListScenariosResponse { throw Self.notYet("ListScenarios") }
    public func onTagAttached(_ request: OnTagAttachedRequest, context: ServerContext) async throws -> OnTagAttachedResponse { throw Self.notYet("OnTagAttached") }
}
