import ChatMeshAPI
import MeshRPC

/// How order-svc answers each of its refusals over gRPC: the one place where a
/// domain error becomes a status. The message names the request field first.
extension OrderError: RPCErrorConvertible {
    public var rpcError: RPCError {
        switch self {
        case .noOrder(let id): .notFound("order_id: no order \(id)")
        case .noCart(let field, let id): .notFound("\(field): no cart \(id)")
        case .noWarehouse(let id): .notFound("warehouse_id: no warehouse \(id)")
        case .noCampaign(let id): .notFound("campaign_id: no campaign \(id)")
        case .noCampaignCode(let campaign, let code): .notFound("code: campaign \(campaign) sells nothing under \(code)")
        case .noVariant(let field, let id): .notFound("\(field).variant_id: no variant \(id)")
        case .noQuote(let id): .notFound("shipping_quote_id: no quote \(id)")
        case .noItems: .invalidArgument("items or cart_ids: an order needs at least one item")
        case .variantOfAnotherProduct(let field, let variant, let product):
            .invalidArgument("\(field).variant_id: \(variant) belongs to product \(product)")
        case .variantListedTwice(let field, let variant, let first):
            .invalidArgument("\(field): variant \(variant) is already in the order (\(first)); change its quantity instead")
        case .anotherCustomersCart(let field, let cart): .invalidArgument("\(field): cart \(cart) is another customer's")
        case .cartBecameOrder(let field, let cart, let order): .failedPrecondition("\(field): cart \(cart) became order \(order)")
        case .cartCombined(let field, let cart, let into): .failedPrecondition("\(field): cart \(cart) was combined into cart \(into) (R-CART-3)")
        case .notALivestream(let campaign, let kind): .failedPrecondition("campaign_id: campaign \(campaign) is a \(kind) campaign; only a LIVESTREAM goes live (R-CAMP-3)")
        case .emptyCart(let field, let cart): .failedPrecondition("\(field): cart \(cart) is empty")
        case .outOfStock(let field, let left, let product, let variant):
            .failedPrecondition("\(field): only \(max(0, left)) of \(product) \(variant) left")
        case .stockTaken(let field, let product, let variant): .failedPrecondition("\(field): not enough \(product) \(variant) left")
        case .quoteUsed(let quote, let order): .failedPrecondition("shipping_quote_id: quote \(quote) was used by order \(order)")
        case .quoteExpired(let quote): .failedPrecondition("shipping_quote_id: quote \(quote) has expired; estimate again")
        case .quoteTakenMeanwhile(let quote): .failedPrecondition("shipping_quote_id: quote \(quote) was used by another order")
        case .cartTakenMeanwhile: .failedPrecondition("cart_ids: a cart became another order meanwhile")
        case .lifecycle(let id, let refusal): .failedPrecondition("order_id: " + Self.explain(refusal, order: id))
        }
    }

    static func explain(_ refusal: OrderLifecycle.Refusal, order id: String) -> String {
        switch refusal {
        case .cancelled: "order \(id) was cancelled"
        case .notShipped: "order \(id) has not been shipped; ship it before completing it"
        case .alreadyShipped(let handoff): "order \(id) was already handed to \(handoff.carrier) as \(handoff.trackingCode)"
        case .notShippable(let status): "order \(id) is \(status.protoName.lowercased()) and cannot be shipped"
        case .handedToCarrier(let handoff):
            "order \(id) was handed to \(handoff.carrier) (tracking \(handoff.trackingCode)); cancel it in the back office (R-ORD-3)"
        case .notCancellable(let status): "order \(id) is \(status.protoName.lowercased()); cancel it in the back office (R-ORD-3)"
        }
    }
}
