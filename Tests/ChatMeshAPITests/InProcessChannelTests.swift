import ChatMeshAPI
import MeshRPC
import NIOCore
import Testing

/// A handler that reports what it was given, and can call onward through a client.
struct Recorder: EchoService.Handler {
    let onward: EchoService.Client?

    func echo(_ request: EchoRequest, context: ServerContext) async throws -> EchoResponse {
        if request.delayMs > 0 {
            try await Task.sleep(for: .milliseconds(request.delayMs))
        }
        if request.failWithCode != 0 {
            throw RPCError(RPCError.Code(wireValue: Int(request.failWithCode)), request.failWithMessage)
        }
        return EchoResponse(
            text: request.text, labels: request.labels,
            callerShopId: context.principal?.shopId ?? "", callerStaffId: context.staffId,
            deadlineRemainingMs: context.deadline.map { ($0 - .now()).nanoseconds / 1_000_000 } ?? 0
        )
    }

    func relay(_ request: EchoRequest, context: ServerContext) async throws -> EchoResponse {
        guard let onward else { throw RPCError.failedPrecondition("no onward client") }
        return try await onward.echo(request)
    }
}

@Suite struct InProcessChannelTests {
    static let key = "in-process-key"

    func client(_ handler: Recorder = Recorder(onward: nil), shop: String = "shop-1") -> EchoService.Client {
        let router = RPCRouter(services: [handler], verifier: TokenVerifier(key: Self.key))
        let token = TokenSigner(key: Self.key).mint(shopId: shop, staffId: "lan", role: .agent)
        return EchoService.Client(channel: InProcessChannel(router: router), defaultOptions: .bearer(token, timeout: .seconds(5)))
    }

    @Test func callsGoThroughTheSameChecksAsOverTheWire() async throws {
        let client = client()
        let reply = try await client.echo(EchoRequest(shopId: "shop-1", text: "Chào", labels: ["k": "v"]))
        #expect(reply.text == "Chào" && reply.labels == ["k": "v"] && reply.callerStaffId == "lan")
        #expect(reply.deadlineRemainingMs > 0 && reply.deadlineRemainingMs <= 5000)
        await #expect(throws: RPCError.permissionDenied("shop_id 'shop-2' is not the shop of this token")) {
            try await client.echo(EchoRequest(shopId: "shop-2"))
        }
        await #expect(throws: RPCError(.notFound, "không có")) {
            try await client.echo(EchoRequest(shopId: "shop-1", failWithCode: 5, failWithMessage: "không có"))
        }
        await #expect(throws: RPCError.invalidArgument("field chatmesh.testing.v1.EchoRequest.text contains a NUL character")) {
            try await client.echo(EchoRequest(shopId: "shop-1", text: "a\u{0}"))
        }
    }

    @Test func unauthenticatedAndUnimplemented() async throws {
        let router = RPCRouter(services: [Recorder(onward: nil)], verifier: TokenVerifier(key: Self.key))
        let anonymous = EchoService.Client(channel: InProcessChannel(router: router))
        await #expect(throws: RPCError.self) { try await anonymous.echo(EchoRequest(shopId: "shop-1")) }
        do {
            _ = try await anonymous.echo(EchoRequest(shopId: "shop-1"))
        } catch {
            #expect(error.code == .unauthenticated)
        }
        let channel = InProcessChannel(router: router)
        do {
            let _: EchoResponse = try await channel.unary(MethodDescriptor(service: "x.Y", method: "Z"), EchoRequest(), options: CallOptions())
            Issue.record("an unknown method answered")
        } catch {
            #expect(error.code == .unimplemented)
        }
    }

    @Test func deadlineIsEnforcedAndInheritedDownstream() async throws {
        let client = client()
        do {
            _ = try await client.echo(EchoRequest(shopId: "shop-1", delayMs: 5000), options: .bearer(TokenSigner(key: Self.key).mint(shopId: "shop-1", staffId: "lan", role: .agent), timeout: .milliseconds(100)))
            Issue.record("a call past its deadline answered")
        } catch {
            #expect(error.code == .deadlineExceeded)
        }
        // Relay: the onward call carries the caller's token and deadline without being told.
        let front = self.client(Recorder(onward: self.client(shop: "other-shop").withoutDefaults()))
        let reply = try await front.relay(EchoRequest(shopId: "shop-1", text: "hop"), options: .bearer(TokenSigner(key: Self.key).mint(shopId: "shop-1", staffId: "hoa", role: .agent), timeout: .seconds(30)))
        #expect(reply.text == "hop")
        #expect(reply.callerStaffId == "hoa")
        // 30 s, not 1: under a busy loop per core the relay once took longer than a second to be served.
        #expect(reply.deadlineRemainingMs > 0 && reply.deadlineRemainingMs <= 30_000)
    }
}

extension EchoService.Client {
    /// The same channel with no token or timeout of its own: what it sends comes from the call being served.
    func withoutDefaults() -> EchoService.Client {
        EchoService.Client(channel: channel)
    }
}
