import ChatMeshAPI
import Logging
import MeshHTTP2
import MeshHealth
import MeshInterop
import MeshRPC
import NIOCore
import Synchronization
import Testing

/// A server-streaming method that writes as many messages as asked and counts them, to see
/// back-pressure and cancellation from the server's side.
final class FloodService: RPCService {
    static let flood = MethodDescriptor(service: "chatmesh.testing.Flood", method: "Flood")
    let written = Atomic<Int>(0)
    let cancelled = Atomic<Int>(0)
    let finished = Atomic<Int>(0)

    var routes: [RPCRoute] {
        [
            RPCRoute.serverStreaming(Self.flood, requiresAuth: false) { (request: InteropStreamingOutputCallRequest, responses: RPCWriter<InteropStreamingOutputCallResponse>, _) in
                do {
                    for parameters in request.responseParameters {
                        try await responses.write(InteropStreamingOutputCallResponse(payload: InteropPayload(body: [UInt8](repeating: 7, count: Int(parameters.size)))))
                        self.written.add(1, ordering: .relaxed)
                    }
                    self.finished.add(1, ordering: .relaxed)
                } catch {
                    self.cancelled.add(1, ordering: .relaxed)
                    throw error
                }
            },
        ]
    }

    static func request(count: Int, size: Int32) -> InteropStreamingOutputCallRequest {
        InteropStreamingOutputCallRequest(responseParameters: Array(repeating: InteropResponseParameters(size: size), count: count))
    }
}

enum Transport: String, CaseIterable, CustomTestStringConvertible {
    case http2, inProcess
    var testDescription: String { rawValue }
}

/// A channel to the interop service, the flood service and health, over `transport`.
struct StreamingFixture {
    let channel: any RPCChannel
    let flood: FloodService
    let health: HealthService
    let close: @Sendable () async -> Void

    static func make(_ transport: Transport) async throws -> StreamingFixture {
        let flood = FloodService()
        let health = HealthService(services: ["grpc.testing.TestService"])
        let services: [any RPCService] = [InteropTestHandler(), flood, health]
        switch transport {
        case .http2:
            var config = GRPCServer.Config(host: "127.0.0.1", port: 0)
            config.shutdownGracePeriod = .seconds(10)
            var logger = Logger(label: "streaming-test")
            logger.logLevel = .warning
            let server = GRPCServer(config: config, router: RPCRouter(services: services, verifier: TokenVerifier(key: "k")), logger: logger)
            let address = try await server.start()
            let channel = try HTTP2Channel(addresses: "127.0.0.1:\(address.port!)")
            return StreamingFixture(channel: channel, flood: flood, health: health) {
                await channel.close()
                await server.shutdownGracefully()
            }
        case .inProcess:
            let channel = InProcessChannel(router: RPCRouter(services: services, verifier: TokenVerifier(key: "k")))
            return StreamingFixture(channel: channel, flood: flood, health: health) {}
        }
    }

    var interop: InteropTestService.Client {
        InteropTestService.Client(channel: channel, defaultOptions: CallOptions(timeout: .seconds(30)))
    }
}

func zeros(_ n: Int) -> InteropPayload {
    InteropPayload(body: [UInt8](repeating: 0, count: n))
}

@Suite struct StreamingTests {
    @Test(arguments: Transport.allCases)
    func serverStreamingDeliversEveryMessageInOrder(_ transport: Transport) async throws {
        let fixture = try await StreamingFixture.make(transport)
        let sizes: [Int32] = [31415, 9, 2653, 58979, 0, 1]
        let request = InteropStreamingOutputCallRequest(responseParameters: sizes.map { InteropResponseParameters(size: $0) })
        let received = try await fixture.interop.streamingOutputCall(request) { responses in
            var sizes: [Int32] = []
            for try await response in responses {
                sizes.append(Int32(response.payload?.body.count ?? -1))
            }
            return sizes
        }
        #expect(received == sizes)
        await fixture.close()
    }

    @Test(arguments: Transport.allCases)
    func clientStreamingSumsWhatWasSent(_ transport: Transport) async throws {
        let fixture = try await StreamingFixture.make(transport)
        let response = try await fixture.interop.streamingInputCall { requests in
            for n in [27182, 8, 1828, 45904] {
                try await requests.write(InteropStreamingInputCallRequest(payload: zeros(n)))
            }
        }
        #expect(response.aggregatedPayloadSize == 74922)
        // No request at all is a valid client stream too.
        let none = try await fixture.interop.streamingInputCall { _ in }
        #expect(none.aggregatedPayloadSize == 0)
        await fixture.close()
    }

    @Test(arguments: Transport.allCases)
    func bidirectionalPingPongOneAtATime(_ transport: Transport) async throws {
        let fixture = try await StreamingFixture.make(transport)
        let pairs: [(Int32, Int)] = [(31415, 27182), (9, 8), (2653, 1828), (58979, 45904)]
        let sizes = try await fixture.interop.fullDuplexCall { call in
            var iterator = call.responses.makeAsyncIterator()
            var sizes: [Int] = []
            for (size, payload) in pairs {
                try await call.send(InteropStreamingOutputCallRequest(responseParameters: [InteropResponseParameters(size: size)], payload: zeros(payload)))
                // The answer comes before the next request is sent: the server answers as it reads.
                sizes.append(try await iterator.next()?.payload?.body.count ?? -1)
            }
            call.finishSending()
            #expect(try await iterator.next() == nil)
            return sizes
        }
        #expect(sizes == pairs.map { Int($0.0) })
        await fixture.close()
    }

