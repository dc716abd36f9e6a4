import ArgumentParser
import MeshRPC

/// The operator CLI. More commands (up, seed, panel, report) come with the gateway.
@main
struct ChatMeshCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chatmesh",
        abstract: "Operate a ChatMesh mesh.",
        subcommands: [Token.self]
    )

    struct Token: ParsableCommand {
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
