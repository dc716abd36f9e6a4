import ChatMeshAPI
@testable import Orders
import Testing

/// R-ORD-6 and R-CART-3 on loaded carts, catalog and quote, with no database.
@Suite struct OrderDraftTests {
    typealias D = OrderDraft
    static let now: Int64 = 10_000
    static let catalog: [String: D.CatalogEntry] = [
        "shirt-m": D.CatalogEntry(productName: "Áo sơ mi", title: "Size M", priceVnd: 250_000, stock: 3),
        "bag": D.CatalogEntry(productName: "Túi", title: "Đỏ", priceVnd: 400_000, stock: 0),
    ]
    static let lanCart = Cart(cartId: "cart1", customerId: "lan", items: [CartItem(variantId: "shirt-m", quantity: 2, priceVnd: 199_000)])

    static func draft(
        items: [OrderLifecycle.StockLine] = [], carts: [Cart] = [], quoteId: String = "", quote: D.Quote? = nil
    ) -> Result<D, OrderError> {
        Result { () throws(OrderError) -> D in
            let wanted = try D.wanted(items: items, carts: carts, customerId: "lan")
            return try D.decide(
                customerId: "lan", wanted: wanted, cartIds: carts.map(\.cartId), catalog: catalog, quoteId: quoteId, quote: quote, nowMs: now
            )
        }
    }

    @Test func itemsAtCatalogPricesCartsAtTheirOwnAndAQuoteForItsFee() throws {
        let fromItems = try Self.draft(items: [.init(variantId: "shirt-m", quantity: 2)]).get()
        #expect(fromItems.subtotalVnd == 500_000 && fromItems.shippingFeeVnd == 0)
        let quote = D.Quote(feeVnd: 30_000, expiresAtMs: Self.now + 1, usedByOrderId: "")
        let fromCart = try Self.draft(carts: [Self.lanCart], quoteId: "q1", quote: quote).get()
        #expect(fromCart.lines.map(\.priceVnd) == [199_000] && fromCart.subtotalVnd == 398_000 && fromCart.shippingFeeVnd == 30_000)
        #expect(fromCart.lines.first?.productName == "Áo sơ mi" && fromCart.cartIds == ["cart1"])
    }

    @Test func refusalsNameTheFieldThatAskedForIt() {
        let table: [(Result<D, OrderError>, OrderError)] = [
            (Self.draft(), .noItems),
            (Self.draft(carts: [Cart(cartId: "c2", customerId: "minh", items: Self.lanCart.items)]), .anotherCustomersCart(field: "cart_ids[0]", cart: "c2")),
            (Self.draft(carts: [Cart(cartId: "c3", customerId: "lan", items: [])]), .emptyCart(field: "cart_ids[0]", cart: "c3")),
            // R-CART-3: a variant once, whichever way it was asked for.
            (Self.draft(items: [.init(variantId: "shirt-m", quantity: 1)], carts: [Self.lanCart]),
             .variantListedTwice(field: "cart_ids[0]", variant: "shirt-m", firstField: "items[0]")),
            (Self.draft(items: [.init(variantId: "hat", quantity: 1)]), .noVariant(field: "items[0]", id: "hat")),
            (Self.draft(items: [.init(variantId: "shirt-m", quantity: 4)]), .outOfStock(field: "items[0]", left: 3, product: "Áo sơ mi", variant: "Size M")),
            (Self.draft(items: [.init(variantId: "bag", quantity: 1)]), .outOfStock(field: "items[0]", left: 0, product: "Túi", variant: "Đỏ")),
            (Self.draft(items: [.init(variantId: "shirt-m", quantity: 1)], quoteId: "q9"), .noQuote("q9")),
            (Self.draft(items: [.init(variantId: "shirt-m", quantity: 1)], quoteId: "q1",
                        quote: D.Quote(feeVnd: 1, expiresAtMs: Self.now + 1, usedByOrderId: "ord_1")), .quoteUsed(quote: "q1", byOrder: "ord_1")),
            (Self.draft(items: [.init(variantId: "shirt-m", quantity: 1)], quoteId: "q1",
                        quote: D.Quote(feeVnd: 1, expiresAtMs: Self.now, usedByOrderId: "")), .quoteExpired("q1")),
        ]
        for (index, (result, expected)) in table.enumerated() {
            #expect(result == .failure(expected), "row \(index)")
        }
    }
}

/// R-CART-1..2: prices when staff edit a cart.
@Suite struct CartEditTests {
    @Test func keptVariantsKeepTheirPriceNewOnesTakeTheCampaignsElseTheCatalogs() throws {
        let current = [CartItem(variantId: "a12-m", quantity: 1, priceVnd: 150_000)]
        let edited = try CartEdit.items(
            replacing: current,
            with: [CartItem(variantId: "a12-m", quantity: 3), CartItem(variantId: "b3", quantity: 1), CartItem(variantId: "c7", quantity: 2)],
            campaignPrices: ["b3": 90_000, "a12-m": 120_000], catalogPrices: ["a12-m": 199_000, "b3": 120_000, "c7": 300_000]
        )
        #expect(edited.map(\.priceVnd) == [150_000, 90_000, 300_000])
        #expect(edited.map(\.quantity) == [3, 1, 2])
        #expect(throws: OrderError.noVariant(field: "items[1]", id: "zz")) {
            try CartEdit.items(replacing: current, with: [CartItem(variantId: "a12-m", quantity: 1), CartItem(variantId: "zz", quantity: 1)],
                               campaignPrices: [:], catalogPrices: ["a12-m": 1])
        }
    }
}