    @Test(arguments: Transport.allCases)
    func anErrorMidStreamIsAStatusAfterTheMessagesWithTrailers(_ transport: Transport) async throws {
        let fixture = try await StreamingFixture.make(transport)
        var options = CallOptions(timeout: .seconds(30))
        options.metadata.add("x-grpc-test-echo-initial", "hello")
        options.metadata.add("x-grpc-test-echo-trailing-bin", "q6ur")
        let request = InteropStreamingOutputCallRequest(
            responseParameters: [InteropResponseParameters(size: 10), InteropResponseParameters(size: 20)],
            responseStatus: InteropEchoStatus(code: 9, message: "không được: precondition ✋")
        )
        let (received, status, initial) = try await fixture.interop.fullDuplexCall(options: options) { call in
            try await call.send(request)
            call.finishSending()
            var received: [Int] = []
            var status: RPCError?
            do {
                for try await response in call.responses {
                    received.append(response.payload?.body.count ?? -1)
                }
            } catch let error as RPCError {
                status = error
            }
            return (received, status, try await call.initialMetadata())
        }
        #expect(received == [10, 20])
        #expect(status?.code == .failedPrecondition)
        #expect(status?.message == "không được: precondition ✋")
        #expect(status?.metadata["x-grpc-test-echo-trailing-bin"] == "q6ur")
        if transport == .http2 {
            #expect(initial["x-grpc-test-echo-initial"] == "hello")
        }
        await fixture.close()
    }

    @Test(arguments: Transport.allCases)
    func aReaderThatStopsReadingHoldsTheWriter(_ transport: Transport) async throws {
        let fixture = try await StreamingFixture.make(transport)
        let total = 1000
        let received = try await fixture.channel.serverStreaming(
            FloodService.flood, FloodService.request(count: total, size: 16 * 1024), options: CallOptions(timeout: .seconds(60))
        ) { (responses: RPCMessageStream<InteropStreamingOutputCallResponse>) in
            var iterator = responses.makeAsyncIterator()
            _ = try await iterator.next()
            // Not reading: the handler must come to a stop well short of all 1,000 (16 MiB).
            try await waitUntilSteady { fixture.flood.written.load(ordering: .relaxed) }
            let writtenWhileStopped = fixture.flood.written.load(ordering: .relaxed)
            // Bound: the client's stream window (1 MiB) + what each side holds unread (64 KiB each), in 16 KiB messages.
            #expect(writtenWhileStopped < 120, "the server wrote \(writtenWhileStopped) messages to a reader that stopped")
            var count = 1
            while try await iterator.next() != nil { count += 1 }
            return count
        }
        #expect(received == total)
        #expect(fixture.flood.finished.load(ordering: .relaxed) == 1)
        await fixture.close()
    }

    @Test(arguments: Transport.allCases)
    func leavingAStreamCancelsTheServerHandler(_ transport: Transport) async throws {
        let fixture = try await StreamingFixture.make(transport)
        let first = try await fixture.channel.serverStreaming(
            FloodService.flood, FloodService.request(count: 100_000, size: 1024), options: CallOptions(timeout: .seconds(60))
        ) { (responses: RPCMessageStream<InteropStreamingOutputCallResponse>) in
            try await responses.next()?.payload?.body.count
        }
        #expect(first == 1024)
        try await waitUntil(timeout: .seconds(30)) { fixture.flood.cancelled.load(ordering: .relaxed) == 1 }
        #expect(fixture.flood.finished.load(ordering: .relaxed) == 0)
        await fixture.close()
    }

    @Test(arguments: Transport.allCases)
    func theDeadlineCoversTheWholeStream(_ transport: Transport) async throws {
        let fixture = try await StreamingFixture.make(transport)
        let started = ContinuousClock.now
        await expectCode(.deadlineExceeded) {
            try await fixture.interop.fullDuplexCall(options: CallOptions(timeout: .milliseconds(300))) { call in
                try await call.send(InteropStreamingOutputCallRequest(responseParameters: [InteropResponseParameters(size: 1)]))
                _ = try await call.responses.next()
                // Never half-closes: only the deadline ends the call.
                for try await _ in call.responses {}
            }
        }
        #expect(ContinuousClock.now - started < .seconds(20))
        await fixture.close()
    }

    @Test(arguments: Transport.allCases)
    func healthWatchSaysTheStatusNowAndEachChange(_ transport: Transport) async throws {
        let fixture = try await StreamingFixture.make(transport)
        let client = Health.Client(channel: fixture.channel, defaultOptions: CallOptions(timeout: .seconds(30)))
        let seen = try await client.watch(HealthCheckRequest(service: "grpc.testing.TestService")) { responses in
            var iterator = responses.makeAsyncIterator()
            var seen = [try await iterator.next()?.status]
            fixture.health.setStatus(.notServing, service: "grpc.testing.TestService")
            seen.append(try await iterator.next()?.status)
            fixture.health.setStatus(.serving, service: "grpc.testing.TestService")
            seen.append(try await iterator.next()?.status)
            return seen
        }
        #expect(seen == [.serving, .notServing, .serving])
        let unknown = try await client.watch(HealthCheckRequest(service: "nope")) { try await $0.next()?.status }
        #expect(unknown == .serviceUnknown)
        await fixture.close()
    }
}

/// Waits until `value` stops changing (the same over 300 ms), at most 30 s.
func waitUntilSteady(_ value: () -> Int) async throws {
    let end = ContinuousClock.now + .seconds(30)
    var last = value()
    while ContinuousClock.now < end {
        try await Task.sleep(for: .milliseconds(300))
        let now = value()
        if now == last && now > 0 { return }
        last = now
    }
    Issue.record("the value kept changing for 30 s")
}
