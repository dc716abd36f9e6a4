import Foundation
import Logging
import MeshHTTP2
import MeshRPC
import NIOCore
import NIOPosix
import ServiceLifecycle

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
        let level = Logger.Level(rawValue: env.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }

    /// Work a service repeats while it runs (a retention purge, an outbox drain).
    public struct PeriodicJob: Sendable {
        public let name: String
        public let every: Duration
        public let run: @Sendable () async throws -> Void

        public init(name: String, every: Duration, run: @escaping @Sendable () async throws -> Void) {
            self.name = name
            self.every = every
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
    /// Prints "listening on host:port" once bound: tests and scripts read that line to find the port.
    public static func serve(
        name: String, config: GRPCServer.Config, services: [any RPCService], env: MeshEnvironment = MeshEnvironment(),
        jobs: [PeriodicJob] = [], workers: [Worker] = [], logger: Logger
    ) async throws {
        if env.usesDevelopmentAuthKey {
            logger.warning("CHATMESH_AUTH_KEY is not set: using the local development key")
        }
        let router = RPCRouter(services: services, verifier: TokenVerifier(key: env.authKey))
        var config = config
        config.apply(env)
        let server = GRPCServer(config: config, router: router, logger: logger)
        let address = try await server.start()
        var members: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: server)]
        for job in jobs {
            members.append(.init(service: JobService(job: job, logger: logger)))
        }
        for worker in workers {
            members.append(.init(service: WorkerService(worker: worker)))
        }
        // Announced from inside the group, whose signal handlers are installed before any member runs: a
        // SIGTERM sent as soon as the line appears drains the service instead of killing it (found by the hunt).
        members.append(.init(service: Announcement(line: "listening on \(address.ipAddress ?? config.host):\(address.port ?? 0)\n")))
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
                    try await job.run()
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
