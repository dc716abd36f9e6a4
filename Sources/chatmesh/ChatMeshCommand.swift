import ArgumentParser
import ChatMeshAPI
import Foundation
import MeshHTTP2
import MeshRPC
import NIOCore

/// The operator CLI: tokens, the demo seed, a look at conversations, the panel and the staff report.
@main
struct ChatMeshCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chatmesh",
        abstract: "Operate a ChatMesh mesh.",
        subcommands: [Token.self, Echo.self, Seed.self, ListConversationsCommand.self, ReplyCommand.self, InboxCommand.self, PanelCommand.self, ReportCommand.self, EventsCommand.self, TopCommand.self, HealthCheckCommand.self, CallCommand.self, UpCommand.self]
    )

    struct Token: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Mint a bearer token (signed with CHATMESH_AUTH_KEY) for grpcurl, h2load and scripts."
        )

        @Option(help: "The shop the token acts for (\"*\" only with --role service).")
        var shop: String

        @Option(help: "The staff member.")
        var staff: String = ""

        @Option(help: "owner, admin, agent or service.")
        var role: String = "agent"

        @Option(help: "Validity in seconds.")
        var ttl: Int64 = 3600

        func run() throws {
            guard let role = Role(rawValue: role) else {
                throw ValidationError("--role must be one of owner, admin, agent, service")
            }
            if shop == Principal.anyShop && role != .service {
                throw ValidationError("--shop '*' is only for --role service")
            }
            print(TokenSigner(key: MeshEnvironment().authKey).mint(shopId: shop, staffId: staff, role: role, validFor: ttl))
        }
    }
}

/// Calls chatmesh.testing.v1.EchoService/Echo on any gRPC server: a connectivity
/// check for operators, and how the interop tests drive the Swift client.
struct Echo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Call chatmesh.testing.v1.EchoService/Echo and print the answer (or the status) as JSON."
    )

    @Option(help: "Comma-separated host:port addresses of the server.")
    var target: String

    @Option(help: "The request's shop_id.")
    var shop: String = "shop-1"

    @Option(help: "Text to echo.")
    var text: String = ""

    @Option(help: "Bearer token (default: one minted for --shop with CHATMESH_AUTH_KEY).")
    var token: String?

    @Option(help: "Ask the server to fail with this gRPC status code.")
    var failCode: Int32 = 0

    @Option(help: "Timeout in milliseconds (0: none).")
    var timeoutMs: Int64 = 0

    @Option(help: "key=value metadata to send (repeatable).")
    var metadata: [String] = []

    func run() async throws {
        let channel = try HTTP2Channel(addresses: target)
        let token = self.token ?? TokenSigner(key: MeshEnvironment().authKey).mint(shopId: shop, staffId: "cli", role: .agent)
        var options = CallOptions.bearer(token, timeout: timeoutMs > 0 ? .milliseconds(timeoutMs) : nil)
        for pair in metadata {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            options.metadata.add(parts[0], parts.count > 1 ? parts[1] : "")
        }
        let client = EchoService.Client(channel: channel, defaultOptions: options)
        var out: [String: String] = [:]
        do {
            let response = try await client.echo(EchoRequest(shopId: shop, text: text, failWithCode: failCode))
            out = ["code": "OK", "text": response.text, "caller_shop_id": response.callerShopId]
        } catch {
            out = ["code": error.code.name, "message": error.message]
            for (name, value) in error.metadata {
                out["trailer:" + name] = value
            }
        }
        await channel.close()
        let json = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
        print(String(decoding: json, as: UTF8.self))
    }
}
