import CoreMetrics
import MeshRPC
import NIOCore
import Synchronization

/// The gRPC series of one side (server or client) of one process, named and labelled as
/// grpc-ecosystem's Prometheus interceptors (go-grpc-prometheus) name them, so that the
/// dashboards and alerts written for those work unchanged:
///
/// - `grpc_server_started_total` / `grpc_client_started_total` {grpc_type, grpc_service, grpc_method}
/// - `grpc_server_handled_total` / `grpc_client_handled_total` {…, grpc_code}
/// - `grpc_server_handling_seconds` / `grpc_client_handling_seconds` (histogram) {…}
/// - `grpc_server_msg_received_total`, `grpc_server_msg_sent_total` and the client's pair, for streaming calls
///
/// Labels are bounded: the methods are the ones served or called (a path the server does not
/// serve is counted as `unknown`/`unknown`, so a client making up paths cannot grow the set),
/// the codes are gRPC's seventeen.
public final class RPCMetrics: Sendable {
    public enum Side: String, Sendable {
        case server, client
    }

    public let side: Side
    private let factory: any MetricsFactory
    private let methods = Mutex<[String: MethodMetrics]>([:])

    /// `factory` is the process's (`MetricsSystem.factory`) unless a test gives its own.
    public init(side: Side, factory: any MetricsFactory = MetricsSystem.factory) {
        self.side = side
        self.factory = factory
    }

    /// The series of one method, made on its first call. Callers on a hot path keep the answer.
    public func method(_ descriptor: MethodDescriptor, kind: RPCRoute.Kind) -> MethodMetrics {
        if let known = methods.withLock({ $0[descriptor.path] }) { return known }
        let made = MethodMetrics(side: side, descriptor: descriptor, kind: kind, factory: factory)
        return methods.withLock { table in
            if let known = table[descriptor.path] { return known }
            table[descriptor.path] = made
            return made
        }
    }

    /// Where calls to paths the server does not serve are counted.
    public static let unknownMethod = MethodDescriptor(service: "unknown", method: "unknown")

    /// The buckets of `grpc_*_handling_seconds`: from 100 µs (a keyed read answers in tens of
    /// µs, a panel in hundreds) to 10 s, which Prometheus' default buckets (5 ms and up) would
    /// lump into one.
    public static let latencyBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
    ]
}

/// One method's series on one side. Counting a call costs a few atomic adds and one
/// uncontended lock (the histogram's).
public final class MethodMetrics: Sendable {
    private let started: Counter
    private let handledOK: Counter
    private let handledOther: Mutex<[Counter?]>
    private let latency: Timer
    /// Only for streaming calls: a unary call is one message each way by definition.
    public let messagesReceived: Counter?
    public let messagesSent: Counter?
    private let labels: [(String, String)]
    private let handledLabel: String
    private let factory: any MetricsFactory

    init(side: RPCMetrics.Side, descriptor: MethodDescriptor, kind: RPCRoute.Kind, factory: any MetricsFactory) {
        let prefix = "grpc_\(side.rawValue)"
        labels = [("grpc_type", Self.typeName(kind)), ("grpc_service", descriptor.service), ("grpc_method", descriptor.method)]
        handledLabel = "\(prefix)_handled_total"
        self.factory = factory
        started = Counter(label: "\(prefix)_started_total", dimensions: labels, factory: factory)
        handledOK = Counter(label: handledLabel, dimensions: labels + [("grpc_code", Self.codeName(.ok))], factory: factory)
        handledOther = Mutex(Array(repeating: nil, count: RPCError.Code.allCases.count))
        latency = Timer(label: "\(prefix)_handling_seconds", dimensions: labels, factory: factory)
        if kind == .unary {
            messagesReceived = nil
            messagesSent = nil
        } else {
            messagesReceived = Counter(label: "\(prefix)_msg_received_total", dimensions: labels, factory: factory)
            messagesSent = Counter(label: "\(prefix)_msg_sent_total", dimensions: labels, factory: factory)
        }
    }

