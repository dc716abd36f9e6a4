import ChatMeshAPI
import Foundation
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit

/// Orders, shipping quotes, order events and the staff sales report.
extension OrderStore {
    // MARK: Drafting an order (R-ORD-6, R-CART-3)

    /// Load → decide: the carts, catalog entries and quote the request names are read,
    /// and `OrderDraft` decides what the order would be. Writes nothing.
    public func draft(
        shop: String, customerId: String, items: [OrderLifecycle.StockLine], cartIds: [String], quoteId: String, nowMs: Int64
    ) async throws -> OrderDraft {
        try await db.read { db in
            var carts: [Cart] = []
            for (index, cartId) in cartIds.enumerated() {
                carts.append(try await Self.cart(db, shop: shop, id: cartId, field: "cart_ids[\(index)]"))
            }
            let wanted = try OrderDraft.wanted(items: items, carts: carts, customerId: customerId)
            let catalog = try await Self.catalog(db, shop: shop, variants: wanted.map(\.variantId))
            var quote: OrderDraft.Quote?
            if !quoteId.isEmpty, let row = try await db.raw("""
                SELECT * FROM shipping_quotes WHERE shop_id = \(bind: shop) AND quote_id = \(bind: quoteId)
                """).first() {
                quote = OrderDraft.Quote(
                    feeVnd: try row.int64("fee_vnd"), expiresAtMs: try row.int64("expires_at_ms"), usedByOrderId: try row.string("used_by_order_id")
                )
            }
            var draft = try OrderDraft.decide(
                customerId: customerId, wanted: wanted, cartIds: cartIds, catalog: catalog, quoteId: quoteId, quote: quote, nowMs: nowMs
            )
            let campaigns = carts.map(\.campaignId).filter { !$0.isEmpty }
            if !campaigns.isEmpty, let row = try await db.raw("""
                SELECT page_id FROM campaigns WHERE shop_id = \(bind: shop) AND campaign_id IN (\(binds: campaigns)) ORDER BY campaign_id LIMIT 1
                """).first() {
                draft.pageId = try row.string("page_id")
            }
            return draft
        }
    }

    /// The order a key already made, if any.
    public func order(shop: String, idempotencyKey: String) async throws -> Order? {
        guard !idempotencyKey.isEmpty else { return nil }
        return try await db.read { db in
            guard let row = try await db.raw("""
                SELECT order_id FROM orders WHERE shop_id = \(bind: shop) AND idempotency_key = \(bind: idempotencyKey)
                """).first() else { return nil }
            return try await Self.order(db, shop: shop, id: try row.string("order_id"))
        }
    }

    /// Everything CreateOrder decided, ready to write.
    public struct Placement: Sendable {
        public var orderId: String
        public var draft: OrderDraft
        public var tierDiscountVnd: Int64
        public var pointsDiscountVnd: Int64
        /// R-SEG-4, R-ORD-7.
        public var promotionId: String = ""
        public var promotionDiscountVnd: Int64 = 0
        public var voucherCode: String = ""
        public var voucherDiscountVnd: Int64 = 0
        public var redeemedPoints: Int64
        public var pointsToEarn: Int64
        public var shipping: ShippingInfo
        public var paymentMethod: Order.PaymentMethod
        public var channel: Order.Channel
        public var hasPromotion: Bool
        public var staffId: String
        public var idempotencyKey: String
        /// R-REP-2.
        public var pageId: String = ""
    }

