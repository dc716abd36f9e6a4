import NIOCore

/// Calls a router's routes directly, in this process: the same framing,
/// authentication, shop scoping, decoding and encoding as over HTTP/2, without
/// a network. For testing service libraries and for wiring services that share
/// a process; the wire itself is MeshHTTP2's.
public struct InProcessChannel: RPCChannel {
    public let router: RPCRouter
    public let maxMessageBytes: Int

    public init(router: RPCRouter, maxMessageBytes: Int = GRPCFraming.defaultMaxMessageBytes) {
        self.router = router
        self.maxMessageBytes = maxMessageBytes
    }

    public func unary(_ request: ClientRequest) async throws(RPCError) -> ByteBuffer {
        guard let route = router.route(path: request.method.path) else {
            throw .unimplemented("unknown method \(request.method.path)")
        }
        let authorization = request.metadata["authorization"]
        let principal = try router.authenticate(route, authorization: authorization)
        var metadata = request.metadata
        metadata.remove("authorization")
        let message = try GRPCFraming.unaryMessage(request.body, maxMessageBytes: maxMessageBytes, side: .request)
        let context = ServerContext(
            method: route.method, metadata: metadata, deadline: request.deadline,
            principal: principal, authorization: authorization, peer: "in-process"
        )
        let response: ByteBuffer
        do {
            response = try await Self.run(route, message, context, deadline: request.deadline)
        } catch let error as RPCError {
            throw error
        } catch is CancellationError {
            throw .cancelled("call cancelled")
        } catch {
            throw .internal("internal error: \(error)")
        }
        return try GRPCFraming.unaryMessage(response, maxMessageBytes: maxMessageBytes, side: .response)
    }

    /// Runs the route, answering DEADLINE_EXCEEDED (and cancelling it) when the deadline passes first.
    private static func run(_ route: RPCRoute, _ message: ByteBuffer, _ context: ServerContext, deadline: NIODeadline?) async throws -> ByteBuffer {
        guard let deadline else {
            return try await route.run(message, context)
        }
        return try await withThrowingTaskGroup(of: ByteBuffer.self) { group in
            group.addTask { try await route.run(message, context) }
            group.addTask {
                let wait = deadline - .now()
                if wait > .zero {
                    try await Task.sleep(for: .nanoseconds(wait.nanoseconds))
                }
                throw RPCError.deadlineExceeded("deadline exceeded while serving \(route.method.path)")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }
}
