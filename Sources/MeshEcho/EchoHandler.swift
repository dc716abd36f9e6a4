import ChatMeshAPI
import MeshRPC
import NIOCore

/// chatmesh.testing.v1.EchoService: answers what it is asked, fails with the
/// status it is asked for, waits when asked to, and relays to a downstream
/// echo server to show token and deadline propagation.
public struct EchoHandler: EchoService.Handler {
    let downstream: EchoService.Client?

    public init(downstream: EchoService.Client? = nil) {
        self.downstream = downstream
    }

    public func echo(_ request: EchoRequest, context: ServerContext) async throws -> EchoResponse {
        if request.delayMs > 0 {
            try await Task.sleep(for: .milliseconds(request.delayMs))
        }
        if request.failWithCode != 0 {
            throw RPCError(RPCError.Code(wireValue: Int(request.failWithCode)), request.failWithMessage)
        }
        var remaining: Int64 = 0
        if let deadline = context.deadline {
            remaining = max(1, (deadline - .now()).nanoseconds / 1_000_000)
        }
        return EchoResponse(
            text: request.text,
            payload: request.responseBytes > 0 ? [UInt8](repeating: UInt8(ascii: "a"), count: Int(request.responseBytes)) : request.payload,
            words: request.words,
            labels: request.labels,
            callerShopId: context.principal?.shopId ?? "",
            callerStaffId: context.principal?.staffId ?? "",
            deadlineRemainingMs: remaining
        )
    }

    public func relay(_ request: EchoRequest, context: ServerContext) async throws -> EchoResponse {
        guard let downstream else {
            throw RPCError.failedPrecondition("this echo server has no downstream to relay to")
        }
        // No options: the deadline and the token of this call travel by themselves.
        return try await downstream.echo(request)
    }
}
