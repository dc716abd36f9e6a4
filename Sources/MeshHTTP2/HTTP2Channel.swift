import Logging
import MeshMetrics
import MeshRPC
import MeshTracing
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// A client channel to one service: one multiplexed HTTP/2 connection per
/// address, round-robin over the addresses, reconnect with backoff. A call
/// that never reached a server is retried once on another connection;
/// one that did is retried only when the caller marked it idempotent.
public final class HTTP2Channel: RPCChannel {
    /// How the channel connects and calls: time-outs, keepalive, message limits.
    public struct Config: Sendable {
        public var connectTimeout: TimeAmount = .seconds(5)
        public var maxMessageBytes = GRPCFraming.defaultMaxMessageBytes
        public var initialBackoff: TimeAmount = .milliseconds(100)
        public var maxBackoff: TimeAmount = .seconds(5)
        /// After a call's deadline passes with nothing heard from the server, the connection is
        /// PINGed; no answer within this and it is closed (a cut link shows as silence, not an error).
        public var silenceTimeout: TimeAmount = .seconds(1)
        /// Keepalive: a PING this often while calls are open (nil: off), and the connection closed
        /// when one goes unanswered for `keepaliveTimeout`: a dead peer or a cut link is found
        /// without waiting for a call's deadline. The server must allow the pace (its
        /// `minPingInterval`, 10 s by default) or it answers GOAWAY ENHANCE_YOUR_CALM.
        public var keepaliveInterval: TimeAmount?
        public var keepaliveTimeout: TimeAmount = .seconds(20)
        /// Ping even with no call open (keeps NAT and load-balancer state alive).
        public var keepaliveWithoutCalls = false
        /// The client series this channel counts into: the process's when metrics are on.
        public var metrics: RPCMetrics? = ProcessMetrics.client
        /// TLS to the servers (nil: h2c). From CHATMESH_TLS_CA and CHATMESH_TLS_CLIENT_CERT/_KEY (`MeshTLS`).
        public var tls: NIOSSLContext?
        /// The environment's TLS settings could not be loaded: creating a channel throws it.
        var tlsProblem: ConfigurationError?

        /// Defaults, with keepalive from CHATMESH_KEEPALIVE_INTERVAL_S and CHATMESH_KEEPALIVE_TIMEOUT_S.
        public init(env: MeshEnvironment = MeshEnvironment()) {
            func amount(_ seconds: Double) -> TimeAmount { .nanoseconds(Int64(seconds * 1e9)) }
            if case .seconds(let s) = env.seconds("CHATMESH_KEEPALIVE_INTERVAL_S") { keepaliveInterval = amount(s) }
            if case .seconds(let s) = env.seconds("CHATMESH_KEEPALIVE_TIMEOUT_S") { keepaliveTimeout = amount(s) }
            do {
                tls = try MeshTLS.client(env)
            } catch {
                tlsProblem = error
            }
        }
    }

    private let subchannels: [Subchannel]
    private let maxMessageBytes: Int
    private let metrics: RPCMetrics?
    private let next = Atomic<Int>(0)
    private let callIDs = Atomic<UInt64>(0)

    /// `targets` are "host:port" addresses of the replicas of one service (CHATMESH_<SERVICE>_ADDRS).
    public init(targets: [String], config: Config = Config(), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws(ConfigurationError) {
        guard !targets.isEmpty else { throw ConfigurationError("no addresses to connect to") }
        if let problem = config.tlsProblem { throw problem }
        var subs: [Subchannel] = []
        for target in targets {
            let address = try HostPort(target)
            subs.append(Subchannel(host: address.host, port: address.port, authority: target, config: config, group: group))
        }
        subchannels = subs
        maxMessageBytes = config.maxMessageBytes
        metrics = config.metrics
    }

    /// "a:1,b:2" as in the environment.
    public convenience init(addresses: String, config: Config = Config()) throws(ConfigurationError) {
        try self.init(targets: addresses.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }, config: config)
    }

    public func unary(_ request: ClientRequest) async throws(RPCError) -> ByteBuffer {
        guard RPCTracing.isEnabled else { return try await counted(request) }
        return try await RPCTracing.calling(request.method, metadata: request.metadata) { (metadata: Metadata) throws(RPCError) in
            var request = request
            request.metadata = metadata
            return try await counted(request)
        }
    }

