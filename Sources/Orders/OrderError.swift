/// Why order-svc refuses a command, as its rules and store see it. Each case names
/// the request field it concerns where one does, so that the answer can too; how
/// each is answered over gRPC is said once, in `OrderServiceHandler+Status.swift`.
public enum OrderError: Error, Sendable, Hashable {
    // Something named does not exist (in this shop).
    case noOrder(String)
    case noCart(field: String, id: String)
    case noWarehouse(String)
    case noCampaign(String)
    case noCampaignCode(campaign: String, code: String)
    case noVariant(field: String, id: String)
    case noQuote(String)

    // The command contradicts itself or the catalog.
    case noItems
    case variantOfAnotherProduct(field: String, variant: String, product: String)
    case variantListedTwice(field: String, variant: String, firstField: String)
    case anotherCustomersCart(field: String, cart: String)

    // The state of things does not allow it (now).
    case cartBecameOrder(field: String, cart: String, order: String)
    /// R-CART-3: the cart's items went into another cart.
    case cartCombined(field: String, cart: String, into: String)
    /// R-CAMP-3: only a livestream goes live.
    case notALivestream(campaign: String, kind: String)
    case emptyCart(field: String, cart: String)
    /// What the draft saw in stock was not enough.
    case outOfStock(field: String, left: Int64, product: String, variant: String)
    /// Stock the draft saw was taken by another order before this one was written.
    case stockTaken(field: String, product: String, variant: String)
    case quoteUsed(quote: String, byOrder: String)
    case quoteExpired(String)
    case quoteTakenMeanwhile(String)
    case cartTakenMeanwhile

    /// The order's life does not allow the step (R-ORD-2..5).
    case lifecycle(orderId: String, OrderLifecycle.Refusal)
}
