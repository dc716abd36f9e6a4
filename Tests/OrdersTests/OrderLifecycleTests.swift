import ChatMeshAPI
@testable import Orders
import Testing

/// R-ORD-2..5 and R-PTS-1 as a table: every command on an order in every state it can
/// be in, and what the rules decide, with no database.
@Suite struct OrderLifecycleTests {
    typealias L = OrderLifecycle

    static let now: Int64 = 1_000_000
    static let ghn = L.Handoff(carrier: "GHN", trackingCode: "GY123456", trackingUrl: "https://ghn.vn/t/GY123456", warehouseId: "wh1")
    static let lines = [L.StockLine(variantId: "v1", quantity: 2), L.StockLine(variantId: "v2", quantity: 1)]

    static func state(_ status: Order.Status, paidAt: Int64 = 0, shipped: Bool = false, redeemed: Int64 = 0, voucher: Bool = false) -> L.State {
        L.State(status: status, paidAtMs: paidAt, shipment: shipped ? ghn : nil, redeemedPoints: redeemed, lines: lines, usedVoucher: voucher)
    }

    /// The orders a shop has: by status, paid or not (COD), with points redeemed or not.
    static let states: [String: L.State] = [
        "pending COD": state(.pending),
        "pending, points redeemed": state(.pending, redeemed: 50),
        "pending, voucher used": state(.pending, voucher: true),
        "paid": state(.paid, paidAt: 500),
        "shipped COD": state(.shipped, shipped: true),
        "shipped, paid": state(.shipped, paidAt: 500, shipped: true),
        "completed": state(.completed, paidAt: 500, shipped: true),
        "cancelled": state(.cancelled),
        "refunded": state(.refunded, paidAt: 500),
    ]

    static let commands: [String: L.Command] = [
        "pay": .markPaid, "complete": .complete, "ship": .ship(ghn), "cancel": .cancel(staffId: "st1", reason: "khách đổi ý"),
    ]

    static func change(_ build: (inout L.Change) -> Void) -> Result<L.Change, L.Refusal> {
        var change = L.Change()
        build(&change)
        return .success(change)
    }

    static let paid = change { $0.paidAtMs = now; $0.status = .paid; $0.event = .paid }
    static let paidKeepingShipped = change { $0.paidAtMs = now; $0.event = .paid }
    static let shipped = change { $0.status = .shipped; $0.shipment = ghn; $0.shippedAtMs = now }
    static let completedAndPaid = change { $0.status = .completed; $0.completedAtMs = now; $0.paidAtMs = now; $0.event = .paid }
    static let completed = change { $0.status = .completed; $0.completedAtMs = now }
    static let cancelledSilently = change {
        $0.status = .cancelled; $0.cancellation = .init(staffId: "st1", reason: "khách đổi ý", atMs: now); $0.restock = lines
    }
    static let cancelledTellingLoyalty = change {
        $0.status = .cancelled; $0.cancellation = .init(staffId: "st1", reason: "khách đổi ý", atMs: now); $0.restock = lines; $0.event = .cancelled
    }
    static let nothing: Result<L.Change, L.Refusal> = .success(.none)

    /// (state, command) → decision, for all 36 pairs.
    static let table: [(String, String, Result<L.Change, L.Refusal>)] = [
        ("pending COD", "pay", paid),
        ("pending COD", "complete", .failure(.notShipped)),
        ("pending COD", "ship", shipped),
        // Neither paid nor redeemed: loyalty-svc has nothing to undo.
        ("pending COD", "cancel", cancelledSilently),

        ("pending, points redeemed", "pay", paid),
        ("pending, points redeemed", "complete", .failure(.notShipped)),
        ("pending, points redeemed", "ship", shipped),
        // The redeemed points go back (R-PTS-3).
        ("pending, points redeemed", "cancel", cancelledTellingLoyalty),

        ("pending, voucher used", "pay", paid),
        ("pending, voucher used", "complete", .failure(.notShipped)),
        ("pending, voucher used", "ship", shipped),
        // The voucher goes back (R-ORD-7).
        ("pending, voucher used", "cancel", cancelledTellingLoyalty),

        // Paying twice changes nothing and earns nothing twice.
        ("paid", "pay", nothing),
        ("paid", "complete", .failure(.notShipped)),
        ("paid", "ship", shipped),
        ("paid", "cancel", cancelledTellingLoyalty),

        // A COD parcel paid by transfer on the way stays shipped.
        ("shipped COD", "pay", paidKeepingShipped),
        // Delivered COD: the carrier collected the money, so it is paid now and earns points.
        ("shipped COD", "complete", completedAndPaid),
        ("shipped COD", "ship", .failure(.alreadyShipped(ghn))),
        ("shipped COD", "cancel", .failure(.handedToCarrier(ghn))),

        ("shipped, paid", "pay", nothing),
        ("shipped, paid", "complete", completed),
        ("shipped, paid", "ship", .failure(.alreadyShipped(ghn))),
        ("shipped, paid", "cancel", .failure(.handedToCarrier(ghn))),

        ("completed", "pay", nothing),
        ("completed", "complete", nothing),
        ("completed", "ship", .failure(.alreadyShipped(ghn))),
        ("completed", "cancel", .failure(.handedToCarrier(ghn))),

        ("cancelled", "pay", .failure(.cancelled)),
        ("cancelled", "complete", .failure(.cancelled)),
        ("cancelled", "ship", .failure(.notShippable(.cancelled))),
        // Cancelling twice changes nothing.
        ("cancelled", "cancel", nothing),

        ("refunded", "pay", .failure(.cancelled)),
        ("refunded", "complete", .failure(.cancelled)),
        ("refunded", "ship", .failure(.notShippable(.refunded))),
        ("refunded", "cancel", .failure(.notCancellable(.refunded))),
    ]

    @Test func theTableCoversEveryStateAndCommand() {
        let pairs = Set(Self.table.map { "\($0.0)|\($0.1)" })
        #expect(pairs.count == Self.table.count, "a pair is listed twice")
        for state in Self.states.keys {
            for command in Self.commands.keys {
                #expect(pairs.contains("\(state)|\(command)"), "\(command) on \(state) is not in the table")
            }
        }
    }

    @Test(arguments: Self.table.indices)
    func decides(_ index: Int) throws {
        let (stateName, commandName, expected) = Self.table[index]
        let state = try #require(Self.states[stateName])
        let command = try #require(Self.commands[commandName])
        #expect(L.decide(state, command, nowMs: Self.now) == expected, "\(commandName) on \(stateName)")
    }

    /// A step that happened leaves nothing to write when it is asked again: every
    /// successful change, applied, makes the same command a no-op or a refusal, never a second change.
    @Test(arguments: Self.table.indices)
    func aStepDoneIsNotDoneTwice(_ index: Int) throws {
        let (stateName, commandName, _) = Self.table[index]
        let state = try #require(Self.states[stateName])
        let command = try #require(Self.commands[commandName])
        guard case .success(let change) = L.decide(state, command, nowMs: Self.now), !change.isEmpty else { return }
        var after = state
        if let status = change.status { after.status = status }
        if let paidAt = change.paidAtMs { after.paidAtMs = paidAt }
        if let shipment = change.shipment { after.shipment = shipment }
        switch L.decide(after, command, nowMs: Self.now + 1) {
        case .success(let again): #expect(again.isEmpty, "\(commandName) on \(stateName) changed the order twice")
        case .failure(let refusal):
            // Shipping twice is refused, naming the carrier it went with.
            #expect(refusal == .alreadyShipped(Self.ghn), "\(commandName) on \(stateName): \(refusal)")
        }
    }
}
