import ChatMeshAPI

/// R-ORD-2..5 and R-PTS-1: what each step of an order's life does to it, decided in
/// plain Swift on the order as loaded. The store loads the `State`, asks `decide`
/// and writes the `Change` it returns in the same transaction; nothing here reads
/// or writes a database, so every transition is tested on its own.
public enum OrderLifecycle {
    /// What the rules look at.
    public struct State: Sendable, Hashable {
        public var status: Order.Status
        /// When it was paid (0: not yet). A COD order is paid when it is completed.
        public var paidAtMs: Int64
        /// The carrier's hand-off, once shipped.
        public var shipment: Handoff?
        /// Points spent on it at checkout (R-PTS-3): loyalty-svc must hear of a cancel.
        public var redeemedPoints: Int64
        /// What its stock lines took, to give back on a cancel.
        public var lines: [StockLine]
        /// It used a voucher (R-ORD-7): loyalty-svc must hear of a cancel to give it back.
        public var usedVoucher: Bool = false
    }

    /// A variant and quantity taken from stock.
    public struct StockLine: Sendable, Hashable {
        public var variantId: String
        public var quantity: Int64
    }

    /// An order given to a carrier (R-ORD-2, R-ORD-4).
    public struct Handoff: Sendable, Hashable {
        public var carrier: String
        public var trackingCode: String
        public var trackingUrl = ""
        public var warehouseId = ""
    }

    /// The steps of an order's life.
    public enum Command: Sendable, Hashable {
        /// Paid online or by transfer (R-ORD-5).
        case markPaid
        /// Delivered (R-ORD-2).
        case complete
        /// Handed to a carrier (R-ORD-2, R-ORD-4).
        case ship(Handoff)
        /// Called off before shipment (R-ORD-3).
        case cancel(staffId: String, reason: String)
    }

    /// What loyalty-svc is told through the outbox (R-PTS-1, R-PTS-3).
    public enum Event: Sendable, Hashable {
        /// Earns points.
        case paid
        /// Takes back points earned and gives back points redeemed.
        case cancelled
    }

    /// What a step changes; an empty change means the step had already happened
    /// (every step is idempotent) and nothing is written.
    public struct Change: Sendable, Hashable {
        public var status: Order.Status?
        public var paidAtMs: Int64?
        public var completedAtMs: Int64?
        public var shipment: Handoff?
        public var shippedAtMs: Int64?
        public var cancellation: Cancellation?
        /// Stock to give back to the catalog.
        public var restock: [StockLine] = []
        public var event: Event?

        /// Who cancelled, why and when (R-ORD-3).
        public struct Cancellation: Sendable, Hashable {
            public var staffId: String
            public var reason: String
            public var atMs: Int64
        }

        public static let none = Change()
        public var isEmpty: Bool { self == .none }
    }

    /// Why a step is refused.
    public enum Refusal: Error, Sendable, Hashable {
        /// Cancelled or refunded: no step applies any more.
        case cancelled
        /// Completing needs the carrier to have it first.
        case notShipped
        case alreadyShipped(Handoff)
        case notShippable(Order.Status)
        /// Shipped orders are cancelled in the back office (R-ORD-3).
        case handedToCarrier(Handoff)
        case notCancellable(Order.Status)
    }

    /// What `command` does to `order` at `nowMs`.
    public static func decide(_ order: State, _ command: Command, nowMs: Int64) -> Result<Change, Refusal> {
        var change = Change()
        switch command {
        case .markPaid:
            if order.status == .cancelled || order.status == .refunded { return .failure(.cancelled) }
            if order.paidAtMs > 0 { return .success(.none) }
            change.paidAtMs = nowMs
            // A shipped COD order paid by transfer stays shipped.
            if order.status == .pending { change.status = .paid }
            change.event = .paid
        case .complete:
            switch order.status {
            case .completed: return .success(.none)
            case .shipped: break
            case .cancelled, .refunded: return .failure(.cancelled)
            default: return .failure(.notShipped)
            }
            change.status = .completed
            change.completedAtMs = nowMs
            // COD: the carrier collected the money on delivery.
            if order.paidAtMs == 0 {
                change.paidAtMs = nowMs
                change.event = .paid
            }
        case .ship(let handoff):
            if let shipment = order.shipment { return .failure(.alreadyShipped(shipment)) }
            guard order.status == .pending || order.status == .paid else { return .failure(.notShippable(order.status)) }
            change.status = .shipped
            change.shipment = handoff
            change.shippedAtMs = nowMs
        case .cancel(let staffId, let reason):
            if order.status == .cancelled { return .success(.none) }
            if let shipment = order.shipment { return .failure(.handedToCarrier(shipment)) }
            guard order.status == .pending || order.status == .paid else { return .failure(.notCancellable(order.status)) }
            change.status = .cancelled
            change.cancellation = Change.Cancellation(staffId: staffId, reason: reason, atMs: nowMs)
            change.restock = order.lines
            // Loyalty-svc only has something to undo when points were earned or spent, or a voucher used.
            if order.paidAtMs > 0 || order.redeemedPoints > 0 || order.usedVoucher { change.event = .cancelled }
        }
        return .success(change)
    }
}
