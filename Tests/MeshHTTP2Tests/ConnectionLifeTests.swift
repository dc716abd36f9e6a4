import ChatMeshAPI
import Logging
import MeshHTTP2
import MeshHealth
import MeshInterop
import MeshRPC
import NIOCore
import Testing

/// Keepalive and connection ageing, end to end over real connections.
@Suite struct ConnectionLifeTests {
    static func server(_ configure: (inout GRPCServer.Config) -> Void) async throws -> (GRPCServer, String) {
        var config = GRPCServer.Config(host: "127.0.0.1", port: 0)
        config.shutdownGracePeriod = .seconds(10)
        configure(&config)
        var logger = Logger(label: "connection-life")
        logger.logLevel = .warning
        let server = GRPCServer(config: config, router: RPCRouter(services: [InteropTestHandler(), HealthService()], verifier: TokenVerifier(key: "k")), logger: logger)
        let address = try await server.start()
        return (server, "127.0.0.1:\(address.port!)")
    }

    static func client(_ address: String, _ configure: (inout HTTP2Channel.Config) -> Void = { _ in }) throws -> (InteropTestService.Client, HTTP2Channel) {
        var config = HTTP2Channel.Config(env: MeshEnvironment([:]))
        configure(&config)
        let channel = try HTTP2Channel(addresses: address, config: config)
        return (InteropTestService.Client(channel: channel, defaultOptions: CallOptions(timeout: .seconds(30))), channel)
    }

    @Test func aConnectionPastItsMaximumAgeDrainsWhileItsCallsFinish() async throws {
        let (server, address) = try await Self.server {
            // Long enough that a loaded machine gets a call onto a fresh connection before it ages.
            $0.maxConnectionAge = .seconds(1)
            $0.maxConnectionAgeGrace = .seconds(20)
        }
        let (client, channel) = try Self.client(address)
        // Four responses 600 ms apart: the call outlives the connection's age by far.
        let request = InteropStreamingOutputCallRequest(responseParameters: Array(repeating: InteropResponseParameters(size: 8, intervalUs: 600_000), count: 4))
        let count = try await client.streamingOutputCall(request) { responses in
            var n = 0
            for try await _ in responses { n += 1 }
            return n
        }
        #expect(count == 4)
        // The drained connection is gone once its call is; the next call opens another. (On a loaded
        // machine a connection may age before its first call arrives: that call is refused unsent and
        // retried on a new one, so more than two connections is no failure.)
        try await waitUntil(timeout: .seconds(30)) { server.openConnections == 0 }
        let before = server.connectionsAccepted
        _ = try await client.emptyCall(InteropEmpty())
        #expect(server.connectionsAccepted > before)
        await channel.close()
        await server.shutdownGracefully()
    }

    @Test func anIdleConnectionIsClosedAndTheNextCallReconnects() async throws {
        // Long enough that a loaded machine gets the first call onto the connection before it counts as idle.
        let (server, address) = try await Self.server { $0.maxConnectionIdle = .seconds(2) }
        let (client, channel) = try Self.client(address)
        _ = try await client.emptyCall(InteropEmpty())
        try await waitUntil(timeout: .seconds(30)) { server.openConnections == 0 }
        let before = server.connectionsAccepted
        _ = try await client.emptyCall(InteropEmpty())
        #expect(server.connectionsAccepted > before)
        await channel.close()
        await server.shutdownGracefully()
    }

    @Test func aClientThatPingsTooOftenIsToldToCalmDownAndLetGo() async throws {
        // The same client pace (a PING every 50 ms, calls or not) against a server that allows it
        // and one that allows a PING per 5 s (two strikes, then GOAWAY ENHANCE_YOUR_CALM).
        let (strict, strictAddress) = try await Self.server {
            $0.minPingInterval = .seconds(5)
            $0.maxPingStrikes = 2
        }
        let (lenient, lenientAddress) = try await Self.server { $0.minPingInterval = .zero }
        let pinging: (inout HTTP2Channel.Config) -> Void = {
            $0.keepaliveInterval = .milliseconds(50)
            $0.keepaliveWithoutCalls = true
        }
        let (toStrict, strictChannel) = try Self.client(strictAddress, pinging)
        let (toLenient, lenientChannel) = try Self.client(lenientAddress, pinging)
        // A call opens each connection (on a loaded machine the strict one may be gone before it answers).
        _ = try? await toStrict.emptyCall(InteropEmpty())
        _ = try await toLenient.emptyCall(InteropEmpty())
        try await waitUntil(timeout: .seconds(30)) { strict.connectionsAccepted >= 1 && strict.openConnections == 0 }
        // Well past the strikes the strict server counted, the lenient one still holds its connection.
        #expect(lenient.openConnections == 1)
        await strictChannel.close()
        await lenientChannel.close()
        await strict.shutdownGracefully()
        await lenient.shutdownGracefully()
    }

    @Test func keepaliveFindsACutLinkLongBeforeTheCallsDeadline() async throws {
        // The server's side of the cut connection holds its sleeping call: a short grace ends the test.
        let (server, address) = try await Self.server { $0.shutdownGracePeriod = .seconds(1) }
        let proxy = try await CutLinkProxy(to: address)
        let (client, channel) = try Self.client(proxy.address) {
            $0.keepaliveInterval = .milliseconds(200)
            $0.keepaliveTimeout = .milliseconds(500)
        }
        let started = ContinuousClock.now
        await expectCode(.unavailable) {
            // One response, then a minute's pause: only keepalive can notice the link is gone.
            let request = InteropStreamingOutputCallRequest(responseParameters: [
                InteropResponseParameters(size: 1), InteropResponseParameters(size: 1, intervalUs: 60_000_000),
            ])
            try await client.streamingOutputCall(request, options: CallOptions(timeout: .seconds(120))) { responses in
                _ = try await responses.next()
                proxy.cutLink()
                for try await _ in responses {}
            }
        }
        #expect(ContinuousClock.now - started < .seconds(60))
        await channel.close()
        await proxy.close()
        await server.shutdownGracefully()
    }
}