    private func counted(_ request: ClientRequest) async throws(RPCError) -> ByteBuffer {
        guard let metrics else {
            return try await withRetries(idempotent: request.idempotent) { connection, callID in
                try await connection.call(request, callID: callID)
            }
        }
        let method = metrics.method(request.method, kind: .unary)
        method.start()
        let start = NIODeadline.now()
        do {
            let response = try await withRetries(idempotent: request.idempotent) { connection, callID in
                try await connection.call(request, callID: callID)
            }
            method.handled(.ok, since: start)
            return response
        } catch {
            method.handled(error.code, since: start)
            throw error
        }
    }

    /// Runs `body` on a picked connection. A call that never reached a server is tried again on
    /// another connection (up to three tries); one that did only when `idempotent` and UNAVAILABLE.
    private func withRetries<Result>(idempotent: Bool, _ body: (ClientConnection, UInt64) async throws -> Result) async throws(RPCError) -> Result {
        let attempts = min(subchannels.count + 1, 3)
        var attempt = 0
        while true {
            attempt += 1
            let sub = pick()
            do {
                let connection = try await sub.connection()
                return try await body(connection, callIDs.wrappingAdd(1, ordering: .relaxed).newValue)
            } catch let notSent as CallNotSent {
                if attempt < attempts, !Task.isCancelled { continue }
                throw notSent.error
            } catch let error as RPCError {
                if idempotent, error.code == .unavailable, attempt < attempts, !Task.isCancelled { continue }
                throw error
            } catch {
                throw .unavailable("\(error)")
            }
        }
    }

    /// A streaming call: like a unary one, retried on another connection only while it
    /// cannot have reached a server; once started it is the caller's.
    public func openStream(_ head: ClientStreamHead) async throws(RPCError) -> RPCClientStream {
        guard RPCTracing.isEnabled else { return try await openCounted(head) }
        return try await RPCTracing.calling(head) { (head: ClientStreamHead) throws(RPCError) in try await openCounted(head) }
    }

    private func openCounted(_ head: ClientStreamHead) async throws(RPCError) -> RPCClientStream {
        let method = metrics?.method(head.method, kind: head.kind)
        method?.start()
        let start = NIODeadline.now()
        let stream: RPCClientStream
        do {
            stream = try await withRetries(idempotent: false) { connection, callID in
                try await connection.openStream(head, callID: callID, maxMessageBytes: maxMessageBytes)
            }
        } catch {
            method?.handled(error.code, since: start)
            throw error
        }
        return method?.counting(stream, since: start) ?? stream
    }

    /// Round-robin over the connected addresses; every address that is not
    /// connected is (re)connected in the background so it can join the rotation.
    private func pick() -> Subchannel {
        let n = subchannels.count
        if n == 1 { return subchannels[0] }
        let start = next.wrappingAdd(1, ordering: .relaxed).oldValue
        var firstReady: Subchannel?
        var firstUsable: Subchannel?
        for i in 0..<n {
            let sub = subchannels[(start &+ i) % n]
            switch sub.readiness() {
            case .ready:
                if firstReady == nil { firstReady = sub }
            case .connectable:
                sub.warmUp()
                if firstUsable == nil { firstUsable = sub }
            case .connecting:
                if firstUsable == nil { firstUsable = sub }
            case .backingOff:
                break
            }
        }
        return firstReady ?? firstUsable ?? subchannels[start % n]
    }

    /// Closes every connection; calls in flight fail with UNAVAILABLE.
    public func close() async {
        for sub in subchannels {
            await sub.close()
        }
    }
}

