import ArgumentParser
import ChatMeshAPI
import Logging
import MeshHTTP2
import MeshHealth
import MeshProcess
import MeshReflection
import MeshInterop
import MeshRPC

/// grpc's interop server (`grpc.testing.TestService`, plus health) on ChatMesh's runtime,
/// as grpc's own interop servers are run: plaintext, on every interface, on the port given.
struct InteropServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "interop-server",
        abstract: "Serve grpc.testing.TestService over gRPC/h2c (plaintext) for grpc's interop clients."
    )

    @Option(help: "Port to listen on, on all interfaces (0 picks one).")
    var port: Int = 10000

    @Option(help: "Address to listen on.")
    var host: String = "0.0.0.0"

    func serve() async throws {
        let logger = Logger(label: "interop-server")
        let config = GRPCServer.Config(host: host, port: port)
        try await MeshProcess.serve(
            name: "interop-server", config: config,
            services: ReflectionService.adding(to: [InteropTestHandler(), HealthService(services: [InteropTestService.name])]),
            logger: logger
        )
    }
}

MeshProcess.bootstrap()
do {
    let command = try InteropServerCommand.parse()
    try await command.serve()
} catch {
    InteropServerCommand.exit(withError: error)
}
