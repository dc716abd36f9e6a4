import ChatMeshAPI
import Logging
import MeshEcho
import MeshHTTP2
import MeshHealth
import MeshRPC
import MeshTestSupport
import NIOCore
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// An echo service that says which server answered and counts what it saw.
final class ProbeService: EchoService.Handler {
    let name: String
    let calls = Atomic<Int>(0)
    /// Calls with a delay that reached the handler, and those of them still in it.
    let delayed = Atomic<Int>(0)
    let running = Atomic<Int>(0)
    let cancelled = Atomic<Int>(0)

    init(name: String) {
        self.name = name
    }

    func echo(_ request: EchoRequest, context: ServerContext) async throws -> EchoResponse {
        calls.wrappingAdd(1, ordering: .relaxed)
        if request.delayMs > 0 {
            delayed.wrappingAdd(1, ordering: .relaxed)
            running.wrappingAdd(1, ordering: .relaxed)
            defer { running.wrappingSubtract(1, ordering: .relaxed) }
            do {
                try await Task.sleep(for: .milliseconds(request.delayMs))
            } catch {
                cancelled.wrappingAdd(1, ordering: .relaxed)
                throw error
            }
        }
        var response = try await EchoHandler().echo(request, context: context)
        response.text = request.text == "answer with NUL" ? "cut\u{0}here" : "\(name):\(request.text)"
        return response
    }

    func relay(_ request: EchoRequest, context: ServerContext) async throws -> EchoResponse {
        throw RPCError.unimplemented("probe does not relay")
    }
}

enum Mesh {
    static let key = "transport-test-key"

    static func token(shop: String = "shop-1", staff: String = "lan") -> String {
        TokenSigner(key: key).mint(shopId: shop, staffId: staff, role: .agent)
    }

    static func server(_ services: [any RPCService], port: Int = 0, configure: (inout GRPCServer.Config) -> Void = { _ in }) async throws -> (GRPCServer, String) {
        var config = GRPCServer.Config(host: "127.0.0.1", port: port)
        config.shutdownGracePeriod = .seconds(10)
        configure(&config)
        var logger = Logger(label: "test-server")
        logger.logLevel = .warning
        let server = GRPCServer(config: config, router: RPCRouter(services: services + [HealthService()], verifier: TokenVerifier(key: key)), logger: logger)
        let address = try await server.start()
        return (server, "127.0.0.1:\(address.port!)")
    }

    static func client(_ address: String, shop: String = "shop-1", config: HTTP2Channel.Config = .init()) throws -> (EchoService.Client, HTTP2Channel) {
        let channel = try HTTP2Channel(addresses: address, config: config)
        return (EchoService.Client(channel: channel, defaultOptions: .bearer(token(shop: shop), timeout: .seconds(10))), channel)
    }
}

func expectCode(_ code: RPCError.Code, _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async {
    do {
        try await body()
        Issue.record("expected \(code.name), the call succeeded", sourceLocation: sourceLocation)
    } catch let error as RPCError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected RPCError \(code.name), got \(error)", sourceLocation: sourceLocation)
    }
}

@Suite(.serialized) struct TransportTests {
    @Test func thousandConcurrentCallsOverTenConnectionsGetTheirOwnAnswers() async throws {
        let probe = ProbeService(name: "s")
        let (server, address) = try await Mesh.server([probe])
        let clients = try (0..<10).map { _ in try Mesh.client(address) }
        let answers = try await withThrowingTaskGroup(of: (Int, EchoResponse).self) { group in
            for i in 0..<1000 {
                group.addTask {
                    let request = EchoRequest(shopId: "shop-1", text: "call-\(i)", words: [String(i)], labels: ["i": String(i)])
                    return (i, try await clients[i % 10].0.echo(request))
                }
            }
            var all: [Int: EchoResponse] = [:]
            for try await (i, response) in group { all[i] = response }
            return all
        }
        #expect(answers.count == 1000)
        for (i, response) in answers {
            #expect(response.text == "s:call-\(i)")
            #expect(response.words == [String(i)])
            #expect(response.labels == ["i": String(i)])
        }
        #expect(probe.calls.load(ordering: .relaxed) == 1000)
        for (_, channel) in clients { await channel.close() }
        await server.shutdownGracefully()
    }

