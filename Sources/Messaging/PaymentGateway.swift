import ChatMeshAPI
import MeshRPC
import MeshStore

/// The payment gateway that tops the prepaid balance up (R-MSG-3: Napas,
/// ATM/Visa/Mastercard). `reference` is the merchant's order reference: a
/// gateway charges one reference once, so a retried charge is not paid twice.
public protocol PaymentGateway: Sendable {
    var name: String { get }
    func charge(shop: String, amountVnd: Int64, reference: String) async -> PaymentResult
}

/// A charge's answer.
public enum PaymentResult: Sendable, Hashable {
    case approved(transactionId: String)
    case declined(reason: String)
    case unavailable(reason: String)
}

/// Approves every charge and moves no money: the local demo mesh and tests.
public struct SandboxPaymentGateway: PaymentGateway {
    public var name: String { "sandbox" }
    public init() {}
    public func charge(shop: String, amountVnd: Int64, reference: String) async -> PaymentResult {
        .approved(transactionId: "sandbox-" + reference)
    }
}

/// R-MSG-3 automatic top-up: before a send, a balance that would fall below the
/// shop's threshold is topped up by the configured amount through the gateway.
/// One top-up at a time in this process, and each numbered by the shop's count
/// of automatic top-ups so far, so neither two sends at once nor a retry after
/// a crash charges the card twice for the same top-up.
public actor AutomaticTopUps {
    let store: MessagingStore
    let gateway: any PaymentGateway
    let now: @Sendable () -> Int64
    /// At most this many top-ups for one send (a threshold far above the top-up amount).
    let maxPerSend = 10

    public init(store: MessagingStore, gateway: any PaymentGateway, now: @escaping @Sendable () -> Int64 = { WallClock.nowMs() }) {
        self.store = store
        self.gateway = gateway
        self.now = now
    }

    /// Tops up until `needVnd` can be spent without leaving the balance under the threshold,
    /// or the gateway says no. Returns the balance after.
    @discardableResult
    public func ensure(shop: String, needVnd: Int64) async throws -> Balance {
        var balance = try await store.balance(shop: shop)
        var rounds = 0
        while let settings = balance.autoTopUp, settings.enabled, settings.amountVnd > 0, balance.balanceVnd - needVnd < settings.thresholdVnd,
              rounds < maxPerSend {
            rounds += 1
            let reference = "auto-\(shop)-\(try await store.automaticTopUpCount(shop: shop) + 1)"
            switch await gateway.charge(shop: shop, amountVnd: settings.amountVnd, reference: reference) {
            case .approved:
                balance = try await store.topUp(shop: shop, amountVnd: settings.amountVnd, paymentRef: reference, nowMs: now())
            case .declined, .unavailable:
                // The send goes on against what there is; if that cannot cover it, it is refused (R-MSG-3).
                return balance
            }
        }
        return balance
    }
}
