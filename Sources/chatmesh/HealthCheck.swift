import ArgumentParser
import ChatMeshAPI
import Foundation
import MeshHTTP2
import MeshRPC

/// `chatmesh health`: grpc.health.v1.Health/Check, for container health checks
/// (docker-compose.yml) and operators. Exit 0 when SERVING, 1 otherwise.
struct HealthCheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Ask a ChatMesh server's gRPC health service; exit 0 when it is SERVING."
    )

    @Option(help: "The server's host:port.")
    var target: String

    @Option(help: "One served service by its full name (default: the server as a whole).")
    var service: String = ""

    @Option(help: "Seconds to wait for the answer.")
    var timeout: Int = 2

    func run() async throws {
        let channel = try HTTP2Channel(addresses: target)
        let client = Health.Client(channel: channel, defaultOptions: CallOptions(timeout: .seconds(Int64(max(1, timeout)))))
        let answer = await rpcResult { () throws(RPCError) in try await client.check(HealthCheckRequest(service: service)) }
        await channel.close()
        switch answer {
        case .success(let response) where response.status == .serving:
            print("\(target): SERVING")
        case .success(let response):
            print("\(target): \(response.status)")
            throw ExitCode(1)
        case .failure(let error):
            print("\(target): \(error.code.name): \(error.message)")
            throw ExitCode(1)
        }
    }
}
