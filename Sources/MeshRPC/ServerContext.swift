import NIOCore

/// What a handler knows about the call it serves. Immutable, and a class so
/// that passing it along (into the task-local, to the handler) costs one
/// reference count rather than one per string it holds.
public final class ServerContext: Sendable {
    public let method: MethodDescriptor
    /// Custom metadata the client sent (not pseudo headers, not gRPC's own).
    public let metadata: Metadata
    /// From `grpc-timeout`; propagated to every call the handler makes downstream.
    public let deadline: NIODeadline?
    /// The verified token, or nil for methods that need none (health checks).
    public let principal: Principal?
    /// The raw `authorization` value, forwarded to downstream calls.
    public let authorization: String?
    public let peer: String

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