    @Test func statusesForUnknownMethodMissingTokenOtherShopAndHealth() async throws {
        let (server, address) = try await Mesh.server([ProbeService(name: "s")])
        let channel = try HTTP2Channel(addresses: address)
        await expectCode(.unimplemented) {
            let _: EchoResponse = try await channel.unary(MethodDescriptor(service: EchoService.name, method: "Nope"),
                                                          EchoRequest(shopId: "shop-1"), options: .bearer(Mesh.token()))
        }
        let anonymous = EchoService.Client(channel: channel)
        await expectCode(.unauthenticated) { _ = try await anonymous.echo(EchoRequest(shopId: "shop-1")) }
        let client = EchoService.Client(channel: channel, defaultOptions: .bearer(Mesh.token(shop: "shop-1")))
        await expectCode(.permissionDenied) { _ = try await client.echo(EchoRequest(shopId: "shop-2")) }
        await expectCode(.invalidArgument) { _ = try await client.echo(EchoRequest(text: "no shop")) }
        await expectCode(.notFound) { _ = try await client.echo(EchoRequest(shopId: "shop-1", failWithCode: 5, failWithMessage: "không có")) }
        let health = try await Health.Client(channel: channel).check(HealthCheckRequest())
        #expect(health.status == .serving)
        await channel.close()
        await server.shutdownGracefully()
    }

    @Test func deadlineExceededStopsTheServerSideWork() async throws {
        let probe = ProbeService(name: "s")
        let (server, address) = try await Mesh.server([probe])
        let (client, channel) = try Mesh.client(address)
        // Connected first, so that the 200 ms are spent on the server rather than on connecting.
        _ = try await client.echo(EchoRequest(shopId: "shop-1", text: "warm"))
        // On a loaded machine the whole 200 ms can pass before the request leaves the client (it
        // is then never sent, or reset before the server reads it): nothing ran, so nothing is
        // left to stop. Calls are made until one reaches the handler; each must end in time and
        // leave no handler running.
        var attempts = 0
        while probe.delayed.load(ordering: .relaxed) == 0 && attempts < 10 {
            attempts += 1
            let started = ContinuousClock.now
            await expectCode(.deadlineExceeded) {
                _ = try await client.echo(EchoRequest(shopId: "shop-1", delayMs: 10_000), options: .bearer(Mesh.token(), timeout: .milliseconds(200)))
            }
            #expect(ContinuousClock.now - started < .seconds(3))
            try await waitUntil { probe.running.load(ordering: .relaxed) == 0 }
        }
        #expect(probe.delayed.load(ordering: .relaxed) >= 1, "no call reached the handler in \(attempts) tries")
        #expect(probe.cancelled.load(ordering: .relaxed) == probe.delayed.load(ordering: .relaxed))
        await channel.close()
        await server.shutdownGracefully()
    }

    @Test func cancellingTheCallerCancelsTheHandler() async throws {
        let probe = ProbeService(name: "s")
        let (server, address) = try await Mesh.server([probe])
        let (client, channel) = try Mesh.client(address)
        let call = Task { try await client.echo(EchoRequest(shopId: "shop-1", delayMs: 10_000)) }
        try await waitUntil { probe.calls.load(ordering: .relaxed) == 1 }
        call.cancel()
        do {
            _ = try await call.value
            Issue.record("a cancelled call succeeded")
        } catch let error as RPCError {
            #expect(error.code == .cancelled)
        }
        try await waitUntil { probe.cancelled.load(ordering: .relaxed) == 1 }
        await channel.close()
        await server.shutdownGracefully()
    }

    @Test func tokenAndDeadlineTravelDownstream() async throws {
        let (downstream, downAddress) = try await Mesh.server([ProbeService(name: "down")])
        let relayChannel = try HTTP2Channel(addresses: downAddress)
        let (front, frontAddress) = try await Mesh.server([EchoHandler(downstream: EchoService.Client(channel: relayChannel))])
        let (client, channel) = try Mesh.client(frontAddress)
        let response = try await client.relay(EchoRequest(shopId: "shop-1", text: "hop"), options: .bearer(Mesh.token(staff: "hoa"), timeout: .seconds(2)))
        #expect(response.text == "down:hop")
        #expect(response.callerStaffId == "hoa")
        #expect(response.deadlineRemainingMs > 0 && response.deadlineRemainingMs <= 2000)
        await expectCode(.deadlineExceeded) {
            _ = try await client.relay(EchoRequest(shopId: "shop-1", delayMs: 5000), options: .bearer(Mesh.token(), timeout: .milliseconds(300)))
        }
        await channel.close()
        await relayChannel.close()
        await front.shutdownGracefully()
        await downstream.shutdownGracefully()
    }

    @Test func stringsRoundTripAndNULIsRefusedBeforeSending() async throws {
        let probe = ProbeService(name: "s")
        let (server, address) = try await Mesh.server([probe])
        let (client, channel) = try Mesh.client(address)
        for text in ["Giao gấp về Q.1, TP.HCM nha shop 🙏", String(repeating: "ệ", count: 22000), "😀🇻🇳👨‍👩‍👧‍👦"] {
            let response = try await client.echo(EchoRequest(shopId: "shop-1", text: text, labels: [text: text]))
            #expect(response.text == "s:" + text)
            #expect(response.labels == [text: text])
        }
        let before = probe.calls.load(ordering: .relaxed)
        await expectCode(.invalidArgument) { _ = try await client.echo(EchoRequest(shopId: "shop-1", text: "a\u{0}b")) }
        #expect(probe.calls.load(ordering: .relaxed) == before)
        // A handler's answer that protobuf-c could only send cut is an error, not a shorter string.
        await expectCode(.internal) { _ = try await client.echo(EchoRequest(shopId: "shop-1", text: "answer with NUL")) }
        await channel.close()
        await server.shutdownGracefully()
    }

