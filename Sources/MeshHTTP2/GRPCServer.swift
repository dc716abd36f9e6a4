import Logging
import MeshMetrics
import MeshRPC
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The listen address is taken; the message names what holds it (`PortHolder`).
public struct AddressInUse: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// A gRPC server over h2c (prior knowledge): binds, serves the router's
/// routes, and on shutdown stops accepting, sends GOAWAY on every connection,
/// lets in-flight calls finish, then returns.
public final class GRPCServer: Service, Sendable {
    /// Where and how the server listens: limits, keepalive and connection ageing (README, The runtime).
    public struct Config: Sendable {
        public var host: String
        /// 0 picks a free port (see `localAddress` after `start()`).
        public var port: Int
        public var maxMessageBytes = GRPCFraming.defaultMaxMessageBytes
        public var maxConcurrentStreams: UInt32 = 256
        public var maxHeaderListBytes = 16 * 1024
        public var streamWindowBytes = 1 << 20
        public var connectionWindowBytes = 16 << 20
        /// Request bytes one connection may hold before its window stops opening.
        public var connectionBufferBudget = 32 << 20
        /// How long in-flight calls get to finish after SIGTERM before connections are closed.
        public var shutdownGracePeriod: TimeAmount = .seconds(30)
        /// Connections served at once (CHATMESH_MAX_CONNECTIONS). When full, a new connection takes
        /// the place of the oldest one that has not completed its handshake; with none such it is
        /// closed as it arrives, so a flood of connections cannot exhaust descriptors.
        public var maxConnections = 4096
        /// Connections one host (IP address) may hold (CHATMESH_MAX_CONNECTIONS_PER_PEER; nil: a
        /// quarter of `maxConnections`), so one attacker cannot take every slot.
        public var maxConnectionsPerPeer: Int?
        /// The client's preface and SETTINGS must arrive within this of the accept, and a request's
        /// header block within this of its first frame; otherwise GOAWAY and close (slowloris).
        /// CHATMESH_HANDSHAKE_TIMEOUT_S.
        public var handshakeTimeout: TimeAmount = .seconds(10)
        /// A connection whose answers wait on the client's shut flow-control window with nothing
        /// sent for this long is closed (a zero-window peer). nil: never. CHATMESH_SEND_STALL_TIMEOUT_S
        /// (0 or "off": never).
        public var sendStallTimeout: TimeAmount? = .seconds(60)
        /// A client's PINGs closer together than this are strikes; past `maxPingStrikes` of them
        /// the connection gets GOAWAY ENHANCE_YOUR_CALM ("too_many_pings"), as gRPC servers answer.
        /// CHATMESH_KEEPALIVE_MIN_PING_INTERVAL_S.
        public var minPingInterval: TimeAmount = .seconds(10)
        public var maxPingStrikes = 2
        /// A connection without a call for this long is closed gracefully (GOAWAY). nil: never.
        /// CHATMESH_MAX_CONNECTION_IDLE_S (0 or "off": never).
        public var maxConnectionIdle: TimeAmount? = .minutes(5)
        /// A connection older than this (±10 %) is drained: GOAWAY, its calls finish, the client
        /// reconnects, so load spreads again when replicas are added. nil: never.
        /// CHATMESH_MAX_CONNECTION_AGE_S (0 or "off": never).
        public var maxConnectionAge: TimeAmount? = .minutes(30)
        /// How long a drained-for-age connection's calls get before it is closed.
        /// CHATMESH_MAX_CONNECTION_AGE_GRACE_S.
        public var maxConnectionAgeGrace: TimeAmount = .seconds(30)
        /// TLS with ALPN h2 (nil: h2c). MeshProcess sets it from CHATMESH_TLS_CERT/_KEY/_CLIENT_CA (`MeshTLS`).
        public var tls: NIOSSLContext?
        /// The gRPC and transport series this server counts into (nil: none; MeshProcess sets them
        /// when CHATMESH_METRICS_LISTEN is set).
        public var metrics: ServerMetrics?

        public init(host: String = "127.0.0.1", port: Int = 0) {
            self.host = host
            self.port = port
        }

