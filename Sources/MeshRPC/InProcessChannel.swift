import NIOCore
import Synchronization

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
        let (route, context) = try admit(request.method, request.metadata, deadline: request.deadline)
        let message = try GRPCFraming.unaryMessage(request.body, maxMessageBytes: maxMessageBytes, side: .request)
        if route.stream != nil {
            return try await unaryOverStream(route, message, context, deadline: request.deadline)
        }
        let response: ByteBuffer
        do {
            response = try await Self.run(route, message, context, deadline: request.deadline)
        } catch {
            throw RPCError(answering: error)
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

    /// A unary call to a route served on the streaming path.
    private func unaryOverStream(_ route: RPCRoute, _ message: ByteBuffer, _ context: ServerContext, deadline: NIODeadline?) async throws(RPCError) -> ByteBuffer {
        let call = start(route, context, deadline: deadline)
        try await call.requests.write(message)
        call.finishRequests()
        guard let response = try await call.responses.next() else {
            throw .internal("\(route.method.path) ended without a response")
        }
        if try await call.responses.next() != nil {
            throw .internal("\(route.method.path) sent more than one response")
        }
        return response
    }

    public func openStream(_ head: ClientStreamHead) async throws(RPCError) -> RPCClientStream {
        let (route, context) = try admit(head.method, head.metadata, deadline: head.deadline)
        return start(route, context, deadline: head.deadline)
    }

    /// The route and the context a call gets, as a server would give them: UNIMPLEMENTED for an
    /// unknown method, the token checked, `authorization` kept out of the metadata.
    private func admit(_ method: MethodDescriptor, _ sent: Metadata, deadline: NIODeadline?) throws(RPCError) -> (RPCRoute, ServerContext) {
        guard let route = router.route(path: method.path) else {
            throw .unimplemented("unknown method \(method.path)")
        }
        let authorization = sent["authorization"]
        let principal = try router.authenticate(route, authorization: authorization)
        var metadata = sent
        metadata.remove("authorization")
        let context = ServerContext(
            method: route.method, metadata: metadata, deadline: deadline,
            principal: principal, authorization: authorization, peer: "in-process"
        )
        return (route, context)
    }

    /// Runs the route in a task of its own, joined to the caller by two bounded queues.
    private func start(_ route: RPCRoute, _ context: ServerContext, deadline: NIODeadline?) -> RPCClientStream {
        let requests = RPCMessageQueue<ByteBuffer>(capacity: 16)
        let responses = RPCMessageQueue<ByteBuffer>(capacity: 16)
        let trailers = TrailersBox()
        let maxMessageBytes = self.maxMessageBytes
        let server = RPCServerStream(
            requests: RPCMessageStream { () throws(RPCError) in try await requests.next() },
            responses: RPCWriter { (message: ByteBuffer) throws(RPCError) in
                if message.readableBytes > maxMessageBytes {
                    throw .resourceExhausted("response message of \(message.readableBytes) bytes is over the limit of \(maxMessageBytes)")
                }
                try await responses.send(message)
            }
        )
        let task = Task {
            let outcome: Result<Void, RPCError>
            do {
                try await Self.serve(route, server, context, deadline: deadline)
                outcome = .success(())
            } catch {
                outcome = .failure(RPCError(answering: error))
            }
            requests.close(.cancelled("the call is over"))
            switch outcome {
            case .success:
                trailers.set(context.responseTrailingMetadata)
                responses.finish()
            case .failure(var error):
                var metadata = context.responseTrailingMetadata
                for (name, value) in error.metadata { metadata.add(name, value) }
                error.metadata = metadata
                trailers.set(metadata)
                responses.finish(.failure(error))
            }
        }
        return RPCClientStream(
            requests: RPCWriter { (message: ByteBuffer) throws(RPCError) in
                if message.readableBytes > maxMessageBytes {
                    throw .resourceExhausted("request message of \(message.readableBytes) bytes is over the limit of \(maxMessageBytes)")
                }
                do throws(RPCError) {
                    try await requests.send(message)
                } catch {
                    // A write after the call ended says how it ended (its status), not just that it did.
                    throw responses.endError ?? error
                }
            },
            finishRequests: { requests.finish() },
            responses: RPCMessageStream { () throws(RPCError) in try await responses.next() },
            initialMetadata: { context.responseInitialMetadata },
            trailingMetadata: { trailers.get() },
            cancel: {
                task.cancel()
                responses.close(.cancelled("call cancelled by the caller"))
            }
        )
    }

    private static func serve(_ route: RPCRoute, _ stream: RPCServerStream, _ context: ServerContext, deadline: NIODeadline?) async throws {
        let body: @Sendable () async throws -> Void = {
            if let run = route.stream {
                try await run(stream, context)
            } else {
                // A unary route: one message in, one out.
                guard let request = try await stream.requests.next() else {
                    throw RPCError.internal("no request message for \(route.method.path)")
                }
                let framed = try await route.run(request, context)
                try await stream.responses.write(framed.getSlice(at: framed.readerIndex + GRPCFraming.prefixLength, length: framed.readableBytes - GRPCFraming.prefixLength)!)
            }
        }
        guard let deadline else {
            return try await body()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await body() }
            group.addTask {
                let wait = deadline - .now()
                if wait > .zero {
                    try await Task.sleep(for: .nanoseconds(wait.nanoseconds))
                }
                throw RPCError.deadlineExceeded("deadline exceeded while serving \(route.method.path)")
            }
            defer { group.cancelAll() }
            try await group.next()!
        }
    }
}

/// The trailers of a call, set once by the task that served it.
final class TrailersBox: Sendable {
    private let value = Mutex(Metadata())
    func set(_ metadata: Metadata) { value.withLock { $0 = metadata } }
    func get() -> Metadata { value.withLock { $0 } }
}