    /// The call began (headers admitted on a server, sent by a client).
    public func start() {
        started.increment()
    }

    /// `count` calls began (a server connection's batch, `ConnectionTally`).
    public func start(_ count: Int) {
        started.increment(by: Int64(count))
    }

    /// `count` calls ended with `code`; their latencies are `observe`d one by one.
    public func handled(_ code: RPCError.Code, count: Int) {
        handledCounter(code).increment(by: Int64(count))
    }

    public func observe(nanoseconds: Int64) {
        latency.recordNanoseconds(nanoseconds)
    }

    /// The call ended with `code`; it began at `start` (a `NIODeadline.now()`).
    public func handled(_ code: RPCError.Code, since start: NIODeadline) {
        handledCounter(code).increment()
        latency.recordNanoseconds(Self.nanoseconds(since: start))
    }

    static func nanoseconds(since start: NIODeadline) -> Int64 {
        max(0, (NIODeadline.now() - start).nanoseconds)
    }

    private func handledCounter(_ code: RPCError.Code) -> Counter {
        if code == .ok { return handledOK }
        return handledOther.withLock { counters in
            if let counter = counters[code.rawValue] { return counter }
            let counter = Counter(label: handledLabel, dimensions: labels + [("grpc_code", Self.codeName(code))], factory: factory)
            counters[code.rawValue] = counter
            return counter
        }
    }

    /// go-grpc-prometheus' `grpc_type` values.
    static func typeName(_ kind: RPCRoute.Kind) -> String {
        switch kind {
        case .unary: "unary"
        case .clientStreaming: "client_stream"
        case .serverStreaming: "server_stream"
        case .bidirectionalStreaming: "bidi_stream"
        }
    }

    /// The code as go-grpc-prometheus labels it (Go's `codes.Code.String()`), e.g. "DeadlineExceeded".
    public static func codeName(_ code: RPCError.Code) -> String {
        switch code {
        case .ok: "OK"
        case .cancelled: "Canceled"
        case .unknown: "Unknown"
        case .invalidArgument: "InvalidArgument"
        case .deadlineExceeded: "DeadlineExceeded"
        case .notFound: "NotFound"
        case .alreadyExists: "AlreadyExists"
        case .permissionDenied: "PermissionDenied"
        case .resourceExhausted: "ResourceExhausted"
        case .failedPrecondition: "FailedPrecondition"
        case .aborted: "Aborted"
        case .outOfRange: "OutOfRange"
        case .unimplemented: "Unimplemented"
        case .internal: "Internal"
        case .unavailable: "Unavailable"
        case .dataLoss: "DataLoss"
        case .unauthenticated: "Unauthenticated"
        }
    }
}

/// The process's metrics switch: MeshProcess turns it on (CHATMESH_METRICS_LISTEN) before any
/// channel or server exists; off, nothing is counted and the hot paths skip the metrics.
public enum ProcessMetrics {
    private static let clientSide = Mutex<RPCMetrics?>(nil)

    /// The client series every channel of the process counts into, nil while metrics are off.
    public static var client: RPCMetrics? { clientSide.withLock { $0 } }

    /// Whether the process keeps metrics (what else to count is decided once, at startup).
    public static var isEnabled: Bool { client != nil }

    /// Turns the client series on with `factory` (the bootstrapped one).
    public static func enable(factory: any MetricsFactory = MetricsSystem.factory) {
        clientSide.withLock { $0 = RPCMetrics(side: .client, factory: factory) }
    }
}

extension MethodMetrics {
    /// A client's streaming call counted: its messages each way, and its end once (`observed`).
    public func counting(_ stream: RPCClientStream, since start: NIODeadline) -> RPCClientStream {
        let sent = messagesSent
        let received = messagesReceived
        return stream.observed(sent: { sent?.increment() }, received: { received?.increment() }) { code in
            self.handled(code, since: start)
        }
    }
}
