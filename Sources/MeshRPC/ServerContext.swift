import NIOCore
import Synchronization

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
    /// Set when the call is traced and was not sampled: the trace context it passes on to the calls
    /// it makes, unrecorded (MeshTracing decides and reads it).
    public let unsampledTrace: UnsampledTraceContext?

    /// What the handler adds to the response's headers and trailers. Inline, so a call that
    /// sets none costs no allocation. Sent for calls on the streaming path (streaming routes
    /// and `RPCRoute.unaryAsStream`); the unary fast path sends only an error's own metadata.
    private let response = Mutex(ResponseState())

    private struct ResponseState {
        var initial = Metadata()
        var trailing = Metadata()
        var compress = false
        var compressionRequested = false
        var lastRequestCompressed = false
    }

    public init(
        method: MethodDescriptor, metadata: Metadata = Metadata(), deadline: NIODeadline? = nil, principal: Principal? = nil, authorization: String? = nil,
        peer: String = "", unsampledTrace: UnsampledTraceContext? = nil
    ) {
        self.unsampledTrace = unsampledTrace
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

    /// Adds to the response headers (initial metadata). Sent with the first response
    /// message, or with the status when there is none; later additions are not sent.
    public func addInitialMetadata(_ name: String, _ value: String) {
        response.withLock { $0.initial.add(name, value) }
    }

    /// Adds to the trailers sent with the status (OK or not).
    public func addTrailingMetadata(_ name: String, _ value: String) {
        response.withLock { $0.trailing.add(name, value) }
    }

    public var responseInitialMetadata: Metadata { response.withLock { $0.initial } }
    public var responseTrailingMetadata: Metadata { response.withLock { $0.trailing } }

    /// Asks for the response messages written from now on to be compressed (or no longer), in an
    /// encoding the client accepts (its `grpc-accept-encoding`); without one they go uncompressed.
    /// The encoding is declared in the response headers, so a call that will compress any message
    /// must have asked once before its first write.
    public func setResponseCompression(_ on: Bool) {
        response.withLock {
            $0.compress = on
            $0.compressionRequested = $0.compressionRequested || on
        }
    }

    public var compressesResponses: Bool { response.withLock { $0.compress } }
    /// Whether compression was ever asked for: the headers then declare an encoding.
    public var responseCompressionRequested: Bool { response.withLock { $0.compressionRequested } }

    /// Whether the request message the handler last took arrived compressed.
    public var requestWasCompressed: Bool { response.withLock { $0.lastRequestCompressed } }

    /// The transport says so as the handler takes each request message.
    public func noteRequestCompressed(_ compressed: Bool) {
        response.withLock { $0.lastRequestCompressed = compressed }
    }

    /// The staff member of the token, or "" for a service token.
    public var staffId: String { principal?.staffId ?? "" }
}

/// A W3C trace context passed on without being recorded: the caller's `traceparent` as it came, or
/// (a call that began the trace) a seed its ids are made from when a call needs them — most make none.
public struct UnsampledTraceContext: Sendable {
    public let inherited: String?
    public let seed: UInt64

    public init(inherited: String) {
        self.inherited = inherited
        self.seed = 0
    }

    public init(seed: UInt64) {
        self.inherited = nil
        self.seed = seed
    }
}
