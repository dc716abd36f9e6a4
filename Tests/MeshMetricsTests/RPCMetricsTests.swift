import ChatMeshAPI
import Foundation
import Logging
import MeshHTTP2
import MeshHTTPClient
import MeshInterop
import MeshMetrics
import MeshPrometheus
import MeshRPC
import NIOCore
import Prometheus
import Testing

/// A server and a channel counting into one private registry, read back as Prometheus would.
struct MeteredMesh {
    let registry: PrometheusCollectorRegistry
    let server: GRPCServer
    let channel: HTTP2Channel

    static func start() async throws -> MeteredMesh {
        let registry = PrometheusCollectorRegistry()
        let factory = PrometheusMetrics.factory(registry)
        var config = GRPCServer.Config(host: "127.0.0.1", port: 0)
        config.metrics = ServerMetrics(factory: factory)
        var logger = Logger(label: "metrics-test")
        logger.logLevel = .critical
        let server = GRPCServer(config: config, router: RPCRouter(services: [InteropTestHandler()], verifier: TokenVerifier(key: "k")), logger: logger)
        let address = try await server.start()
        var channelConfig = HTTP2Channel.Config()
        channelConfig.metrics = RPCMetrics(side: .client, factory: factory)
        let channel = try HTTP2Channel(addresses: "127.0.0.1:\(address.port!)", config: channelConfig)
        return MeteredMesh(registry: registry, server: server, channel: channel)
    }

    init(registry: PrometheusCollectorRegistry, server: GRPCServer, channel: HTTP2Channel) {
        self.registry = registry
        self.server = server
        self.channel = channel
    }

    var page: PrometheusText {
        get throws {
            // As a scrape does: the transport's gauges are written first.
            server.config.metrics?.transport.publish()
            var bytes: [UInt8] = []
            registry.emit(into: &bytes)
            return try PrometheusText(String(decoding: bytes, as: UTF8.self))
        }
    }

    /// The page once the server has reported `calls` ended calls (a connection reports in batches,
    /// within `ConnectionTally.delay`).
    func page(afterServerHandled calls: Double) async throws -> PrometheusText {
        try await eventually { try page.sum("grpc_server_handled_total") == calls }
        return try page
    }

    var interop: InteropTestService.Client {
        InteropTestService.Client(channel: channel, defaultOptions: CallOptions(timeout: .seconds(30)))
    }

    func stop() async {
        await channel.close()
        await server.shutdownGracefully()
    }
}

@Suite struct RPCMetricsTests {
    static let unary = ["grpc_service": "grpc.testing.TestService", "grpc_method": "UnaryCall", "grpc_type": "unary"]

