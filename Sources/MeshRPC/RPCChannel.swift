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

    public init(timeout: TimeAmount? = nil, deadline: NIODeadline? = nil, authorization: String? = nil, metadata: Metadata = Metadata(), idempotent: Bool = false) {
        self.timeout = timeout
        self.deadline = deadline
        self.authorization = authorization
        self.metadata = metadata
        self.idempotent = idempotent
    }

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

    public init(method: MethodDescriptor, body: ByteBuffer, metadata: Metadata, deadline: NIODeadline?, idempotent: Bool) {
        self.method = method
        self.body = body
        self.metadata = metadata
        self.deadline = deadline
        self.idempotent = idempotent
    }
}

/// Something that carries unary calls to a service (MeshHTTP2's client, or an
/// in-process channel in tests). Answers the response message (unframed), or
/// the call's status as an `RPCError`.
public protocol RPCChannel: Sendable {
    func unary(_ request: ClientRequest) async throws(RPCError) -> ByteBuffer
}

extension RPCChannel {
    /// Encodes, applies deadline and credentials (own or forwarded from the
    /// call being served), sends, and decodes.
    public func unary<Request: RPCMessage, Response: RPCMessage>(
        _ method: MethodDescriptor,
        _ request: Request,
        options: CallOptions
    ) async throws(RPCError) -> Response {
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
        let body: ByteBuffer
        do {
            body = try GRPCFraming.frame(request)
        } catch {
            throw RPCError(error, failedTo: "encode \(Request.protoName)")
        }
        let response = try await unary(ClientRequest(method: method, body: body, metadata: metadata, deadline: deadline, idempotent: options.idempotent))
        do {
            return try Response(protobuf: response)
        } catch {
            // A server that sends what we cannot decode faithfully is broken: INTERNAL.
            throw .internal("could not decode \(Response.protoName) from \(method.path): \(error)")
        }
    }
}
