import ArgumentParser
import ChatMeshAPI
import Foundation
import Logging
import MeshEcho
import MeshHTTP2
import MeshHealth
import MeshRPC
import NIOCore
import NIOPosix
import ServiceLifecycle

/// A gRPC server of chatmesh.testing.v1.EchoService and grpc.health.v1.Health:
/// what interop tests, h2load benchmarks and smoke checks call.
struct MeshEchoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesh-echo",
        abstract: "Serve chatmesh.testing.v1.EchoService (and health) over gRPC/h2c."
    )

    @Option(help: "host:port to listen on (port 0 picks one). Default: CHATMESH_LISTEN or 127.0.0.1:50099.")
    var listen: String?

    @Option(help: "Comma-separated host:port of a downstream echo server for Relay.")
    var relayTo: String?

    @Option(help: "Largest message accepted or sent, in bytes.")
    var maxMessageBytes: Int = GRPCFraming.defaultMaxMessageBytes

    @Option(help: "Connections served at once; more are closed as they arrive.")
    var maxConnections: Int = 4096

    func serve() async throws {
        let env = MeshEnvironment()
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: env.logLevel) ?? .info
            return handler
        }
        let logger = Logger(label: "mesh-echo")
        if env.usesDevelopmentAuthKey {
            logger.warning("CHATMESH_AUTH_KEY is not set: using the local development key")
        }
        var downstream: EchoService.Client?
        if let relayTo {
            downstream = EchoService.Client(channel: try HTTP2Channel(addresses: relayTo))
        }
        var config = try GRPCServer.Config(listen: listen ?? env.values["CHATMESH_LISTEN"] ?? "127.0.0.1:50099")
        config.maxMessageBytes = maxMessageBytes
        config.maxConnections = maxConnections
        let health = HealthService(services: [EchoService.name])
        let router = RPCRouter(
            services: [EchoHandler(downstream: downstream), health],
            verifier: TokenVerifier(key: env.authKey)
        )
        let server = GRPCServer(config: config, router: router, logger: logger)
        let address = try await server.start()
        // Tests and scripts read this line to find the port.
        FileHandle.standardOutput.write(Data("listening on \(address.ipAddress ?? config.host):\(address.port ?? 0)\n".utf8))
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: server)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        try await group.run()
        logger.info("stopped")
    }
}

// CHATMESH_EVENT_LOOPS: how many threads serve connections (default: one per core).
if let loops = MeshEnvironment().eventLoops {
    NIOSingletons.groupLoopCountSuggestion = loops
}
// Handlers run on the event loops themselves: a request's Task and its
// connection then share a thread instead of handing work across two pools.
_ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
do {
    let command = try MeshEchoCommand.parse()
    try await command.serve()
} catch {
    MeshEchoCommand.exit(withError: error)
}
