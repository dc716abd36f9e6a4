import CoreMetrics
import Synchronization

/// The metrics a gRPC server keeps: its calls' and its connections'.
public struct ServerMetrics: Sendable {
    public let rpc: RPCMetrics
    public let transport: TransportMetrics

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        rpc = RPCMetrics(side: .server, factory: factory)
        transport = TransportMetrics(factory: factory)
    }
}

/// What a gRPC server's HTTP/2 connections are doing, for `/metrics`: how many are open and how
/// many calls ride on them, the bytes they move, the GOAWAYs they exchange, and how often flow
/// control holds data back. One per server; every connection of the server counts into it.
public final class TransportMetrics: Sendable {
    /// Open connections and open streams: counted in atomics (an add is cheaper than a gauge's
    /// compare-and-swap on a Double, twice per call), written to their gauges per scrape (`collector`).
    public let connections = Atomic<Int>(0)
    public let streams = Atomic<Int>(0)
    private let connectionsGauge: Meter
    private let streamsGauge: Meter
    public let connectionsAccepted: Counter
    /// Closed as they arrived: past `maxConnections` or the peer's share of it.
    public let connectionsRefused: Counter
    /// Closed to make room for a new one, having not completed the handshake.
    public let connectionsEvicted: Counter
    public let receivedBytes: Counter
    public let sentBytes: Counter
    /// Made on first use: most of the 2 × 15 never happen.
    private let goaways = Mutex<[Int: Counter]>([:])
    private let factory: any MetricsFactory
    /// Request bytes held while a handler does not read (the window stops opening), and responses
    /// waiting because the client's window is shut.
    public let inboundStalls: Counter
    public let outboundStalls: Counter

    public enum Direction: String, Sendable, CaseIterable {
        case sent, received
    }

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        connectionsGauge = Meter(label: "chatmesh_http2_connections", dimensions: [], factory: factory)
        streamsGauge = Meter(label: "chatmesh_http2_streams", dimensions: [], factory: factory)
        connectionsAccepted = Counter(label: "chatmesh_http2_connections_accepted_total", dimensions: [], factory: factory)
        connectionsRefused = Counter(label: "chatmesh_http2_connections_refused_total", dimensions: [], factory: factory)
        connectionsEvicted = Counter(label: "chatmesh_http2_connections_evicted_total", dimensions: [], factory: factory)
        receivedBytes = Counter(label: "chatmesh_http2_received_bytes_total", dimensions: [], factory: factory)
        sentBytes = Counter(label: "chatmesh_http2_sent_bytes_total", dimensions: [], factory: factory)
        self.factory = factory
        inboundStalls = Counter(label: "chatmesh_http2_flow_control_stalls_total", dimensions: [("direction", "inbound")], factory: factory)
        outboundStalls = Counter(label: "chatmesh_http2_flow_control_stalls_total", dimensions: [("direction", "outbound")], factory: factory)
    }

    /// Writes the open connections and streams to their gauges.
    public func publish() {
        connectionsGauge.set(Double(connections.load(ordering: .relaxed)))
        streamsGauge.set(Double(streams.load(ordering: .relaxed)))
    }

    /// Run before each scrape.
    public var collector: MetricsCollector {
        MetricsCollector(name: "transport") { [self] in publish() }
    }

    /// A GOAWAY with HTTP/2 error code `code` (RFC 9113 §7); codes past the RFC's count as the last name.
    public func goaway(_ direction: Direction, code: UInt32) {
        let index = Int(min(code, UInt32(Self.goawayCodes.count - 1)))
        let key = direction == .sent ? index : 100 + index
        goaways.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(
                label: "chatmesh_http2_goaways_total", dimensions: [("direction", direction.rawValue), ("code", Self.goawayCodes[index])], factory: factory
            )
            counters[key] = counter
            return counter
        }.increment()
    }

    /// RFC 9113's error code names, in code order; the last stands for any unknown code.
    static let goawayCodes = [
        "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED",
        "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED", "UNKNOWN",
    ]
}
