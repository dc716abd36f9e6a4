import NIOCore

/// What a handler knows about the call it serves.
public struct ServerContext: Sendable {
    public var method: MethodDescriptor
    /// Custom metadata the client sent (not pseudo headers, not gRPC's own).
    public var metadata: Metadata
    /// From `grpc-timeout`; propagated to every call the handler makes downstream.
    public var deadline: NIODeadline?
    /// The verified token, or nil for methods that need none (health checks).
    public var principal: Principal?
    /// The raw `authorization` value, forwarded to downstream calls.
    public var authorization: String?
    public var peer: String

    public init(method: MethodDescriptor, metadata: Metadata = Metadata(), deadline: NIODeadline? = nil, principal: Principal? = nil, authorization: String? = nil, peer: String = "") {
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.principal = principal
        self.authorization = authorization
        self.peer = peer
    }

    /// The call being served by this task, if any: clients read it to carry the
    /// deadline and the caller's token downstream.
    @TaskLocal public static var current: ServerContext?

    /// The staff member of the token, or "" for a service token.
    public var staffId: String { principal?.staffId ?? "" }
}