    /// Writes the order in one transaction: stock taken (never below zero), the
    /// quote and the carts used up. The same key returns the order it made.
    public func place(shop: String, _ p: Placement, nowMs: Int64) async throws -> Order {
        return try await write { db in
            if !p.idempotencyKey.isEmpty, let row = try await db.raw("""
                SELECT order_id FROM orders WHERE shop_id = \(bind: shop) AND idempotency_key = \(bind: p.idempotencyKey)
                """).first() {
                return try await Self.order(db, shop: shop, id: try row.string("order_id"))
            }
            for (index, line) in p.draft.lines.enumerated() {
                let taken = try await db.raw("""
                    UPDATE variants SET stock = stock - \(bind: line.quantity)
                    WHERE shop_id = \(bind: shop) AND variant_id = \(bind: line.variantId) AND stock >= \(bind: line.quantity) RETURNING stock
                    """).all()
                if taken.isEmpty { throw OrderError.stockTaken(field: "items[\(index)]", product: line.productName, variant: line.variantTitle) }
            }
            if !p.draft.quoteId.isEmpty {
                let used = try await db.raw("""
                    UPDATE shipping_quotes SET used_by_order_id = \(bind: p.orderId)
                    WHERE shop_id = \(bind: shop) AND quote_id = \(bind: p.draft.quoteId) AND used_by_order_id = '' RETURNING quote_id
                    """).all()
                if used.isEmpty { throw OrderError.quoteTakenMeanwhile(p.draft.quoteId) }
            }
            if !p.draft.cartIds.isEmpty {
                let closed = try await db.raw("""
                    UPDATE carts SET order_id = \(bind: p.orderId), updated_by_staff_id = \(bind: p.staffId), updated_at_ms = \(bind: nowMs)
                    WHERE shop_id = \(bind: shop) AND cart_id IN (\(binds: p.draft.cartIds)) AND order_id = '' RETURNING cart_id
                    """).all()
                if closed.count != Set(p.draft.cartIds).count { throw OrderError.cartTakenMeanwhile }
            }
            let subtotal = p.draft.subtotalVnd
            let total = subtotal - p.promotionDiscountVnd - p.voucherDiscountVnd - p.tierDiscountVnd - p.pointsDiscountVnd + p.draft.shippingFeeVnd
            let a = p.shipping.address ?? Address()
            try await db.raw("""
                INSERT INTO orders (shop_id, order_id, customer_id, status, subtotal_vnd, tier_discount_vnd, points_discount_vnd, redeemed_points,
                    shipping_fee_vnd, total_vnd, points_earned, payment_method, channel, has_promotion, ship_name, ship_phone, street, ward, district,
                    province, quote_id, created_by_staff_id, idempotency_key, created_at_ms, promotion_id, promotion_discount_vnd, voucher_code,
                    voucher_discount_vnd, page_id)
                VALUES (\(bind: shop), \(bind: p.orderId), \(bind: p.draft.customerId), \(bind: Int64(Order.Status.pending.rawValue)), \(bind: subtotal),
                    \(bind: p.tierDiscountVnd), \(bind: p.pointsDiscountVnd), \(bind: p.redeemedPoints), \(bind: p.draft.shippingFeeVnd), \(bind: total),
                    \(bind: p.pointsToEarn), \(bind: Int64(p.paymentMethod.rawValue)), \(bind: Int64(p.channel.rawValue)), \(bind: p.hasPromotion ? 1 : 0 as Int64),
                    \(bind: p.shipping.name), \(bind: p.shipping.phone), \(bind: a.street), \(bind: a.ward), \(bind: a.district), \(bind: a.province),
                    \(bind: p.draft.quoteId), \(bind: p.staffId), \(bind: p.idempotencyKey.isEmpty ? p.orderId : p.idempotencyKey), \(bind: nowMs),
                    \(bind: p.promotionId), \(bind: p.promotionDiscountVnd), \(bind: p.voucherCode), \(bind: p.voucherDiscountVnd), \(bind: p.pageId))
                """).run()
            for (index, line) in p.draft.lines.enumerated() {
                try await db.raw("""
                    INSERT INTO order_items (shop_id, order_id, variant_id, quantity, price_vnd, product_name, variant_title, position)
                    VALUES (\(bind: shop), \(bind: p.orderId), \(bind: line.variantId), \(bind: line.quantity), \(bind: line.priceVnd),
                            \(bind: line.productName), \(bind: line.variantTitle), \(bind: Int64(index)))
                    """).run()
            }
            try await Self.changed(db, shop: shop, p.draft.cartIds.isEmpty ? [.orders] : [.orders, .carts], customers: [p.draft.customerId], nowMs: nowMs)
            return try await Self.order(db, shop: shop, id: p.orderId)
        }
    }

