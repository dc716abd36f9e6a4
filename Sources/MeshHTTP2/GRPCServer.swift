import Logging
import MeshMetrics
import MeshRPC
import NIOCore
import NIOPosix
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
        /// Connections beyond this are closed as they arrive: a flood of idle connections cannot exhaust descriptors.
        public var maxConnections = 4096
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
        var connections: [ObjectIdentifier: Channel] = [:]
        var shuttingDown = false
        var accepted = 0
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
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 64 * 1024, high: 256 * 1024))
            .childChannelInitializer { [weak self] channel in
                guard let self else { return channel.close() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ServerConnectionHandler(router: router, config: config, logger: logger))
                    self.track(channel)
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

    private func track(_ channel: Channel) {
        let id = ObjectIdentifier(channel)
        let maxConnections = config.maxConnections
        let admitted = state.withLock { s -> Bool in
            if s.shuttingDown || s.connections.count >= maxConnections { return false }
            s.connections[id] = channel
            s.accepted += 1
            return true
        }
        if !admitted {
            config.metrics?.transport.connectionsRefused.increment()
            logger.warning("refusing a connection", metadata: ["peer": "\(channel.remoteAddress?.description ?? "?")", "limit": "\(maxConnections)"])
            channel.close(promise: nil)
            return
        }
        if let transport = config.metrics?.transport {
            transport.connectionsAccepted.increment()
            transport.connections.add(1, ordering: .relaxed)
            channel.closeFuture.whenComplete { _ in transport.connections.subtract(1, ordering: .relaxed) }
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.state.withLock { $0.connections.removeValue(forKey: id) }
        }
    }

    /// Stops accepting, sends GOAWAY, waits for in-flight calls (up to the grace period), closes.
    public func shutdownGracefully() async {
        let (listener, connections, first) = state.withLock { s -> (Channel?, [Channel], Bool) in
            defer { s.shuttingDown = true }
            return (s.listener, Array(s.connections.values), !s.shuttingDown)
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
