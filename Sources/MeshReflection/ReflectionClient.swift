import MeshRPC
import NIOCore

/// A message's protobuf bytes as they are: what a client that knows a method only by its
/// descriptors sends and receives.
public struct EncodedMessage: RPCMessage {
    public static let protoName = "(encoded)"
    public var bytes: ByteBuffer

    public init() {
        bytes = ByteBuffer()
    }

    public init(_ bytes: ByteBuffer) {
        self.bytes = bytes
    }

    public init(protobuf buffer: ByteBuffer) throws(MessageCodingError) {
        bytes = buffer
    }

    public func encode(into buffer: inout ByteBuffer) throws(MessageCodingError) {
        buffer.writeImmutableBuffer(bytes)
    }
}

/// Asks a server's reflection service (v1, else v1alpha) what it serves.
public enum ReflectionClient {
    /// The services the server lists.
    public static func services(on channel: any RPCChannel, options: CallOptions) async throws -> [String] {
        var request = ProtoWriter()
        request.string(7, "*")
        var names: [String] = []
        var reader = ProtoReader(try await ask(request, on: channel, options: options))
        while let field = try reader.next() {
            guard case .bytes(6, let list) = field else { continue }
            var services = ProtoReader(list)
            while let service = try services.next() {
                guard case .bytes(1, let entry) = service else { continue }
                var inner = ProtoReader(entry)
                while let part = try inner.next() {
                    if case .bytes(1, let name) = part { names.append(String(buffer: name)) }
                }
            }
        }
        return names
    }

    /// The schema of the file declaring `symbol` (a service, say) and of every file it imports.
    public static func schema(containing symbol: String, on channel: any RPCChannel, options: CallOptions) async throws -> ProtoSchema {
        var request = ProtoWriter()
        request.string(4, symbol)
        var reader = ProtoReader(try await ask(request, on: channel, options: options))
        var schema = ProtoSchema()
        while let field = try reader.next() {
            switch field {
            case .bytes(4, let files):
                var inner = ProtoReader(files)
                while let file = try inner.next() {
                    if case .bytes(1, let descriptor) = file { try schema.add(fileDescriptor: descriptor) }
                }
            case .bytes(7, let error):
                var inner = ProtoReader(error)
                var code = RPCError.Code.unknown
                var message = ""
                while let part = try inner.next() {
                    switch part {
                    case .varint(1, let value): code = RPCError.Code(rawValue: Int(truncatingIfNeeded: value)) ?? .unknown
                    case .bytes(2, let text): message = String(buffer: text)
                    default: break
                    }
                }
                throw RPCError(code, "server reflection: \(message)")
            default: break
            }
        }
        return schema
    }

    /// One ServerReflectionRequest, its one response.
    static func ask(_ request: ProtoWriter, on channel: any RPCChannel, options: CallOptions) async throws -> ByteBuffer {
        do {
            return try await ask(request, ReflectionService.v1, on: channel, options: options)
        } catch let error as RPCError where error.code == .unimplemented {
            return try await ask(request, ReflectionService.v1alpha, on: channel, options: options)
        }
    }

    private static func ask(_ request: ProtoWriter, _ method: MethodDescriptor, on channel: any RPCChannel, options: CallOptions) async throws -> ByteBuffer {
        try await channel.streaming(method, options: options) { (call: RPCStreamingCall<EncodedMessage, EncodedMessage>) in
            try await call.send(EncodedMessage(request.buffer))
            call.finishSending()
            for try await response in call.responses {
                return response.bytes
            }
            throw RPCError.internal("server reflection ended without an answer")
        }
    }
}
