import Foundation
import Logging
import MeshHTTP2
import MeshMetrics
import MeshPrometheus
import MeshRPC
import MeshTracing
import NIOCore
import NIOPosix
import OTel
import Prometheus
import ServiceLifecycle
import Synchronization

/// What every ChatMesh executable does around its handlers: logging from
/// LOG_LEVEL, handlers on the event loops, serve until SIGTERM, then drain.
public enum MeshProcess {
    /// Call first in `main`, before any task or logger exists.
    public static func bootstrap(_ env: MeshEnvironment = MeshEnvironment()) {
        // CHATMESH_EVENT_LOOPS: how many threads serve connections (default: one per core).
        if let loops = env.eventLoops {
            NIOSingletons.groupLoopCountSuggestion = loops
        }
        // Handlers run on the event loops themselves: a request's Task and its
        // connection then share a thread instead of handing work across two pools.
        _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        if env.metricsListen != nil {
            registry.withLock { $0 = PrometheusMetrics.bootstrap() }
            ProcessMetrics.enable()
        }
        let level = Logger.Level(rawValue: env.logLevel) ?? .info
        // A line logged inside a traced call carries its trace_id and span_id.
        let traceIDs = OTel.makeLoggingMetadataProvider()
        LoggingSystem.bootstrap({ label, provider in
            var handler = StreamLogHandler.standardError(label: label, metadataProvider: provider)
            handler.logLevel = level
            return handler
        }, metadataProvider: traceIDs)
        if Self.tracesExported(env) {
            do {
                var configuration = OTel.Configuration.default
                configuration.serviceName = env.values["OTEL_SERVICE_NAME"] ?? executableName
                configuration.logs.enabled = false
                configuration.metrics.enabled = false
                configuration.traces.enabled = true
                configuration.traces.exporter = .otlp
                configuration.traces.otlpExporter.protocol = .httpProtobuf
                configuration.diagnosticLogger = .custom(Logger(label: "otel"))
                configuration.diagnosticLogLevel = .warning
                // RPCTracing's sampler decides (before a span exists, TraceSampler); the tracer records what it is given.
                configuration.traces.sampler = .alwaysOn
                let environment = env.values.filter { !$0.key.hasPrefix("OTEL_TRACES_SAMPLER") }
                let exporter = try OTel.bootstrap(configuration: configuration, environment: environment)
                tracing.withLock { $0 = exporter }
                RPCTracing.enable(sampler: TraceSampler(environment: env.values), logger: Logger(label: executableName))
            } catch {
                Logger(label: "otel").error("traces are not exported", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Traces go out over OTLP/HTTP when an endpoint is configured, as OpenTelemetry's environment
    /// names it (OTEL_EXPORTER_OTLP_ENDPOINT or _TRACES_ENDPOINT), unless OTEL_TRACES_EXPORTER is
    /// "none" or OTEL_SDK_DISABLED is true; OTEL_TRACES_SAMPLER/_ARG choose what is sampled.
    static func tracesExported(_ env: MeshEnvironment) -> Bool {
        let endpoint = env.values["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] ?? env.values["OTEL_EXPORTER_OTLP_ENDPOINT"] ?? ""
        return !endpoint.isEmpty && env.values["OTEL_TRACES_EXPORTER"] != "none" && env.values["OTEL_SDK_DISABLED"]?.lowercased() != "true"
    }

    /// What this process is called in traces when OTEL_SERVICE_NAME does not say.
    static var executableName: String {
        CommandLine.arguments.first.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "chatmesh"
    }

    /// The span exporter `bootstrap` started, run with the service (it flushes at shutdown).
    private static let tracing = Mutex<(any Service)?>(nil)

    /// Set by `bootstrap` when CHATMESH_METRICS_LISTEN is set.
    private static let registry = Mutex<PrometheusCollectorRegistry?>(nil)

    /// Work a service repeats while it runs (a retention purge, an outbox drain).
    public struct PeriodicJob: Sendable {
        public let name: String
        public let every: Duration
        /// A round that may run for minutes (a broadcast) is cancelled at shutdown, and must stop
        /// cleanly when it is; any other round is waited for.
        public let cancelledAtShutdown: Bool
        public let run: @Sendable () async throws -> Void

        public init(name: String, every: Duration, cancelledAtShutdown: Bool = false, run: @escaping @Sendable () async throws -> Void) {
            self.name = name
            self.every = every
            self.cancelledAtShutdown = cancelledAtShutdown
            self.run = run
        }
    }

    /// Work that runs for the whole life of the service (an outbox dispatcher) and
    /// returns when its task is cancelled at shutdown.
    public struct Worker: Sendable {
        public let name: String
        public let run: @Sendable () async -> Void

        public init(name: String, run: @escaping @Sendable () async -> Void) {
            self.name = name
            self.run = run
        }
    }

    /// Serves `services` (plus health) on `config` until SIGTERM or SIGINT, running `jobs` and `workers` meanwhile.
    /// Prints "listening on host:port" once bound: tests and scripts read that line to find the port. With metrics
    /// on, /metrics is served on CHATMESH_METRICS_LISTEN ("metrics on host:port" is printed first), `collectors`
    /// running before each scrape.
    public static func serve(
        name: String, config: GRPCServer.Config, services: [any RPCService], env: MeshEnvironment = MeshEnvironment(),
        jobs: [PeriodicJob] = [], workers: [Worker] = [], collectors: [MetricsCollector] = [], logger: Logger
    ) async throws {
        if env.usesDevelopmentAuthKey {
            logger.warning("CHATMESH_AUTH_KEY is not set: using the local development key")
        }
        let router = RPCRouter(services: services, verifier: TokenVerifier(key: env.authKey))
        var config = config
        config.apply(env)
        if config.tls == nil { config.tls = try MeshTLS.server(env) }
        var announcement = ""
        var members: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let registry = registry.withLock({ $0 }), let listen = env.metricsListen {
            let metrics = ServerMetrics()
            config.metrics = metrics
            let address = try HostPort(listen)
            let endpoint = MetricsEndpoint(
                host: address.host.isEmpty ? "0.0.0.0" : address.host, port: address.port, registry: registry,
                collectors: [metrics.transport.collector] + collectors, logger: logger
            )
            let bound = try await endpoint.start()
            announcement += "metrics on \(bound.ipAddress ?? address.host):\(bound.port ?? 0)\n"
            members.append(.init(service: WorkerService(worker: Worker(name: "metrics") { try? await endpoint.run() })))
        }
        let server = GRPCServer(config: config, router: router, logger: logger)
        let address = try await server.start()
        members.insert(.init(service: server), at: 0)
        if let exporter = tracing.withLock({ $0 }) {
            // First, so that it stops last: the spans of the calls drained at shutdown are exported too.
            members.insert(.init(service: exporter), at: 0)
        }
        for job in jobs {
            members.append(.init(service: JobService(job: job, logger: logger)))
        }
        for worker in workers {
            members.append(.init(service: WorkerService(worker: worker)))
        }
        // Announced from inside the group, whose signal handlers are installed before any member runs: a
        // SIGTERM sent as soon as the line appears drains the service instead of killing it (found by the hunt).
        announcement += "listening on \(address.ipAddress ?? config.host):\(address.port ?? 0)\n"
        members.append(.init(service: Announcement(line: announcement)))
        let group = ServiceGroup(
            configuration: .init(services: members, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        try await group.run()
        logger.info("\(name) stopped")
    }

    /// Prints the line tests and scripts wait for, then lives until shutdown (a member that returns ends the group).
    struct Announcement: Service {
        let line: String

        func run() async throws {
            FileHandle.standardOutput.write(Data(line.utf8))
            try? await gracefulShutdown()
        }
    }

    struct JobService: Service {
        let job: PeriodicJob
        let logger: Logger

        func run() async throws {
            // Ends with graceful shutdown; a failed round is logged and tried again next time.
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                do {
                    if job.cancelledAtShutdown {
                        try await cancelWhenGracefulShutdown { try await job.run() }
                    } else {
                        try await job.run()
                    }
                } catch is CancellationError where Task.isShuttingDownGracefully {
                    // The round was stopped by the shutdown, as asked: not a failure.
                } catch {
                    logger.error("periodic job failed", metadata: ["job": "\(job.name)", "error": "\(error)"])
                }
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: job.every) }
            }
        }
    }

    struct WorkerService: Service {
        let worker: Worker

        func run() async throws {
            await cancelWhenGracefulShutdown { await worker.run() }
        }
    }
}
