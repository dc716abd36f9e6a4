import NIOCore

/// How a call is made: deadline, credentials, metadata.
public struct CallOptions: Sendable {
    /// Relative time limit; combined with `deadline` and the deadline of the call being served, whichever is soonest.
    public var timeout: TimeAmount?
    public var deadline: NIODeadline?
    /// The `authorization` value, e.g. "Bearer cm1.…". When nil, the token of
    /// the call being served (if any) is forwarded.
    public var authorization: String?
    public var metadata: Metadata
    /// The call may be retried even after it reached the server (the caller
    /// made it idempotent, e.g. with an idempotency key). Calls that never left
    /// this process are always retried once on another connection.
    public var idempotent: Bool
    /// Compresses the request messages (gzip or deflate; nil or identity: not compressed).
    public var compression: MessageEncoding?

    public init(timeout: TimeAmount? = nil, deadline: NIODeadline? = nil, authorization: String? = nil, metadata: Metadata = Metadata(), idempotent: Bool = false, compression: MessageEncoding? = nil) {
        self.timeout = timeout
        self.deadline = deadline
        self.authorization = authorization
        self.metadata = metadata
        self.idempotent = idempotent
        self.compression = compression
    }

    /// Options that authenticate with a ChatMesh token (`authorization: Bearer …`).
    public static func bearer(_ token: String, timeout: TimeAmount? = nil) -> CallOptions {
        CallOptions(timeout: timeout, authorization: "Bearer " + token)
    }
}

/// A request ready for a transport.
public struct ClientRequest: Sendable {
    public var method: MethodDescriptor
    /// The message behind its gRPC length prefix.
    public var body: ByteBuffer
    /// Custom metadata plus `authorization`.
    public var metadata: Metadata
    public var deadline: NIODeadline?
    public var idempotent: Bool
    public var compression: MessageEncoding?

    public init(method: MethodDescriptor, body: ByteBuffer, metadata: Metadata, deadline: NIODeadline?, idempotent: Bool, compression: MessageEncoding? = nil) {
        self.method = method
        self.body = body
        self.metadata = metadata
        self.deadline = deadline
        self.idempotent = idempotent
        self.compression = compression
    }
}

/// Something that carries unary calls to a service (MeshHTTP2's client, or an
/// in-process channel in tests). Answers the response message (unframed), or
/// the call's status as an `RPCError`.
public protocol RPCChannel: Sendable {
    func unary(_ request: ClientRequest) async throws(RPCError) -> ByteBuffer
    /// Starts a streaming call (any kind: the wire is the same). The caller must
    /// read `responses` to their end or `cancel`.
    func openStream(_ head: ClientStreamHead) async throws(RPCError) -> RPCClientStream
}

extension RPCChannel {
    public func openStream(_ head: ClientStreamHead) async throws(RPCError) -> RPCClientStream {
        throw .unimplemented("this channel carries no streaming calls (\(head.method.path))")
    }

    /// The deadline (own, or the served call's when sooner) and the metadata with the
    /// credentials (own, or forwarded from the call being served).
    static func head(_ method: MethodDescriptor, _ options: CallOptions) throws(RPCError) -> ClientStreamHead {
        let served = ServerContext.current
        var deadline = options.deadline
        if let timeout = options.timeout {
            let d = NIODeadline.now() + timeout
            deadline = deadline.map { min($0, d) } ?? d
        }
        if let inherited = served?.deadline {
            deadline = deadline.map { min($0, inherited) } ?? inherited
        }
        if let deadline, deadline <= .now() {
            throw .deadlineExceeded("deadline passed before \(method.path) was sent")
        }
        var metadata = options.metadata
        if metadata["authorization"] == nil, let auth = options.authorization ?? served?.authorization {
            metadata.add("authorization", auth)
        }
        return ClientStreamHead(method: method, metadata: metadata, deadline: deadline, compression: options.compression)
    }

    /// Encodes, applies deadline and credentials (own or forwarded from the
    /// call being served), sends, and decodes.
    public func unary<Request: RPCMessage, Response: RPCMessage>(
        _ method: MethodDescriptor,
        _ request: Request,
        options: CallOptions
    ) async throws(RPCError) -> Response {
        let head = try Self.head(method, options)
        let metadata = head.metadata
        let deadline = head.deadline
        let body: ByteBuffer
        do {
            body = try GRPCFraming.frame(request)
        } catch {
            throw RPCError(error, failedTo: "encode \(Request.protoName)")
        }
        let response = try await unary(ClientRequest(method: method, body: body, metadata: metadata, deadline: deadline, idempotent: options.idempotent, compression: options.compression))
        do {
            return try Response(protobuf: response)
        } catch {
            // A server that sends what we cannot decode faithfully is broken: INTERNAL.
            throw .internal("could not decode \(Response.protoName) from \(method.path): \(error)")
        }
    }
}

extension RPCChannel {
    /// Runs `body` with the call and cancels the call if the body leaves it unfinished
    /// (returns before the responses ended, or throws).
    public func streaming<Request: RPCMessage, Response: RPCMessage, Result: Sendable>(
        _ method: MethodDescriptor,
        kind: RPCRoute.Kind = .bidirectionalStreaming,
        options: CallOptions,
        _ body: (RPCStreamingCall<Request, Response>) async throws -> Result
    ) async throws -> Result {
        var head = try Self.head(method, options)
        head.kind = kind
        let stream = try await openStream(head)
        let call = RPCStreamingCall<Request, Response>(raw: stream)
        do {
            let result = try await body(call)
            stream.cancel()
            return result
        } catch {
            stream.cancel()
            throw error
        }
    }

    /// A server-streaming call: one request, then `body` reads the responses.
    public func serverStreaming<Request: RPCMessage, Response: RPCMessage, Result: Sendable>(
        _ method: MethodDescriptor,
        _ request: Request,
        options: CallOptions,
        _ body: (RPCMessageStream<Response>) async throws -> Result
    ) async throws -> Result {
        try await streaming(method, kind: .serverStreaming, options: options) { (call: RPCStreamingCall<Request, Response>) in
            try await call.send(request)
            call.finishSending()
            return try await body(call.responses)
        }
    }

    /// A client-streaming call: `body` writes the requests; the one response is returned.
    public func clientStreaming<Request: RPCMessage, Response: RPCMessage>(
        _ method: MethodDescriptor,
        options: CallOptions,
        _ body: (RPCWriter<Request>) async throws -> Void
    ) async throws -> Response {
        try await streaming(method, kind: .clientStreaming, options: options) { (call: RPCStreamingCall<Request, Response>) in
            try await body(call.requests)
            call.finishSending()
            return try await Self.single(call.responses, method)
        }
    }

    /// A bidirectional call: `body` writes and reads as it likes (and should `finishSending`).
    public func bidirectional<Request: RPCMessage, Response: RPCMessage, Result: Sendable>(
        _ method: MethodDescriptor,
        options: CallOptions,
        _ body: (RPCStreamingCall<Request, Response>) async throws -> Result
    ) async throws -> Result {
        try await streaming(method, options: options, body)
    }

    static func single<Response: RPCMessage>(_ responses: RPCMessageStream<Response>, _ method: MethodDescriptor) async throws(RPCError) -> Response {
        guard let response = try await responses.next() else {
            throw .internal("\(method.path) ended without a response")
        }
        if try await responses.next() != nil {
            throw .internal("\(method.path) sent more than one response")
        }
        return response
    }
}