        /// The keepalive and connection-ageing settings the environment gives.
        public mutating func apply(_ env: MeshEnvironment) {
            func amount(_ seconds: Double) -> TimeAmount { .nanoseconds(Int64(seconds * 1e9)) }
            if let n = env.positiveInteger("CHATMESH_MAX_CONNECTIONS") { maxConnections = n }
            if let n = env.positiveInteger("CHATMESH_MAX_CONNECTIONS_PER_PEER") { maxConnectionsPerPeer = n }
            if case .seconds(let s) = env.seconds("CHATMESH_HANDSHAKE_TIMEOUT_S"), s > 0 { handshakeTimeout = amount(s) }
            switch env.seconds("CHATMESH_SEND_STALL_TIMEOUT_S") {
            case .off: sendStallTimeout = nil
            case .seconds(let s): sendStallTimeout = amount(s)
            case .unset: break
            }
            if case .seconds(let s) = env.seconds("CHATMESH_KEEPALIVE_MIN_PING_INTERVAL_S") { minPingInterval = amount(s) }
            switch env.seconds("CHATMESH_MAX_CONNECTION_IDLE_S") {
            case .off: maxConnectionIdle = nil
            case .seconds(let s): maxConnectionIdle = amount(s)
            case .unset: break
            }
            switch env.seconds("CHATMESH_MAX_CONNECTION_AGE_S") {
            case .off: maxConnectionAge = nil
            case .seconds(let s): maxConnectionAge = amount(s)
            case .unset: break
            }
            if case .seconds(let s) = env.seconds("CHATMESH_MAX_CONNECTION_AGE_GRACE_S") { maxConnectionAgeGrace = amount(s) }
        }

        /// "host:port", as in CHATMESH_LISTEN.
        public init(listen: String) throws(ConfigurationError) {
            let address = try HostPort(listen)
            self.init(host: address.host.isEmpty ? "0.0.0.0" : address.host, port: address.port)
        }
    }

    private struct State {
        var listener: Channel?
        var connections: [ObjectIdentifier: (channel: Channel, record: ConnectionRecord)] = [:]
        var perPeer: [String: Int] = [:]
        var shuttingDown = false
        var accepted = 0

        /// Room for a connection from `host`: made by letting go the oldest connection (of that
        /// host, when it is the host's share that is full) that has not completed its handshake.
        /// nil: no room; else the connection to close, if one must go.
        mutating func makeRoom(for host: String, maxConnections: Int, maxPerPeer: Int) -> (admit: Bool, evict: Channel?) {
            let hostFull = perPeer[host, default: 0] >= maxPerPeer
            guard hostFull || connections.count >= maxConnections else { return (true, nil) }
            var victim: (id: ObjectIdentifier, channel: Channel, record: ConnectionRecord)?
            for (id, entry) in connections where !entry.record.handshaken && (!hostFull || entry.record.peerHost == host) {
                if victim == nil || entry.record.openedAt < victim!.record.openedAt { victim = (id, entry.channel, entry.record) }
            }
            guard let victim else { return (false, nil) }
            forget(victim.id)
            return (true, victim.channel)
        }

        /// Takes a connection out, and out of its host's count; false if it was taken out already.
        @discardableResult
        mutating func forget(_ id: ObjectIdentifier) -> Bool {
            guard let entry = connections.removeValue(forKey: id) else { return false }
            let host = entry.record.peerHost
            perPeer[host, default: 1] -= 1
            if perPeer[host] == 0 { perPeer.removeValue(forKey: host) }
            return true
        }
    }

    /// Connections accepted since the server started (those refused past `maxConnections` not counted).
    public var connectionsAccepted: Int { state.withLock { $0.accepted } }
    /// Connections open now.
    public var openConnections: Int { state.withLock { $0.connections.count } }

    public let config: Config
    private let router: RPCRouter
    private let logger: Logger
    private let group: any EventLoopGroup
    private let state = Mutex(State())

    public init(config: Config, router: RPCRouter, logger: Logger = Logger(label: "chatmesh.server"), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.config = config
        self.router = router
        self.logger = logger
        self.group = group
    }