    @Test func everyCallIsCountedOnBothSidesByMethodAndCode() async throws {
        let mesh = try await MeteredMesh.start()
        for _ in 0..<5 {
            _ = try await mesh.interop.unaryCall(InteropSimpleRequest(responseSize: 10))
        }
        for _ in 0..<2 {
            await #expect(throws: RPCError.self) {
                try await mesh.interop.unaryCall(InteropSimpleRequest(responseStatus: InteropEchoStatus(code: 3, message: "no")))
            }
        }
        // A path nobody serves is counted once, as unknown: made-up paths cannot grow the label set.
        let bogus = MethodDescriptor(service: "x.Made", method: "Up")
        await #expect(throws: RPCError.self) {
            let _: InteropEmpty = try await mesh.channel.unary(bogus, InteropEmpty(), options: CallOptions(timeout: .seconds(5)))
        }
        let page = try await mesh.page(afterServerHandled: 8)
        for side in ["server", "client"] {
            #expect(page.sum("grpc_\(side)_started_total", Self.unary) == 7)
            #expect(page.sum("grpc_\(side)_handled_total", Self.unary.merging(["grpc_code": "OK"]) { $1 }) == 5)
            #expect(page.sum("grpc_\(side)_handled_total", Self.unary.merging(["grpc_code": "InvalidArgument"]) { $1 }) == 2)
            #expect(page.sum("grpc_\(side)_handling_seconds_count", Self.unary) == 7)
            // Every call lands in the +Inf bucket; the fastest bucket holds no more than that.
            #expect(page.sum("grpc_\(side)_handling_seconds_bucket", Self.unary.merging(["le": "+Inf"]) { $1 }) == 7)
            #expect(page.sum("grpc_\(side)_handling_seconds_sum", Self.unary) > 0)
        }
        #expect(page.sum("grpc_server_handled_total", ["grpc_service": "unknown", "grpc_method": "unknown", "grpc_code": "Unimplemented"]) == 1)
        #expect(page.samples("grpc_server_started_total").allSatisfy { $0.labels["grpc_service"] != "x.Made" })
        // The client names what it called, and counts the server's answer.
        #expect(page.sum("grpc_client_handled_total", ["grpc_service": "x.Made", "grpc_code": "Unimplemented"]) == 1)
        await mesh.stop()
    }

    @Test func streamsCountTheirMessagesEachWay() async throws {
        let mesh = try await MeteredMesh.start()
        let request = InteropStreamingOutputCallRequest(responseParameters: Array(repeating: InteropResponseParameters(size: 3), count: 3))
        let received = try await mesh.interop.streamingOutputCall(request) { responses in
            var n = 0
            for try await _ in responses { n += 1 }
            return n
        }
        #expect(received == 3)
        _ = try await mesh.interop.streamingInputCall { requests in
            for _ in 0..<4 {
                try await requests.write(InteropStreamingInputCallRequest(payload: InteropPayload(body: [1, 2])))
            }
        }
        let page = try await mesh.page(afterServerHandled: 2)
        let output = ["grpc_method": "StreamingOutputCall", "grpc_type": "server_stream"]
        let input = ["grpc_method": "StreamingInputCall", "grpc_type": "client_stream"]
        #expect(page.sum("grpc_server_msg_sent_total", output) == 3)
        #expect(page.sum("grpc_server_msg_received_total", output) == 1)
        #expect(page.sum("grpc_client_msg_received_total", output) == 3)
        #expect(page.sum("grpc_client_msg_sent_total", output) == 1)
        #expect(page.sum("grpc_server_msg_received_total", input) == 4)
        #expect(page.sum("grpc_client_msg_sent_total", input) == 4)
        for side in ["server", "client"] {
            #expect(page.sum("grpc_\(side)_handled_total", output.merging(["grpc_code": "OK"]) { $1 }) == 1)
            #expect(page.sum("grpc_\(side)_handled_total", input.merging(["grpc_code": "OK"]) { $1 }) == 1)
        }
        await mesh.stop()
    }

    @Test func aCallTheClientCancelsIsCountedCancelledOnTheServer() async throws {
        let mesh = try await MeteredMesh.start()
        // Responses 200 ms apart: the client leaves after the first.
        let request = InteropStreamingOutputCallRequest(
            responseParameters: Array(repeating: InteropResponseParameters(size: 1, intervalUs: 200_000), count: 50)
        )
        let first = try await mesh.interop.streamingOutputCall(request) { responses in
            try await responses.next() != nil
        }
        #expect(first)
        let output = ["grpc_method": "StreamingOutputCall"]
        try await eventually {
            try mesh.page.sum("grpc_server_handled_total", output.merging(["grpc_code": "Canceled"]) { $1 }) == 1
        }
        #expect(try mesh.page.sum("grpc_client_handled_total", output.merging(["grpc_code": "Canceled"]) { $1 }) == 1)
        await mesh.stop()
    }

    @Test func theTransportCountsConnectionsStreamsAndBytes() async throws {
        let mesh = try await MeteredMesh.start()
        _ = try await mesh.interop.unaryCall(InteropSimpleRequest(responseSize: 1000))
        let page = try await mesh.page(afterServerHandled: 1)
        #expect(page.sum("chatmesh_http2_connections") == 1)
        #expect(page.sum("chatmesh_http2_connections_accepted_total") == 1)
        #expect(page.sum("chatmesh_http2_received_bytes_total") > 0)
        #expect(page.sum("chatmesh_http2_sent_bytes_total") > 1000)
        try await eventually { try mesh.page.sum("chatmesh_http2_streams") == 0 }
        await mesh.channel.close()
        try await eventually { try mesh.page.sum("chatmesh_http2_connections") == 0 }
        // The server's drain sends GOAWAY NO_ERROR on a connection it closes.
        let other = try await MeteredMesh.start()
        _ = try await other.interop.emptyCall(InteropEmpty())
        await other.server.shutdownGracefully()
        #expect(try other.page.sum("chatmesh_http2_goaways_total", ["direction": "sent", "code": "NO_ERROR"]) >= 1)
        await other.channel.close()
        await mesh.server.shutdownGracefully()
    }
}

/// Polls `condition` until it holds, for up to 20 s (a loaded machine closes streams late).
func eventually(_ condition: () throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(20)
    while try !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("condition did not hold within 20 s")
            return
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}