    // MARK: Reading orders (R-ORD-1)

    /// An order with its items.
    public func order(shop: String, id: String) async throws -> Order {
        try await db.read { db in try await Self.order(db, shop: shop, id: id) }
    }

    static func order(_ db: any SQLDatabase, shop: String, id: String) async throws -> Order {
        guard let row = try await db.raw("SELECT * FROM orders WHERE shop_id = \(bind: shop) AND order_id = \(bind: id)").first() else {
            throw OrderError.noOrder(id)
        }
        return try await orders(db, shop: shop, rows: [row]).first!
    }

    static func orders(_ db: any SQLDatabase, shop: String, rows: [any SQLRow]) async throws -> [Order] {
        var orders: [Order] = try rows.map { row in
            var order = Order(
                orderId: try row.string("order_id"), customerId: try row.string("customer_id"), status: Order.Status(rawValue: Int32(try row.int64("status"))),
                subtotalVnd: try row.int64("subtotal_vnd"), tierDiscountVnd: try row.int64("tier_discount_vnd"),
                pointsDiscountVnd: try row.int64("points_discount_vnd"), shippingFeeVnd: try row.int64("shipping_fee_vnd"), totalVnd: try row.int64("total_vnd"),
                pointsEarned: try row.int64("points_earned"), paymentMethod: Order.PaymentMethod(rawValue: Int32(try row.int64("payment_method"))),
                channel: Order.Channel(rawValue: Int32(try row.int64("channel"))),
                shipping: ShippingInfo(
                    name: try row.string("ship_name"), phone: try row.string("ship_phone"),
                    address: Address(street: try row.string("street"), ward: try row.string("ward"), district: try row.string("district"), province: try row.string("province"))
                ),
                createdByStaffId: try row.string("created_by_staff_id"), cancelledByStaffId: try row.string("cancelled_by_staff_id"),
                cancelReason: try row.string("cancel_reason"), createdAtMs: try row.int64("created_at_ms"), redeemedPoints: try row.int64("redeemed_points"),
                promotionId: try row.string("promotion_id"), promotionDiscountVnd: try row.int64("promotion_discount_vnd"),
                voucherCode: try row.string("voucher_code"), voucherDiscountVnd: try row.int64("voucher_discount_vnd"), pageId: try row.string("page_id")
            )
            let carrier = try row.string("carrier")
            if !carrier.isEmpty {
                order.shipment = Shipment(
                    carrier: carrier, trackingCode: try row.string("tracking_code"), trackingUrl: try row.string("tracking_url"),
                    warehouseId: try row.string("shipment_warehouse_id"), shippedAtMs: try row.int64("shipped_at_ms")
                )
            }
            return order
        }
        guard !orders.isEmpty else { return [] }
        var items: [String: [OrderItem]] = [:]
        for row in try await db.raw("""
            SELECT * FROM order_items WHERE shop_id = \(bind: shop) AND order_id IN (\(binds: orders.map(\.orderId))) ORDER BY order_id, position
            """).all() {
            items[try row.string("order_id"), default: []].append(OrderItem(
                variantId: try row.string("variant_id"), quantity: Int32(try row.int64("quantity")), priceVnd: try row.int64("price_vnd"),
                productName: try row.string("product_name"), variantTitle: try row.string("variant_title")
            ))
        }
        for index in orders.indices { orders[index].items = items[orders[index].orderId] ?? [] }
        return orders
    }

    /// R-ORD-1: counts by status, the money of orders that were paid and not cancelled or
    /// refunded, and the newest orders with their products.
    public func summary(shop: String, customer: String, recent: Int) async throws -> OrderSummary {
        try await db.read { db in try await Self.summary(db, shop: shop, customer: customer, recent: recent) }
    }

