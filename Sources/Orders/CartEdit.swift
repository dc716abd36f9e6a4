import ChatMeshAPI

/// R-CART-1..2: staff replacing a cart's items, decided in plain Swift. A variant
/// already in the cart keeps the price it was added at; a new one takes the
/// campaign's price, else the catalog's; a variant the shop does not sell is refused.
public enum CartEdit {
    /// The cart's new items, priced.
    public static func items(
        replacing current: [CartItem], with wanted: [CartItem], campaignPrices: [String: Int64], catalogPrices: [String: Int64]
    ) throws(OrderError) -> [CartItem] {
        let kept = Dictionary(current.map { ($0.variantId, $0.priceVnd) }, uniquingKeysWith: { first, _ in first })
        var items: [CartItem] = []
        for (index, item) in wanted.enumerated() {
            guard let catalog = catalogPrices[item.variantId] else { throw .noVariant(field: "items[\(index)]", id: item.variantId) }
            items.append(CartItem(
                variantId: item.variantId, quantity: item.quantity, priceVnd: kept[item.variantId] ?? campaignPrices[item.variantId] ?? catalog
            ))
        }
        return items
    }
}