    @Test func messageSizeLimitsBothWays() async throws {
        let (server, address) = try await Mesh.server([ProbeService(name: "s")])
        let (client, channel) = try Mesh.client(address)
        await expectCode(.resourceExhausted) { _ = try await client.echo(EchoRequest(shopId: "shop-1", payload: [UInt8](repeating: 1, count: 5 << 20))) }
        await expectCode(.resourceExhausted) { _ = try await client.echo(EchoRequest(shopId: "shop-1", responseBytes: 5 << 20)) }
        let big = try await client.echo(EchoRequest(shopId: "shop-1", payload: [UInt8](repeating: 7, count: 3 << 20)))
        #expect(big.payload.count == 3 << 20)
        var small = HTTP2Channel.Config()
        small.maxMessageBytes = 1024
        let (limited, limitedChannel) = try Mesh.client(address, config: small)
        await expectCode(.resourceExhausted) { _ = try await limited.echo(EchoRequest(shopId: "shop-1", responseBytes: 10_000)) }
        await channel.close()
        await limitedChannel.close()
        await server.shutdownGracefully()
    }

    @Test func gracefulShutdownFinishesCallsInFlight() async throws {
        let probe = ProbeService(name: "s")
        let (server, address) = try await Mesh.server([probe])
        let (client, channel) = try Mesh.client(address)
        let calls = Task {
            try await withThrowingTaskGroup(of: String.self) { group in
                for i in 0..<100 {
                    group.addTask { try await client.echo(EchoRequest(shopId: "shop-1", text: "\(i)", delayMs: 1_000)).text }
                }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
        }
        // A fixed sleep raced the connect on a loaded CI machine; shut down only once the server holds every call.
        try await waitUntil { probe.calls.load(ordering: .relaxed) == 100 }
        await server.shutdownGracefully()
        let texts = try await calls.value
        #expect(Set(texts) == Set((0..<100).map { "s:\($0)" }))
        await expectCode(.unavailable) { _ = try await client.echo(EchoRequest(shopId: "shop-1")) }
        await channel.close()
    }

    @Test func reconnectsAfterTheServerComesBack() async throws {
        // Held across the restart: nothing else can take the port while no server has it.
        let hold = try PortHold()
        defer { hold.release() }
        let (server, address) = try await Mesh.server([ProbeService(name: "first")], port: hold.port)
        let (client, channel) = try Mesh.client(address)
        #expect(try await client.echo(EchoRequest(shopId: "shop-1", text: "x")).text == "first:x")
        await server.shutdownGracefully()
        let (again, _) = try await Mesh.server([ProbeService(name: "second")], port: hold.port)
        var answer = ""
        for _ in 0..<50 where answer.isEmpty {
            do {
                answer = try await client.echo(EchoRequest(shopId: "shop-1", text: "y")).text
            } catch {
                #expect(error.code == .unavailable)
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(answer == "second:y")
        await channel.close()
        await again.shutdownGracefully()
    }

    @Test func roundRobinOverReplicas() async throws {
        let (a, addressA) = try await Mesh.server([ProbeService(name: "A")])
        let (b, addressB) = try await Mesh.server([ProbeService(name: "B")])
        let (client, channel) = try Mesh.client("\(addressA),\(addressB)")
        // Calls go to a connected replica while the other's handshake is still under way (on a
        // loaded machine that can last dozens of calls): the rotation is checked once both answer.
        var warm: Set<Substring> = []
        let end = ContinuousClock.now + .seconds(10)
        while warm.count < 2, ContinuousClock.now < end {
            warm.insert(try await client.echo(EchoRequest(shopId: "shop-1", text: "w")).text.prefix(1))
        }
        #expect(warm == ["A", "B"])
        var seen: [String: Int] = [:]
        for _ in 0..<40 {
            let text = try await client.echo(EchoRequest(shopId: "shop-1", text: "x")).text
            seen[String(text.prefix(1)), default: 0] += 1
        }
        #expect(seen["A", default: 0] >= 10 && seen["B", default: 0] >= 10, "\(seen)")
        // One replica gone: every call still succeeds on the other.
        await a.shutdownGracefully()
        for _ in 0..<10 {
            #expect(try await client.echo(EchoRequest(shopId: "shop-1", text: "y")).text == "B:y")
        }
        await channel.close()
        await b.shutdownGracefully()
    }
}

func waitUntil(timeout: Duration = .seconds(5), _ condition: () -> Bool) async throws {
    let end = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now > end {
            Issue.record("condition not met within \(timeout)")
            return
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// A replica whose link is cut: its port still accepts (the kernel completes the handshake
/// from the listen backlog) but nothing ever comes back, as when packets are dropped.
final class SilentListener {
    let fd: Int32
    let address: String

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw RPCError.internal("could not listen") }
        address = "127.0.0.1:\(UInt16(bigEndian: addr.sin_port))"
    }

    deinit { close(fd) }
}

@Suite struct SilentReplicaTests {
    /// Sixty calls, each with a deadline short enough to show every call that waits on a silent
    /// replica and long enough that a loaded machine answers the others in time: how many failed
    /// on the silent replica as `waited` allows (any other failure is thrown), and the answers of the
    /// rest. A call that `answering` received and did not answer in time failed on it, not on the
    /// silent one: a busy machine can make that happen, and it is no part of what is measured.
    static func callsPastSilence(
        _ client: EchoService.Client, answering: ProbeService, waited: (RPCError.Code) -> Bool
    ) async throws -> (failed: Int, answers: [String]) {
        let measured = CallOptions.bearer(Mesh.token(), timeout: .seconds(3))
        let receivedBefore = answering.calls.load(ordering: .relaxed)
        var failed = 0
        var answers: [String] = []
        for n in 0..<60 {
            switch await rpcResult({ () throws(RPCError) in try await client.echo(EchoRequest(shopId: "shop-1", text: "\(n)"), options: measured) }) {
            case .success(let response): answers.append(response.text)
            case .failure(let error) where waited(error.code): failed += 1
            case .failure(let error): throw error
            }
        }
        let lateOnTheAnsweringReplica = answering.calls.load(ordering: .relaxed) - receivedBefore - answers.count
        return (failed - lateOnTheAnsweringReplica, answers)
    }

    /// A replica that went silent costs the calls that were waiting on it one deadline; after
    /// that, calls go to the replica that answers.
    @Test func aSilentReplicaCostsOneDeadlineThenCallsGoElsewhere() async throws {
        let silent = try SilentListener()
        let probeB = ProbeService(name: "B")
        let (b, addressB) = try await Mesh.server([probeB])
        var config = HTTP2Channel.Config()
        config.silenceTimeout = .milliseconds(300)
        let channel = try HTTP2Channel(addresses: "\(silent.address),\(addressB)", config: config)
        let client = EchoService.Client(channel: channel, defaultOptions: .bearer(Mesh.token(), timeout: .seconds(5)))
        let (timedOut, answers) = try await Self.callsPastSilence(client, answering: probeB) { $0 == .deadlineExceeded }
        #expect(timedOut <= 2, "\(timedOut) calls waited out their deadline")
        #expect(answers.suffix(40).allSatisfy { $0.hasPrefix("B:") })
        await channel.close()
        await b.shutdownGracefully()
    }

    /// A replica that answered for a while and then went silent mid-connection (its link cut):
    /// one deadline, a PING nobody answers, and the connection is dropped; calls carry on
    /// with the other replica.
    @Test func aReplicaWhoseLinkIsCutMidConnectionIsDroppedAfterOneDeadline() async throws {
        let (a, addressA) = try await Mesh.server([ProbeService(name: "A")])
        let probeB = ProbeService(name: "B")
        let (b, addressB) = try await Mesh.server([probeB])
        let proxy = try await CutLinkProxy(to: addressA)
        var config = HTTP2Channel.Config()
        config.silenceTimeout = .milliseconds(300)
        let channel = try HTTP2Channel(addresses: "\(proxy.address),\(addressB)", config: config)
        let client = EchoService.Client(channel: channel, defaultOptions: .bearer(Mesh.token(), timeout: .seconds(5)))
        var seen: Set<String> = []
        for n in 0..<20 {
            if case .success(let response) = await rpcResult({ () throws(RPCError) in try await client.echo(EchoRequest(shopId: "shop-1", text: "\(n)")) }) {
                seen.insert(String(response.text.prefix(1)))
            }
        }
        #expect(seen == ["A", "B"])  // both answered while the link was up
        proxy.cutLink()
        let (timedOut, answers) = try await Self.callsPastSilence(client, answering: probeB) { $0 == .deadlineExceeded || $0 == .unavailable }
        #expect(timedOut <= 2, "\(timedOut) calls failed after the cut")
        #expect(answers.suffix(40).allSatisfy { $0.hasPrefix("B:") })
        await channel.close()
        await proxy.close()
        await a.shutdownGracefully()
        await b.shutdownGracefully()
    }
}
