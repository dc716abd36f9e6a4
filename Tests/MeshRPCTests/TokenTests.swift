import MeshRPC
import Synchronization
import Testing

@Suite struct TokenTests {
    let signer = TokenSigner(key: "test-key")

    @Test func mintedTokensVerify() throws {
        let token = signer.mint(shopId: "shop-1", staffId: "lan", role: .agent, validFor: 60)
        let principal = try TokenVerifier(key: "test-key").verify(authorization: "Bearer " + token)
        #expect(principal.shopId == "shop-1")
        #expect(principal.staffId == "lan")
        #expect(principal.role == .agent)
    }

    @Test func refusesWhatDoesNotVerify() {
        let verifier = TokenVerifier(key: "test-key")
        let good = signer.mint(shopId: "shop-1", staffId: "lan", role: .agent)
        let cases: [String?] = [
            nil, "", "Basic abc", "Bearer ", "Bearer not-a-token",
            "Bearer " + TokenSigner(key: "other-key").mint(shopId: "shop-1", staffId: "lan", role: .agent),
            "Bearer " + String(good.dropLast(2)) + "xx",
            "Bearer " + good.replacingOccurrences(of: "cm1.", with: "cm1.e"),
        ]
        for auth in cases {
            do {
                _ = try verifier.verify(authorization: auth)
                Issue.record("accepted \(auth ?? "nil")")
            } catch {
                #expect(error.code == .unauthenticated)
            }
        }
    }

    @Test func expiryIsCheckedOnEveryUseEvenWhenCached() throws {
        let now = TestClock(1_000_000)
        let verifier = TokenVerifier(key: "test-key", clock: { now.value })
        let token = signer.mint(Principal(shopId: "s", staffId: "a", role: .admin, expiresAtMs: 1_000_500))
        _ = try verifier.verify(authorization: "Bearer " + token)
        now.value = 1_000_600
        #expect(throws: RPCError.self) { try verifier.verify(authorization: "Bearer " + token) }
    }

    @Test func shopScope() {
        let agent = Principal(shopId: "s1", staffId: "a", role: .agent, expiresAtMs: .max)
        #expect(agent.mayAct(forShop: "s1"))
        #expect(!agent.mayAct(forShop: "s2"))
        let wildcardAgent = Principal(shopId: "*", staffId: "a", role: .agent, expiresAtMs: .max)
        #expect(!wildcardAgent.mayAct(forShop: "s2"))
        let service = Principal(shopId: "*", staffId: "", role: .service, expiresAtMs: .max)
        #expect(service.mayAct(forShop: "s2"))
    }
}

/// A settable clock for the verifier.
final class TestClock: Sendable {
    private let ms: Atomic<Int64>
    init(_ ms: Int64) { self.ms = Atomic(ms) }
    var value: Int64 {
        get { ms.load(ordering: .relaxed) }
        set { ms.store(newValue, ordering: .relaxed) }
    }
}
