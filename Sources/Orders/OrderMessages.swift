import ChatMeshAPI
import Foundation
import MeshRPC
import VietnamCommerce

/// Where order-svc's messages go (R-MSG-4): messaging-svc's SendMessage over the
/// wire, a scripted fake in tests.
public protocol OrderMessenger: Sendable {
    func send(_ request: SendMessageRequest) async throws(RPCError) -> SendMessageResponse
    /// The shop's default template for `use` (FAILED_PRECONDITION naming template_id when it has none).
    func messageDefault(shop: String, use: MessageDefault.Use) async throws(RPCError) -> MessageDefault
}

/// messaging-svc over the wire, with the caller's token and a deadline inside the caller's.
public struct MessagingOrderMessenger: OrderMessenger {
    let client: MessagingService.Client

    public init(channel: any RPCChannel) {
        client = MessagingService.Client(channel: channel, defaultOptions: CallOptions(timeout: .seconds(5)))
    }

    public func messageDefault(shop: String, use: MessageDefault.Use) async throws(RPCError) -> MessageDefault {
        try await client.getMessageDefault(GetMessageDefaultRequest(shopId: shop, use: use))
    }

    public func send(_ request: SendMessageRequest) async throws(RPCError) -> SendMessageResponse {
        try await client.sendMessage(request)
    }
}

/// The placeholders order and cart messages offer their templates.
public enum OrderMessageParams {
    /// Template parameters of an order's messages (confirmation, payment link).
    public static func order(_ order: Order) -> [String: String] {
        var params = [
            "order_id": order.orderId,
            "name": order.shipping?.name ?? "",
            "phone": order.shipping?.phone ?? "",
            "total": VietnameseMoney.format(order.totalVnd),
            "items": order.items.map { "\($0.quantity) × \($0.productName)" + ($0.variantTitle.isEmpty ? "" : " (\($0.variantTitle))") }.joined(separator: ", "),
        ]
        if let shipment = order.shipment {
            params["carrier"] = Carrier(rawValue: shipment.carrier)?.displayName ?? shipment.carrier
            params["tracking_url"] = shipment.trackingUrl
            params["tracking_code"] = shipment.trackingCode
        }
        return params
    }

    /// Template parameters of a cart reminder, with its link.
    public static func cart(_ cart: Cart, names: [String: String], link: String) -> [String: String] {
        [
            "campaign": cart.campaignName,
            "items": cart.items.map { "\($0.quantity) × \(names[$0.variantId] ?? $0.variantId)" }.joined(separator: ", "),
            "total": VietnameseMoney.format(cart.totalVnd),
            "link": link,
        ]
    }
}