/// A live connection and the handle to start calls on it.
final class ClientConnection: Sendable {
    final class SharedState: Sendable {
        private let draining = Atomic<Bool>(false)
        private let closed = Atomic<Bool>(false)
        private let suspect = Atomic<Bool>(false)
        private let heard = Atomic<Bool>(false)
        var isDraining: Bool { draining.load(ordering: .relaxed) }
        var isClosed: Bool { closed.load(ordering: .relaxed) }
        /// A call's deadline passed without a byte from the server: the link may be cut.
        /// New calls go to other addresses until a PING is answered (or the connection closes).
        var isSuspect: Bool { suspect.load(ordering: .relaxed) }
        func markDraining() { draining.store(true, ordering: .relaxed) }
        func markClosed() { closed.store(true, ordering: .relaxed) }
        func markSuspect(_ value: Bool) { suspect.store(value, ordering: .relaxed) }
        /// The server has sent something (its SETTINGS): the connection is known to work, not
        /// just accepted by a kernel whose process or link may be gone.
        var hasHeard: Bool { heard.load(ordering: .relaxed) }
        func markHeard() { heard.store(true, ordering: .relaxed) }
    }

    let channel: Channel
    let handler: NIOLoopBound<ClientConnectionHandler>
    let state: SharedState

    init(channel: Channel, handler: NIOLoopBound<ClientConnectionHandler>, state: SharedState) {
        self.channel = channel
        self.handler = handler
        self.state = state
    }

    var isUsable: Bool { !state.isDraining && !state.isClosed }

    func call(_ request: ClientRequest, callID: UInt64) async throws -> ByteBuffer {
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: ByteBuffer.self)
        let handler = self.handler
        loop.execute {
            handler.value.start(request, callID: callID, promise: promise)
        }
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            loop.execute {
                handler.value.abort(callID: callID, error: .cancelled("call cancelled by the caller"))
            }
        }
    }
}

extension ClientConnection {
    func openStream(_ head: ClientStreamHead, callID: UInt64, maxMessageBytes: Int) async throws -> RPCClientStream {
        let loop = channel.eventLoop
        let handler = self.handler
        let responses = RPCMessageQueue<ClientConnectionHandler.ResponseMessage>(capacity: 1024) { message in
            let taken = message.wireBytes
            loop.execute { handler.value.responseTaken(callID, bytes: taken) }
        }
        let headers = loop.makePromise(of: Metadata.self)
        let trailers = ResponseTrailers()
        try await loop.submit {
            let call = ClientConnectionHandler.StreamCall(
                callID: callID, path: head.method.path, responses: responses, headers: headers, trailers: trailers, maxMessageBytes: maxMessageBytes
            )
            do {
                try handler.value.startStream(head, call)
            } catch {
                headers.fail(error)
                throw error
            }
        }.get()
        return RPCClientStream(
            requests: RPCWriter { (message: ByteBuffer) throws(RPCError) in
                do throws(RPCError) {
                    try await Self.write(message, callID: callID, handler: handler, loop: loop)
                } catch {
                    // A write after the call ended says how it ended (its status), not just that it did.
                    throw responses.endError ?? error
                }
            },
            finishRequests: {
                loop.execute { handler.value.finishRequests(callID) }
            },
            // A caller cancelled while waiting gets CANCELLED here; `streaming` then resets the stream.
            responses: RPCMessageStream { () throws(RPCError) in try await responses.next()?.bytes },
            initialMetadata: { () throws(RPCError) in
                do {
                    return try await headers.futureResult.get()
                } catch let error as RPCError {
                    throw error
                } catch {
                    throw .unavailable("\(error)")
                }
            },
            trailingMetadata: { trailers.get() },
            cancel: {
                loop.execute { handler.value.abortStream(callID, .cancelled("call cancelled by the caller")) }
            }
        )
    }

    private static func write(_ message: ByteBuffer, callID: UInt64, handler: NIOLoopBound<ClientConnectionHandler>, loop: any EventLoop) async throws(RPCError) {
        try await StreamOutbound.write(on: loop) {
            handler.value.enqueueRequest(callID, message)
        } wait: { continuation in
            handler.value.waitForRoom(callID, continuation)
        }
    }
}

/// One address: connects on first use, reconnects after a close, backs off after failures.
final class Subchannel: Sendable {
    private enum State {
        case idle
        case connecting(EventLoopFuture<ClientConnection>)
        case ready(ClientConnection)
        case backoff(until: NIODeadline, failures: Int, reason: String)
        case closed
    }

    let host: String
    let port: Int
    let authority: String
    let config: HTTP2Channel.Config
    let group: any EventLoopGroup
    private let state = Mutex<State>(.idle)

