import CoreMetrics
import Logging
import MeshMetrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import Synchronization

/// swift-metrics on swift-prometheus for this process: every `Counter`, `Meter` and `Timer`
/// made after `bootstrap` lands in one registry that `MetricsEndpoint` serves.
public enum PrometheusMetrics {
    /// Call once, before anything makes a metric (MeshProcess does, when CHATMESH_METRICS_LISTEN is set).
    public static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(factory(registry))
        return registry
    }

    /// A factory on `registry` with the gRPC latency buckets (tests make their own registry).
    public static func factory(_ registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        for side in ["server", "client"] {
            factory.durationHistogramBuckets["grpc_\(side)_handling_seconds"] = RPCMetrics.latencyBuckets
        }
        factory.durationHistogramBuckets["chatmesh_store_seconds"] = RPCMetrics.latencyBuckets
        return factory
    }
}

/// `GET /metrics` over HTTP/1.1 in Prometheus' text format (version 0.0.4), on a listener of its
/// own (CHATMESH_METRICS_LISTEN), so that scraping never shares a port, a connection limit or a
/// protocol with the gRPC traffic. Collectors run before each scrape, each within `collectTimeout`.
public final class MetricsEndpoint: Sendable {
    public let host: String
    public let port: Int
    private let registry: PrometheusCollectorRegistry
    private let collectors: [MetricsCollector]
    private let logger: Logger
    private typealias Listener = NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
    private let listener = Mutex<Listener?>(nil)
    /// How long a scrape waits for a collector before it answers without it.
    private let collectTimeout: Duration

    public init(
        host: String, port: Int, registry: PrometheusCollectorRegistry, collectors: [MetricsCollector] = [],
        collectTimeout: Duration = .seconds(5), logger: Logger
    ) {
        self.collectTimeout = collectTimeout
        self.host = host
        self.port = port
        self.registry = registry
        self.collectors = collectors
        self.logger = logger
    }

    /// The page a scrape reads: collectors first, then every series.
    public func render() async -> [UInt8] {
        await withTaskGroup(of: Void.self) { group in
            for collector in collectors {
                group.addTask { [logger, collectTimeout] in
                    do {
                        try await withThrowingTaskGroup(of: Void.self) { race in
                            race.addTask { try await collector.collect() }
                            race.addTask { try await Task.sleep(for: collectTimeout) }
                            try await race.next()
                            race.cancelAll()
                        }
                    } catch {
                        logger.warning("metrics collector failed", metadata: ["collector": "\(collector.name)", "error": "\(error)"])
                    }
                }
            }
        }
        var page: [UInt8] = []
        page.reserveCapacity(64 * 1024)
        registry.emit(into: &page)
        return page
    }

    /// Binds; answers the bound address (port 0 picks one). `run` then serves.
    @discardableResult
    public func start() async throws -> SocketAddress {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        listener.withLock { $0 = server }
        logger.info("serving metrics", metadata: ["address": "\(server.channel.localAddress?.description ?? "?")"])
        return server.channel.localAddress!
    }

    /// Serves (binding first if `start` was not called) until the task is cancelled.
    public func run() async throws {
        if listener.withLock({ $0 == nil }) {
            try await start()
        }
        guard let server = listener.withLock({ $0 }) else { return }
        try await withTaskCancellationHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { connections in
                    for try await connection in connections {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        } onCancel: {
            server.channel.close(promise: nil)
        }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            for try await part in inbound {
                switch part {
                case .head(let h):
                    head = h
                case .body:
                    break
                case .end:
                    guard let request = head else { continue }
                    head = nil
                    let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
                    let (status, type, body): (HTTPResponseStatus, String, [UInt8])
                    if request.method == .GET && path == "/metrics" {
                        (status, type, body) = (.ok, "text/plain; version=0.0.4; charset=utf-8", await render())
                    } else if request.method == .GET && (path == "/" || path == "/healthz") {
                        (status, type, body) = (.ok, "text/plain; charset=utf-8", Array("ChatMesh metrics: GET /metrics\n".utf8))
                    } else {
                        (status, type, body) = (.notFound, "text/plain; charset=utf-8", Array("not found: GET /metrics\n".utf8))
                    }
                    var headers = HTTPHeaders([("content-type", type), ("content-length", "\(body.count)")])
                    if !request.isKeepAlive { headers.add(name: "connection", value: "close") }
                    try await outbound.write(.head(HTTPResponseHead(version: request.version, status: status, headers: headers)))
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
                    try await outbound.write(.end(nil))
                    if !request.isKeepAlive { return }
                }
            }
        }
    }
}
