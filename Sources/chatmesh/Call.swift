import ArgumentParser
import Foundation
import MeshHTTP2
import MeshReflection
import MeshRPC

/// `chatmesh call SERVICE/METHOD '{json}'`: any method of any server that serves reflection,
/// the request and the answers in proto3 JSON, as grpcurl does, without proto files.
struct CallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call",
        abstract: "Call any gRPC method through the server's reflection; JSON in, JSON out.",
        discussion: """
            The method is package.Service/Method (chatmesh.v1.OrderService/GetOrderSummary); `list` as the method \
            lists the server's services. A client- or bidirectional-streaming method takes a JSON array of \
            requests; each answer is printed as it comes. Without --token, one is minted with CHATMESH_AUTH_KEY \
            for --shop (default: the request's shop_id) as --role.
            """
    )

    @Argument(help: "package.Service/Method, or `list`.")
    var method: String

    @Argument(help: "The request as JSON (an array of them for a client-streaming method).")
    var request: String = "{}"

    @Option(help: "The server's host:port.")
    var target: String = "127.0.0.1:50050"

    @Option(help: "Bearer token (default: minted for --shop and --role with CHATMESH_AUTH_KEY).")
    var token: String?

    @Option(help: "The shop a minted token acts for (default: the request's shop_id).")
    var shop: String?

    @Option(help: "owner, admin, agent or service: the role of a minted token.")
    var role: String = "owner"

    @Option(help: "The staff member of a minted token.")
    var staff: String = "cli"

    @Option(help: "Timeout in milliseconds.")
    var timeoutMs: Int64 = 10_000

    @Option(name: .customShort("H"), help: "key: value metadata to send (repeatable).")
    var header: [String] = []

    func run() async throws {
        let channel = try HTTP2Channel(addresses: target)
        do {
            try await call(channel)
        } catch {
            await channel.close()
            throw error
        }
        await channel.close()
    }

    /// A request this command cannot send: said on stderr without the usage (the usage is not the problem).
    struct Refusal: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    func call(_ channel: HTTP2Channel) async throws {
        let plain = CallOptions(timeout: .milliseconds(max(1, timeoutMs)))
        if method == "list" {
            for service in try await ReflectionClient.services(on: channel, options: plain).sorted() { print(service) }
            return
        }
        let parts = method.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count == 2 else { throw Refusal("the method is package.Service/Method, not \(method)") }
        let service = String(parts[0])
        let schema = try await ReflectionClient.schema(containing: service, on: channel, options: plain)
        guard let described = schema.method("\(service)/\(parts[1])") else {
            throw Refusal("\(service) has no method \(parts[1]) (it has: \(schema.methodNames(of: service).joined(separator: ", ")))")
        }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(request.utf8), options: [.fragmentsAllowed])
        } catch {
            throw Refusal("the request is not JSON: \(error.localizedDescription)")
        }
        let requests: [Any] = described.clientStreaming ? (parsed as? [Any] ?? [parsed]) : [parsed]
        var encoded: [EncodedMessage] = []
        for request in requests {
            do {
                encoded.append(EncodedMessage(try ProtoJSON.encode(value: request, as: described.input, schema: schema)))
            } catch {
                throw Refusal("\(described.input): \(error)")
            }
        }
        let options = try callOptions(plain, shopOf: requests.first)
        let descriptor = MethodDescriptor(service: described.service, method: described.name)
        do {
            if !described.clientStreaming && !described.serverStreaming {
                let answer: EncodedMessage = try await channel.unary(descriptor, encoded[0], options: options)
                print(try ProtoJSON.decode(answer.bytes, as: described.output, schema: schema))
            } else {
                try await channel.streaming(descriptor, options: options) { (call: RPCStreamingCall<EncodedMessage, EncodedMessage>) in
                    for message in encoded { try await call.send(message) }
                    call.finishSending()
                    for try await answer in call.responses {
                        print(try ProtoJSON.decode(answer.bytes, as: described.output, schema: schema))
                    }
                }
            }
        } catch let error as RPCError {
            FileHandle.standardError.write(Data("ERROR: \(error.code.name): \(error.message)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// `plain` with the token and the metadata.
    func callOptions(_ plain: CallOptions, shopOf request: Any?) throws -> CallOptions {
        var options = plain
        let object = request as? [String: Any]
        let shop = self.shop ?? (object?["shopId"] as? String) ?? (object?["shop_id"] as? String)
        if let token {
            options.authorization = "Bearer " + token
        } else {
            guard let role = Role(rawValue: role) else { throw ValidationError("--role must be one of owner, admin, agent, service") }
            // A request without a shop (reflection, health, the operators' RPCs) goes as the service role.
            let signer = TokenSigner(key: MeshEnvironment().authKey)
            options.authorization = "Bearer " + (shop.map { signer.mint(shopId: $0, staffId: staff, role: role) }
                ?? signer.mint(shopId: Principal.anyShop, staffId: staff, role: .service))
        }
        for pair in header {
            let parts = pair.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            options.metadata.add(parts[0].lowercased(), parts.count > 1 ? parts[1] : "")
        }
        return options
    }
}