    /// Binds and starts accepting; returns the bound address.
    @discardableResult
    public func start() async throws -> SocketAddress {
        let router = self.router
        let config = self.config
        let logger = self.logger
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 64 * 1024, high: 256 * 1024))
            .childChannelInitializer { [weak self] channel in
                guard let self else { return channel.close() }
                return channel.eventLoop.makeCompletedFuture {
                    let record = ConnectionRecord(peerHost: channel.remoteAddress?.ipAddress ?? "")
                    guard self.track(channel, record) else { return }
                    if let tls = config.tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    try channel.pipeline.syncOperations.addHandler(ServerConnectionHandler(router: router, config: config, logger: logger, record: record))
                }
            }
        let listener: Channel
        do {
            listener = try await bootstrap.bind(host: config.host, port: config.port).get()
        } catch let error as IOError where error.errnoCode == EADDRINUSE && config.port != 0 {
            throw AddressInUse(message: PortHolder.explain(host: config.host, port: config.port))
        }
        state.withLock { $0.listener = listener }
        logger.info("serving gRPC", metadata: ["address": "\(listener.localAddress?.description ?? "?")"])
        return listener.localAddress!
    }

    public var localAddress: SocketAddress? {
        state.withLock { $0.listener?.localAddress }
    }

    /// Admits a new connection (making room if it must) or closes it.
    private func track(_ channel: Channel, _ record: ConnectionRecord) -> Bool {
        let id = ObjectIdentifier(channel)
        let maxConnections = config.maxConnections
        let maxPerPeer = config.maxConnectionsPerPeer ?? max(1, maxConnections / 4)
        let (admitted, evicted) = state.withLock { s -> (Bool, Channel?) in
            if s.shuttingDown { return (false, nil) }
            let room = s.makeRoom(for: record.peerHost, maxConnections: maxConnections, maxPerPeer: maxPerPeer)
            guard room.admit else { return (false, nil) }
            s.connections[id] = (channel, record)
            s.perPeer[record.peerHost, default: 0] += 1
            s.accepted += 1
            return (true, room.evict)
        }
        if let evicted {
            logger.debug("closing a connection that has not completed its handshake to make room", metadata: ["peer": "\(evicted.remoteAddress?.description ?? "?")"])
            config.metrics?.transport.connectionsEvicted.increment()
            evicted.close(promise: nil)
        }
        if !admitted {
            config.metrics?.transport.connectionsRefused.increment()
            logger.warning("refusing a connection", metadata: ["peer": "\(channel.remoteAddress?.description ?? "?")", "limit": "\(maxConnections)", "per_peer": "\(maxPerPeer)"])
            channel.close(promise: nil)
            return false
        }
        if let transport = config.metrics?.transport {
            transport.connectionsAccepted.increment()
            transport.connections.add(1, ordering: .relaxed)
            channel.closeFuture.whenComplete { _ in transport.connections.subtract(1, ordering: .relaxed) }
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            // An evicted connection was forgotten when it was chosen.
            _ = self?.state.withLock { $0.forget(id) }
        }
        return true
    }

    /// Stops accepting, sends GOAWAY, waits for in-flight calls (up to the grace period), closes.
    public func shutdownGracefully() async {
        let (listener, connections, first) = state.withLock { s -> (Channel?, [Channel], Bool) in
            defer { s.shuttingDown = true }
            return (s.listener, s.connections.values.map(\.channel), !s.shuttingDown)
        }
        if first {
            logger.info("shutting down", metadata: ["connections": "\(connections.count)"])
        }
        try? await listener?.close()
        if first {
            for service in router.drainingServices {
                await service.beginDraining()
            }
        }
        for channel in connections {
            channel.triggerUserOutboundEvent(GracefulDrainEvent(), promise: nil)
        }
        let deadline = NIODeadline.now() + config.shutdownGracePeriod
        for channel in connections {
            let remaining = deadline - .now()
            let closed = channel.eventLoop.makePromise(of: Void.self)
            channel.closeFuture.cascade(to: closed)
            let timer = channel.eventLoop.scheduleTask(in: max(remaining, .zero)) {
                channel.close(promise: nil)
            }
            try? await closed.futureResult.get()
            timer.cancel()
        }
    }

    /// ServiceLifecycle: serve until graceful shutdown (SIGTERM), then drain.
    public func run() async throws {
        if localAddress == nil {
            try await start()
        }
        let listener = state.withLock { $0.listener }
        try await withGracefulShutdownHandler {
            try await listener?.closeFuture.get()
        } onGracefulShutdown: {
            Task { await self.shutdownGracefully() }
        }
        await shutdownGracefully()
    }
}
