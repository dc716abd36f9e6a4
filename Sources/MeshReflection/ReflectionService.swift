import ChatMeshAPI
import Foundation
import MeshRPC
import NIOCore

/// gRPC server reflection, v1 and v1alpha (`grpc.reflection.*.ServerReflection`): lists the
/// services this server serves and answers for any proto/ file, by name or by a symbol it
/// declares, with every file it imports, from the descriptors the code generator embedded
/// (`FileDescriptors`). grpcurl, Postman and grpcio-reflection call it; it needs no token
/// (it says what can be called, not what any shop holds).
public struct ReflectionService: RPCService {
    public static let v1 = MethodDescriptor(service: "grpc.reflection.v1.ServerReflection", method: "ServerReflectionInfo")
    public static let v1alpha = MethodDescriptor(service: "grpc.reflection.v1alpha.ServerReflection", method: "ServerReflectionInfo")

    private let catalog: Catalog

    /// Reflection over `services` (and itself).
    public init(serving services: [any RPCService]) {
        var names = Set(services.flatMap { $0.routes.map(\.method.service) })
        names.insert(Self.v1.service)
        names.insert(Self.v1alpha.service)
        catalog = Catalog(services: names.sorted())
    }

    /// `services` with reflection over them added: what every executable serves.
    public static func adding(to services: [any RPCService]) -> [any RPCService] {
        services + [ReflectionService(serving: services)]
    }

    public var routes: [RPCRoute] {
        [Self.v1, Self.v1alpha].map { method in
            RPCRoute(method: method, kind: .bidirectionalStreaming, requiresAuth: false) { [catalog] stream, _ in
                for try await request in stream.requests {
                    try await stream.responses.write(try catalog.answer(request))
                }
            }
        }
    }

    final class Catalog: Sendable {
        let services: [String]
        let files: [String: FileDescriptors.File]
        let fileBySymbol: [String: String]
        /// Each file's descriptor bytes, decoded once.
        let bytes: [String: [UInt8]]

        init(services: [String]) {
            self.services = services
            var files: [String: FileDescriptors.File] = [:]
            var bySymbol: [String: String] = [:]
            var bytes: [String: [UInt8]] = [:]
            for file in FileDescriptors.files {
                files[file.name] = file
                bytes[file.name] = Array(Data(base64Encoded: file.base64) ?? Data())
                for symbol in file.symbols {
                    bySymbol[symbol] = file.name
                }
            }
            self.files = files
            self.fileBySymbol = bySymbol
            self.bytes = bytes
        }

        func answer(_ request: ByteBuffer) throws(RPCError) -> ByteBuffer {
            var reader = ProtoReader(request)
            var host = ""
            var asked: Asked?
            do {
                while let field = try reader.next() {
                    switch field {
                    case .bytes(1, let value): host = String(buffer: value)
                    case .bytes(3, let value): asked = .fileByName(String(buffer: value))
                    case .bytes(4, let value): asked = .fileBySymbol(String(buffer: value))
                    case .bytes(5, _): asked = .extensionFile
                    case .bytes(6, let value): asked = .extensionNumbers(String(buffer: value))
                    case .bytes(7, _): asked = .listServices
                    default: break
                    }
                }
            } catch {
                throw .invalidArgument("the reflection request is not a ServerReflectionRequest: \(error)")
            }
            var writer = ProtoWriter()
            if !host.isEmpty { writer.string(1, host) }
            writer.bytes(2, request.readableBytesView)
            switch asked {
            case .listServices:
                writer.message(6) { list in
                    for name in services {
                        list.message(1) { $0.string(1, name) }
                    }
                }
            case .fileByName(let name):
                if files[name] != nil {
                    fileResponse(&writer, name)
                } else {
                    error(&writer, .notFound, "no file named '\(name)'")
                }
            case .fileBySymbol(let symbol):
                if let name = file(declaring: symbol) {
                    fileResponse(&writer, name)
                } else {
                    error(&writer, .notFound, "no symbol '\(symbol)'")
                }
            case .extensionFile:
                error(&writer, .notFound, "ChatMesh's protos declare no extensions")
            case .extensionNumbers(let type):
                if fileBySymbol[type] != nil {
                    writer.message(5) { $0.string(1, type) }
                } else {
                    error(&writer, .notFound, "no type '\(type)'")
                }
            case nil:
                error(&writer, .invalidArgument, "the request asks for nothing (set one of its message_request fields)")
            }
            return writer.buffer
        }

        enum Asked {
            case listServices, fileByName(String), fileBySymbol(String), extensionFile, extensionNumbers(String)
        }

        /// A symbol a file declares, or a member of one (a field, an enum value): its declaring file.
        func file(declaring symbol: String) -> String? {
            let trimmed = symbol.hasPrefix(".") ? String(symbol.dropFirst()) : symbol
            if let name = fileBySymbol[trimmed] { return name }
            if let dot = trimmed.lastIndex(of: "."), let name = fileBySymbol[String(trimmed[..<dot])] {
                return name
            }
            return nil
        }

        /// The file, then every file it imports, directly or not, each once.
        private func fileResponse(_ writer: inout ProtoWriter, _ name: String) {
            var order: [String] = []
            var seen: Set<String> = []
            var queue = [name]
            while let next = queue.first {
                queue.removeFirst()
                guard seen.insert(next).inserted, let file = files[next] else { continue }
                order.append(next)
                queue += file.dependencies
            }
            writer.message(4) { response in
                for file in order {
                    response.bytes(1, bytes[file] ?? [])
                }
            }
        }

        private func error(_ writer: inout ProtoWriter, _ code: RPCError.Code, _ message: String) {
            writer.message(7) {
                $0.varint(1, UInt64(code.rawValue))
                $0.string(2, message)
            }
        }
    }
}