    init(host: String, port: Int, authority: String, config: HTTP2Channel.Config, group: any EventLoopGroup) {
        self.host = host
        self.port = port
        self.authority = authority
        self.config = config
        self.group = group
    }

    enum Readiness {
        case ready, connecting, connectable, backingOff
    }

    func readiness() -> Readiness {
        state.withLock { s in
            switch s {
            case .ready(let c):
                if !c.isUsable { .connectable } else if c.state.isSuspect { .backingOff } else { c.state.hasHeard ? .ready : .connecting }
            case .connecting: .connecting
            case .idle: .connectable
            case .closed: .backingOff
            case .backoff(let until, _, _): NIODeadline.now() < until ? .backingOff : .connectable
            }
        }
    }

    /// Starts connecting if nothing is under way, without waiting.
    func warmUp() {
        Task { _ = try? await self.connection() }
    }

    func connection() async throws -> ClientConnection {
        let step: Result<EventLoopFuture<ClientConnection>, CallNotSent> = state.withLock { s in
            switch s {
            case .ready(let c) where c.isUsable:
                return .success(c.channel.eventLoop.makeSucceededFuture(c))
            case .connecting(let f):
                return .success(f)
            case .backoff(let until, _, let reason) where NIODeadline.now() < until:
                return .failure(CallNotSent(error: .unavailable("\(authority) is unreachable (\(reason)); retrying shortly")))
            case .closed:
                return .failure(CallNotSent(error: .unavailable("the channel to \(authority) is closed")))
            default:
                var failures = 0
                if case .backoff(_, let f, _) = s { failures = f }
                let future = connect(failures: failures)
                s = .connecting(future)
                return .success(future)
            }
        }
        return try await step.get().get()
    }

    private func connect(failures: Int) -> EventLoopFuture<ClientConnection> {
        let authority = self.authority
        let maxMessageBytes = config.maxMessageBytes
        let silenceTimeout = config.silenceTimeout
        let keepalive = config.keepaliveInterval.map { ClientConnectionHandler.Keepalive(interval: $0, timeout: config.keepaliveTimeout, withoutCalls: config.keepaliveWithoutCalls) }
        let shared = ClientConnection.SharedState()
        let tls = config.tls
        let host = self.host
        let future = ClientBootstrap(group: group)
            .connectTimeout(config.connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(MeshTLS.clientHandler(tls, host: host))
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        ClientConnectionHandler(
                            authority: authority, scheme: tls == nil ? "http" : "https", maxMessageBytes: maxMessageBytes,
                            silenceTimeout: silenceTimeout, keepalive: keepalive, state: shared
                        )
                    )
                }
            }
            .connect(host: host, port: port)
            .flatMap { channel in
                channel.pipeline.handler(type: ClientConnectionHandler.self).map { handler in
                    ClientConnection(channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop), state: shared)
                }
            }
        future.whenComplete { result in
            let closedMeanwhile = self.state.withLock { s -> Bool in
                if case .closed = s { return true }
                switch result {
                case .success(let connection):
                    s = .ready(connection)
                case .failure(let error):
                    let backoff = min(self.config.initialBackoff.nanoseconds << min(failures, 16), self.config.maxBackoff.nanoseconds)
                    s = .backoff(until: .now() + .nanoseconds(backoff), failures: failures + 1, reason: "\(error)")
                }
                return false
            }
            if case .success(let connection) = result, closedMeanwhile {
                // close() ran while this connection was being made.
                connection.channel.close(promise: nil)
                return
            }
            if case .success(let connection) = result {
                connection.channel.closeFuture.whenComplete { _ in
                    self.state.withLock { s in
                        if case .ready(let c) = s, c === connection { s = .idle }
                    }
                }
            }
        }
        return future.flatMapErrorThrowing { error in
            throw CallNotSent(error: .unavailable("cannot connect to \(authority): \(error)"))
        }
    }

    /// Closes the connection; one still being made is closed when it completes. Later calls are UNAVAILABLE.
    func close() async {
        let channel: Channel? = state.withLock { s in
            defer { s = .closed }
            if case .ready(let c) = s { return c.channel }
            return nil
        }
        try? await channel?.close()
    }
}