    static func summary(_ db: any SQLDatabase, shop: String, customer: String, recent: Int) async throws -> OrderSummary {
        var stats = OrderStats()
        for row in try await db.raw("""
            SELECT status, COUNT(*) AS n, COALESCE(SUM(CASE WHEN paid_at_ms > 0 THEN total_vnd ELSE 0 END), 0) AS paid
            FROM orders WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customer) GROUP BY status ORDER BY status
            """).all() {
            let status = Order.Status(rawValue: Int32(try row.int64("status")))
            let n = Int32(try row.int64("n"))
            stats.orderCount += n
            stats.byStatus.append(OrderStatusCount(status: status, count: n))
            if status != .cancelled && status != .refunded { stats.totalSpentVnd += try row.int64("paid") }
        }
        let rows = try await db.raw("""
            SELECT * FROM orders WHERE shop_id = \(bind: shop) AND customer_id = \(bind: customer) ORDER BY created_at_ms DESC, order_id DESC
            LIMIT \(literal: recent)
            """).all()
        return OrderSummary(stats: stats, recent: try await orders(db, shop: shop, rows: rows))
    }

    // MARK: Order life (R-ORD-2..5, R-PTS-1)

    /// Load → decide → persist: the order and what its rules look at, loaded in the
    /// write transaction; `OrderLifecycle` decides; the change, the stock it gives
    /// back, the change-log entry and loyalty-svc's event are written together.
    func apply(shop: String, id: String, _ command: OrderLifecycle.Command, nowMs: Int64) async throws -> Order {
        return try await write { db in
            if case .ship(let handoff) = command { _ = try await Self.warehouse(db, shop: shop, id: handoff.warehouseId) }
            guard let row = try await db.raw("SELECT * FROM orders WHERE shop_id = \(bind: shop) AND order_id = \(bind: id)").first() else {
                throw OrderError.noOrder(id)
            }
            let order = try await Self.orders(db, shop: shop, rows: [row]).first!
            let state = OrderLifecycle.State(
                status: order.status, paidAtMs: try row.int64("paid_at_ms"),
                shipment: order.shipment.map { OrderLifecycle.Handoff(carrier: $0.carrier, trackingCode: $0.trackingCode) },
                redeemedPoints: order.redeemedPoints,
                lines: order.items.map { OrderLifecycle.StockLine(variantId: $0.variantId, quantity: Int64($0.quantity)) },
                usedVoucher: !order.voucherCode.isEmpty
            )
            let change: OrderLifecycle.Change
            switch OrderLifecycle.decide(state, command, nowMs: nowMs) {
            case .success(let decided): change = decided
            case .failure(let refusal): throw OrderError.lifecycle(orderId: id, refusal)
            }
            if change.isEmpty { return order }
            try await Self.write(change, db, shop: shop, id: id)
            try await Self.changed(db, shop: shop, [.orders], customers: [order.customerId], nowMs: nowMs)
            let changed = try await Self.order(db, shop: shop, id: id)
            if let event = change.event {
                try await Self.recordEvent(db, shop: shop, order: changed, event, atMs: nowMs)
            }
            return changed
        }
    }

