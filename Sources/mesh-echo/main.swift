import ArgumentParser
import ChatMeshAPI
import Foundation
import Logging
import MeshEcho
import MeshHTTP2
import MeshHealth
import MeshProcess
import MeshReflection
import MeshRPC

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

    @Option(help: "Connections served at once (default 4096; CHATMESH_MAX_CONNECTIONS, when set, wins).")
    var maxConnections: Int?

    @Option(help: "Connections one host may hold (default a quarter of the maximum; CHATMESH_MAX_CONNECTIONS_PER_PEER, when set, wins).")
    var maxConnectionsPerPeer: Int?

    func serve() async throws {
        let env = MeshEnvironment()
        let logger = Logger(label: "mesh-echo")
        var downstream: EchoService.Client?
        if let relayTo {
            downstream = EchoService.Client(channel: try HTTP2Channel(addresses: relayTo))
        }
        var config = try GRPCServer.Config(listen: listen ?? env.values["CHATMESH_LISTEN"] ?? "127.0.0.1:50099")
        config.maxMessageBytes = maxMessageBytes
        if let maxConnections { config.maxConnections = maxConnections }
        if let maxConnectionsPerPeer { config.maxConnectionsPerPeer = maxConnectionsPerPeer }
        try await MeshProcess.serve(
            name: "mesh-echo", config: config,
            services: ReflectionService.adding(to: [EchoHandler(downstream: downstream), HealthService(services: [EchoService.name])]),
            env: env, logger: logger
        )
    }
}

MeshProcess.bootstrap()
do {
    let command = try MeshEchoCommand.parse()
    try await command.serve()
} catch {
    MeshEchoCommand.exit(withError: error)
}
