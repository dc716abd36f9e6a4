import ChatMeshAPI
import Foundation
import MeshRPC
import MeshStore
import MeshTracing
import VietnamCommerce

/// One message from template to provider, the same for a staff member's
/// SendMessage, a chatbot step and (batched) a broadcast: render, top up if the
/// shop asked for it, reserve (idempotency, balance, ZNS purpose and quota),
/// deliver, settle.
public struct MessageSender: Sendable {
    let store: MessagingStore
    let adapters: [Template.Channel: any DeliveryAdapter]
    let prices: MessagePrices
    let zns: ZnsQualityPolicy
    let topUps: AutomaticTopUps?
    let now: @Sendable () -> Int64
    /// Settled sends counted for /metrics, when metrics are on.
    let metrics: MessagingMetrics?

    /// - Parameters:
    ///   - adapters: the provider of each channel; a channel without one refuses sends (FAILED_PRECONDITION).
    ///   - topUps: automatic top-up (R-MSG-3); nil when no payment gateway is configured.
    public init(
        store: MessagingStore, adapters: [Template.Channel: any DeliveryAdapter], prices: MessagePrices = MessagePrices(),
        zns: ZnsQualityPolicy = ZnsQualityPolicy(), topUps: AutomaticTopUps? = nil, now: @escaping @Sendable () -> Int64 = { WallClock.nowMs() },
        metrics: MessagingMetrics? = nil
    ) {
        self.metrics = metrics
        self.store = store
        self.adapters = adapters
        self.prices = prices
        self.zns = zns
        self.topUps = topUps
        self.now = now
    }

    /// Sends `template` to `recipient` (already checked by `recipient(_:channel:)`).
    /// A key used before answers what it got then, and nothing is sent again.
    public func send(
        shop: String, template: Template, recipient: String, params: [String: String], idempotencyKey: String, customerId: String,
        humanAgent: Bool = false
    ) async throws -> MessageDelivery.Sent {
        let channel = template.channel
        guard template.enabled else { throw MessagingError.templateDisabled(template.templateId) }
        let body: String
        do {
            body = try TemplateText.render(template.body, params: params)
        } catch let missing as TemplateText.MissingParameters {
            throw MessagingError.missingParameters(missing.names)
        }
        guard let adapter = adapters[channel] else { throw MessagingError.noProvider(channel) }
        let price = prices.price(channel)
        if price > 0, let topUps {
            try await topUps.ensure(shop: shop, needVnd: price)
        }
        let reservation = try await store.reserve(
            shop: shop, idempotencyKey: idempotencyKey, channel: channel, recipient: recipient, template: template, body: body,
            params: params, customerId: customerId, priceVnd: price, zns: channel == .zns ? zns : nil, nowMs: now()
        )
        let messageId: String
        switch reservation {
        case .existing(let answer):
            return answer
        case .reserved(let id):
            messageId = id
        }
        var delivery = Delivery(
            messageId: messageId, channel: channel, recipient: recipient, text: body, providerTemplateId: template.providerTemplateId, params: params
        )
        delivery.subject = template.name
        delivery.humanAgent = humanAgent
        let outcome = await deliver(delivery, by: adapter)
        let sent = try await store.settle(shop: shop, messageId: messageId, outcome: outcome, provider: adapter.name, nowMs: now())
        metrics?.settled(channel, sent)
        return sent
    }

    /// The provider's call, in a span of the trace that asked for the message (when tracing).
    private func deliver(_ delivery: Delivery, by adapter: any DeliveryAdapter) async -> DeliveryOutcome {
        guard RPCTracing.isEnabled else { return await adapter.deliver(delivery) }
        let attributes = ["chatmesh.channel": delivery.channel.protoName, "chatmesh.provider": adapter.name]
        return (try? await RPCTracing.continuing("deliver \(delivery.channel.protoName)", kind: .externalCall, from: Metadata(), attributes: attributes) {
            await adapter.deliver(delivery)
        }) ?? .failedTemporarily(message: "the provider's call did not run")
    }

    /// Delivers again what a crash or a provider's temporary failure left QUEUED
    /// for longer than `after` (well past any adapter's time-out, so nothing in
    /// flight is sent twice). Each is claimed before it goes, so that of several replicas
    /// one sends it. Returns how many were found.
    public func redeliverQueued(after: Int64 = 60_000, limit: Int = 500) async throws -> Int {
        let before = now() - after
        let queued = try await store.queued(beforeMs: before, limit: limit)
        for (shop, delivery) in queued {
            guard let adapter = adapters[delivery.channel] else { continue }
            guard try await store.claimQueued(shop: shop, messageId: delivery.messageId, beforeMs: before, nowMs: now()) else { continue }
            let outcome = await deliver(delivery, by: adapter)
            let sent = try await store.settle(shop: shop, messageId: delivery.messageId, outcome: outcome, provider: adapter.name, nowMs: now())
            metrics?.settled(delivery.channel, sent)
        }
        return queued.count
    }

    static func channel(_ channel: Template.Channel, field: String = "channel") throws(RPCError) -> Template.Channel {
        switch channel {
        case .zns, .email, .sms, .messenger: return channel
        default: throw .invalidArgument("\(field) must be ZNS, EMAIL, SMS or MESSENGER")
        }
    }

    /// Who a channel can reach: a mobile number for ZNS and SMS (stored form), an
    /// e-mail address, or a page-scoped id for Messenger.
    static func recipient(_ raw: String, channel: Template.Channel, field: String = "recipient") throws(RPCError) -> String {
        let value = raw.trimmingCharacters(in: .whitespaces)
        if value.isEmpty { throw .invalidArgument("\(field) is required") }
        switch channel {
        case .zns, .sms:
            guard let phone = VietnamPhone.normalize(value) else {
                throw .invalidArgument("\(field) must be a Vietnamese mobile number for \(channel.protoName), not \"\(raw)\"")
            }
            return phone
        case .email:
            let parts = value.split(separator: "@", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
                  value.utf8.count <= 254, !value.contains(where: { $0.isWhitespace || $0 == "<" || $0 == ">" || $0 == "\r" || $0 == "\n" }) else {
                throw .invalidArgument("\(field) must be an e-mail address, not \"\(raw)\"")
            }
            return value
        default:
            guard value.utf8.count <= 64, value.allSatisfy(\.isNumber) else {
                throw .invalidArgument("\(field) must be the customer's page-scoped id (digits) for MESSENGER")
            }
            return value
        }
    }
}