    /// The columns a lifecycle change sets, and the stock it gives back.
    static func write(_ change: OrderLifecycle.Change, _ db: any SQLDatabase, shop: String, id: String) async throws {
        var columns: [(String, any Encodable & Sendable)] = []
        if let status = change.status { columns.append(("status", Int64(status.rawValue))) }
        if let at = change.paidAtMs { columns.append(("paid_at_ms", at)) }
        if let at = change.completedAtMs { columns.append(("completed_at_ms", at)) }
        if let handoff = change.shipment {
            columns += [
                ("carrier", handoff.carrier), ("tracking_code", handoff.trackingCode), ("tracking_url", handoff.trackingUrl),
                ("shipment_warehouse_id", handoff.warehouseId), ("shipped_at_ms", change.shippedAtMs ?? 0),
            ]
        }
        if let cancel = change.cancellation {
            columns += [("cancelled_by_staff_id", cancel.staffId), ("cancel_reason", cancel.reason), ("cancelled_at_ms", cancel.atMs)]
        }
        if !columns.isEmpty {
            var sql: SQLQueryString = "UPDATE orders SET "
            for (index, (column, value)) in columns.enumerated() {
                if index > 0 { sql += ", " }
                sql += "\(ident: column) = \(bind: value)"
            }
            sql += " WHERE shop_id = \(bind: shop) AND order_id = \(bind: id)"
            try await db.raw(sql).run()
        }
        for line in change.restock {
            try await db.raw("""
                UPDATE variants SET stock = stock + \(bind: line.quantity) WHERE shop_id = \(bind: shop) AND variant_id = \(bind: line.variantId)
                """).run()
        }
    }

    /// R-PANEL-4: the customers' carts or orders changed, for the change log.
    static func changed(_ db: any SQLDatabase, shop: String, _ kinds: [Change.Kind], customers: some Collection<String>, nowMs: Int64) async throws {
        let entries = Set(customers).sorted().flatMap { customer in kinds.map { ChangeLog.Entry(shopId: shop, kind: $0, customerId: customer) } }
        try await ChangeLog.record(db, entries, nowMs: nowMs)
    }

    /// The event loyalty-svc will receive through the outbox; its id is stable per
    /// order and kind, so an event is written once however often the change is retried.
    static func recordEvent(_ db: any SQLDatabase, shop: String, order: Order, _ lifecycleEvent: OrderLifecycle.Event, atMs: Int64) async throws {
        // The wire's kind; order-svc records no refunds (they are the back office's).
        let (name, kind): (String, RecordOrderEventRequest.Kind) = switch lifecycleEvent {
        case .paid: ("paid", .paid)
        case .cancelled: ("cancelled", .cancelled)
        }
        let a = order.shipping?.address ?? Address()
        let event = RecordOrderEventRequest(
            shopId: shop, eventId: "\(order.orderId):\(name)", orderId: order.orderId, customerId: order.customerId, kind: kind,
            amountVnd: order.totalVnd - order.shippingFeeVnd, channel: order.channel, district: a.district, province: a.province,
            usedOffer: order.tierDiscountVnd > 0 || order.pointsDiscountVnd > 0 || order.promotionDiscountVnd > 0 || order.voucherDiscountVnd > 0,
            atMs: atMs, phone: order.shipping?.phone ?? ""
        )
        try await Outbox.enqueue(db, [try OrderEvents.outboxEvent(event), try OrderEvents.messagingEvent(event)], nowMs: atMs)
    }

    /// The order's events not yet delivered to loyalty-svc, oldest first.
    public func pendingEvents(shop: String, order: String) async throws -> [RecordOrderEventRequest] {
        try await db.read { db in
            try await Outbox.pending(db, shop: shop, subscriber: OrderEvents.subscriber).compactMap { delivery in
                let event = try OrderEvents.decode(delivery.payload)
                return event.orderId == order ? event : nil
            }
        }
    }

    /// Paid (online or by transfer); a paid order earns points (R-PTS-1). Paying twice changes nothing.
    public func markPaid(shop: String, id: String, nowMs: Int64) async throws -> Order {
        try await apply(shop: shop, id: id, .markPaid, nowMs: nowMs)
    }

    /// Delivered: a COD order is paid now.
    public func complete(shop: String, id: String, nowMs: Int64) async throws -> Order {
        try await apply(shop: shop, id: id, .complete, nowMs: nowMs)
    }

    /// R-ORD-2, R-ORD-4: hands the order to a carrier from one of the shop's warehouses.
    public func ship(shop: String, id: String, carrier: Carrier, warehouseId: String, trackingCode: String, nowMs: Int64) async throws -> Order {
        let handoff = OrderLifecycle.Handoff(
            carrier: carrier.rawValue, trackingCode: trackingCode, trackingUrl: carrier.trackingURL(code: trackingCode).url, warehouseId: warehouseId
        )
        return try await apply(shop: shop, id: id, .ship(handoff), nowMs: nowMs)
    }

