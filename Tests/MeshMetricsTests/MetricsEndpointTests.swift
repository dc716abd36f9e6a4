import CoreMetrics
import Foundation
import Logging
import MeshHTTPClient
import MeshMetrics
import MeshPrometheus
import NIOCore
import Prometheus
import Synchronization
import Testing

@Suite struct MetricsEndpointTests {
    static func endpoint(_ registry: PrometheusCollectorRegistry, _ collectors: [MetricsCollector]) async throws -> (MetricsEndpoint, Task<Void, any Error>, URL) {
        var logger = Logger(label: "metrics-endpoint-test")
        logger.logLevel = .critical
        let endpoint = MetricsEndpoint(host: "127.0.0.1", port: 0, registry: registry, collectors: collectors, collectTimeout: .milliseconds(300), logger: logger)
        let address = try await endpoint.start()
        let task = Task { try await endpoint.run() }
        return (endpoint, task, URL(string: "http://127.0.0.1:\(address.port!)/metrics")!)
    }

    @Test func aScrapeRunsTheCollectorsAndReadsEverySeries() async throws {
        let registry = PrometheusCollectorRegistry()
        let factory = PrometheusMetrics.factory(registry)
        let backlog = Meter(label: "chatmesh_outbox_backlog", dimensions: [("queue", "loyalty")], factory: factory)
        let scrapes = Atomic<Int>(0)
        let collector = MetricsCollector(name: "outbox") {
            backlog.set(Double(scrapes.add(1, ordering: .relaxed).newValue * 10))
        }
        // A collector that hangs is given up on: the page still comes, without it.
        let stuck = MetricsCollector(name: "stuck") { try await Task.sleep(for: .seconds(3600)) }
        Counter(label: "chatmesh_test_total", dimensions: [("kind", "a")], factory: factory).increment(by: 3)
        let (_, task, url) = try await Self.endpoint(registry, [collector, stuck])
        let client = HTTP1Client()
        for expected in [10.0, 20.0] {
            let response = try await client.send(method: .GET, url: url)
            #expect(response.status == 200)
            #expect(response.header("content-type")?.hasPrefix("text/plain; version=0.0.4") == true)
            let page = try PrometheusText(String(decoding: response.body, as: UTF8.self))
            #expect(page.sum("chatmesh_outbox_backlog", ["queue": "loyalty"]) == expected)
            #expect(page.sum("chatmesh_test_total", ["kind": "a"]) == 3)
        }
        let missing = try await client.send(method: .GET, url: URL(string: url.absoluteString.replacingOccurrences(of: "/metrics", with: "/nope"))!)
        #expect(missing.status == 404)
        task.cancel()
        _ = await task.result
    }
}

@Suite struct PrometheusTextTests {
    @Test func samplesLabelsEscapesAndSpecialValues() throws {
        let page = try PrometheusText("""
            # HELP x_total a counter
            # TYPE x_total counter
            x_total{a="1",b="two words"} 3
            x_total{a="2", b="quote \\" and \\\\ and \\n"} 4.5 1712345678000
            y 7
            h_bucket{le="+Inf"} 12
            z NaN

            """)
        #expect(page.sum("x_total") == 7.5)
        #expect(page.samples("x_total", ["a": "2"]).first?.labels["b"] == "quote \" and \\ and \n")
        #expect(page.sum("y") == 7)
        #expect(page.samples("h_bucket", ["le": "+Inf"]).first?.value == 12)
        #expect(page.samples("z").first?.value.isNaN == true)
        #expect(throws: PrometheusText.Malformed.self) { try PrometheusText("x{a=\"1\" 3") }
        #expect(throws: PrometheusText.Malformed.self) { try PrometheusText("x_total three") }
    }

    @Test func quantilesInterpolateWithinTheirBucketAsPrometheusDoes() {
        // 100 observations: 50 ≤ 1 ms, 40 in (1, 5] ms, 10 in (5, 10] ms.
        let buckets: [(Double, Double)] = [(0.001, 50), (0.005, 90), (0.01, 100), (.infinity, 100)]
        #expect(abs(HistogramQuantile.value(0.5, buckets: buckets)! - 0.001) < 1e-12)
        // The 95th is half-way through the (5, 10] ms bucket, as histogram_quantile() answers.
        #expect(abs(HistogramQuantile.value(0.95, buckets: buckets)! - 0.0075) < 1e-12)
        #expect(HistogramQuantile.value(0.99, buckets: [(0.001, 0), (.infinity, 0)]) == nil)
        // Past the last finite bucket the answer is that bucket's bound.
        #expect(HistogramQuantile.value(0.99, buckets: [(0.001, 1), (.infinity, 10)]) == 0.001)
    }
}

@Suite struct MethodRateTests {
    static func page(ok: Int, failed: Int, fast: Int) throws -> PrometheusText {
        try PrometheusText("""
            grpc_server_handled_total{grpc_type="unary",grpc_service="s.A",grpc_method="Get",grpc_code="OK"} \(ok)
            grpc_server_handled_total{grpc_type="unary",grpc_service="s.A",grpc_method="Get",grpc_code="NotFound"} \(failed)
            grpc_server_handling_seconds_bucket{grpc_type="unary",grpc_service="s.A",grpc_method="Get",le="0.001"} \(fast)
            grpc_server_handling_seconds_bucket{grpc_type="unary",grpc_service="s.A",grpc_method="Get",le="0.01"} \(ok + failed)
            grpc_server_handling_seconds_bucket{grpc_type="unary",grpc_service="s.A",grpc_method="Get",le="+Inf"} \(ok + failed)
            grpc_server_handled_total{grpc_type="unary",grpc_service="s.A",grpc_method="Idle",grpc_code="OK"} 5
            """)
    }

    @Test func ratesErrorsAndP99AreOfTheIntervalOnly() throws {
        // Before: 100 calls (10 failed, 90 fast). After: 300 more, 30 of them failed, 200 of them fast.
        let rates = MethodRate.between(try Self.page(ok: 90, failed: 10, fast: 90), try Self.page(ok: 360, failed: 40, fast: 290), seconds: 2)
        #expect(rates.count == 1)  // Idle had no calls in between.
        let get = try #require(rates.first)
        #expect(get.method == "Get" && get.service == "s.A")
        #expect(get.calls == 300)
        #expect(get.callsPerSecond == 150)
        #expect(abs(get.errorRatio - 0.1) < 1e-12)
        // Rank 297 of 300: 200 in the first bucket, the 100 others spread over (1, 10] ms.
        #expect(abs(get.p99! - (0.001 + 0.009 * 97 / 100)) < 1e-12)
        // A restarted server's counters start again from zero: its new counts are the interval's.
        let restarted = MethodRate.between(try Self.page(ok: 360, failed: 40, fast: 290), try Self.page(ok: 8, failed: 2, fast: 10), seconds: 1)
        #expect(restarted.first?.calls == 10)
    }
}
