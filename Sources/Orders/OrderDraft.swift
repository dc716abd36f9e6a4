import ChatMeshAPI

/// R-ORD-6 and R-CART-3: what an order would be, decided in plain Swift from what the
/// store loaded: items given (at catalog prices) or carts combined (at their prices),
/// each variant once, enough of each in stock, a quote not used and not expired.
public struct OrderDraft: Sendable, Hashable {
    /// A line of the order: what, how many, at what price.
    public struct Line: Sendable, Hashable {
        public var variantId: String
        public var quantity: Int64
        public var priceVnd: Int64
        public var productName: String
        public var variantTitle: String
    }

    public var customerId: String
    public var lines: [Line]
    public var cartIds: [String]
    public var shippingFeeVnd: Int64
    public var quoteId: String
    /// R-REP-2: the page of the carts' campaign ("" when no cart came from one).
    public var pageId: String = ""
    public var subtotalVnd: Int64 { lines.reduce(0) { $0 + $1.quantity * $1.priceVnd } }

    /// A variant in the catalog, with its product's name and what is in stock, as orders copy them.
    public struct CatalogEntry: Sendable, Hashable {
        public var productName: String
        public var title: String
        public var priceVnd: Int64
        public var stock: Int64
    }

    /// A shipping quote as stored (R-SHIP-1).
    public struct Quote: Sendable, Hashable {
        public var feeVnd: Int64
        public var expiresAtMs: Int64
        /// The order that used it ("" while unused).
        public var usedByOrderId: String
    }

    /// The variants a request asks for, in order, each with the request field that asked; `carts`
    /// are the open carts the request names, as loaded (the store refused closed ones).
    public static func wanted(items: [OrderLifecycle.StockLine], carts: [Cart], customerId: String) throws(OrderError) -> [Wanted] {
        var wanted = items.enumerated().map { index, item in
            Wanted(variantId: item.variantId, quantity: item.quantity, priceVnd: nil, field: "items[\(index)]")
        }
        for (index, cart) in carts.enumerated() {
            let field = "cart_ids[\(index)]"
            if cart.customerId != customerId { throw .anotherCustomersCart(field: field, cart: cart.cartId) }
            if cart.items.isEmpty { throw .emptyCart(field: field, cart: cart.cartId) }
            wanted += cart.items.map { Wanted(variantId: $0.variantId, quantity: Int64($0.quantity), priceVnd: $0.priceVnd, field: field) }
        }
        if wanted.isEmpty { throw .noItems }
        // R-CART-3: one line per variant.
        var seen: [String: String] = [:]
        for line in wanted {
            if let first = seen[line.variantId] { throw .variantListedTwice(field: line.field, variant: line.variantId, firstField: first) }
            seen[line.variantId] = line.field
        }
        return wanted
    }

    /// A variant the request asks for, before the catalog is read.
    public struct Wanted: Sendable, Hashable {
        public var variantId: String
        public var quantity: Int64
        /// A cart's price; nil: the catalog's.
        public var priceVnd: Int64?
        public var field: String
    }

    /// The draft, once the catalog entries of `wanted` and the quote (if one was named) are loaded.
    public static func decide(
        customerId: String, wanted: [Wanted], cartIds: [String], catalog: [String: CatalogEntry], quoteId: String, quote: Quote?, nowMs: Int64
    ) throws(OrderError) -> OrderDraft {
        var lines: [Line] = []
        for line in wanted {
            guard let entry = catalog[line.variantId] else { throw .noVariant(field: line.field, id: line.variantId) }
            if entry.stock < line.quantity {
                throw .outOfStock(field: line.field, left: entry.stock, product: entry.productName, variant: entry.title)
            }
            lines.append(Line(
                variantId: line.variantId, quantity: line.quantity, priceVnd: line.priceVnd ?? entry.priceVnd, productName: entry.productName,
                variantTitle: entry.title
            ))
        }
        var fee: Int64 = 0
        if !quoteId.isEmpty {
            guard let quote else { throw .noQuote(quoteId) }
            if !quote.usedByOrderId.isEmpty { throw .quoteUsed(quote: quoteId, byOrder: quote.usedByOrderId) }
            if quote.expiresAtMs <= nowMs { throw .quoteExpired(quoteId) }
            fee = quote.feeVnd
        }
        return OrderDraft(customerId: customerId, lines: lines, cartIds: cartIds, shippingFeeVnd: fee, quoteId: quoteId)
    }
}