    /// R-ORD-3: only before shipment; the stock comes back, and loyalty-svc hears of it
    /// when the order was paid or redeemed points.
    public func cancel(shop: String, id: String, staffId: String, reason: String, nowMs: Int64) async throws -> Order {
        try await apply(shop: shop, id: id, .cancel(staffId: staffId, reason: reason), nowMs: nowMs)
    }

    // MARK: Shipping quotes (R-SHIP-1)

    /// Prices a parcel with every carrier and keeps each quote for an hour, usable by one order.
    public func estimate(
        shop: String, warehouseId: String, to: Address, weightG: Int, codVnd: Int64, rates: ShippingRateTable, nowMs: Int64
    ) async throws -> [ShippingQuote] {
        return try await write { db in
            let warehouse = try await Self.warehouse(db, shop: shop, id: warehouseId)
            let estimates = try rates.quotes(from: warehouse.address ?? Address(), to: to, weightG: weightG, codVnd: codVnd)
            var quotes: [ShippingQuote] = []
            for estimate in estimates {
                let quote = ShippingQuote(
                    quoteId: SortableID.make("quo_", nowMs: nowMs), carrier: estimate.carrier, service: estimate.service, feeVnd: estimate.feeVnd,
                    etaDays: Int32(estimate.etaDays)
                )
                try await db.raw("""
                    INSERT INTO shipping_quotes (shop_id, quote_id, warehouse_id, carrier, service, fee_vnd, eta_days, province, district, weight_g, cod_vnd,
                        created_at_ms, expires_at_ms)
                    VALUES (\(bind: shop), \(bind: quote.quoteId), \(bind: warehouseId), \(bind: quote.carrier), \(bind: quote.service), \(bind: quote.feeVnd),
                        \(bind: Int64(quote.etaDays)), \(bind: to.province), \(bind: to.district), \(bind: Int64(weightG)), \(bind: codVnd), \(bind: nowMs),
                        \(bind: nowMs + 3_600_000))
                    """).run()
                quotes.append(quote)
            }
            return quotes
        }
    }

    // MARK: Staff sales (R-REP-2)

    /// Orders staff created in [from, to), not cancelled: count, products sold, revenue, distinct customers.
    public func staffSales(shop: String, pageId: String = "", fromMs: Int64, toMs: Int64) async throws -> [StaffSalesStats] {
        let page: SQLQueryString = pageId.isEmpty ? "" : " AND o.page_id = \(bind: pageId)"
        return try await db.read { db in
            var out: [StaffSalesStats] = []
            for row in try await db.raw("""
                SELECT o.created_by_staff_id AS staff, COUNT(*) AS orders, COALESCE(SUM(o.total_vnd), 0) AS revenue,
                       COUNT(DISTINCT o.customer_id) AS customers,
                       COALESCE(SUM((SELECT SUM(i.quantity) FROM order_items i WHERE i.shop_id = o.shop_id AND i.order_id = o.order_id)), 0) AS products
                FROM orders o
                WHERE o.shop_id = \(bind: shop) AND o.created_at_ms >= \(bind: fromMs) AND o.created_at_ms < \(bind: toMs)
                  AND o.created_by_staff_id <> '' AND o.status <> \(bind: Int64(Order.Status.cancelled.rawValue))
                """ + page + """
                 GROUP BY o.created_by_staff_id ORDER BY revenue DESC, staff
                """).all() {
                out.append(StaffSalesStats(
                    staffId: try row.string("staff"), orders: Int32(try row.int64("orders")), products: Int32(try row.int64("products")),
                    revenueVnd: try row.int64("revenue"), customers: Int32(try row.int64("customers"))
                ))
            }
            return out
        }
    }
}
