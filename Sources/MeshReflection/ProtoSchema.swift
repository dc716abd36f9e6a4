import NIOCore

/// Messages, enums and services as their `FileDescriptorProto`s describe them: what a client
/// that learned a server's API through reflection needs to write and read its messages
/// (`ProtoJSON`) without generated code.
public struct ProtoSchema: Sendable {
    /// FieldDescriptorProto.Type's numbers.
    enum Kind: Int, Sendable {
        case double = 1, float, int64, uint64, int32, fixed64, fixed32, bool, string, group, message, bytes, uint32, `enum`, sfixed32, sfixed64, sint32, sint64
    }

    struct Field: Sendable {
        let name: String
        let jsonName: String
        let number: Int
        let kind: Kind
        let repeated: Bool
        /// The message or enum type, fully qualified without the leading dot.
        let typeName: String
    }

    struct Message: Sendable {
        let fullName: String
        var fields: [Field]
        let isMapEntry: Bool
        func field(named name: String) -> Field? { fields.first { $0.jsonName == name || $0.name == name } }
        func field(number: Int) -> Field? { fields.first { $0.number == number } }
    }

    struct Enum: Sendable {
        let fullName: String
        let values: [(name: String, number: Int32)]
    }

    public struct Method: Sendable {
        public let service: String
        public let name: String
        public let input: String
        public let output: String
        public let clientStreaming: Bool
        public let serverStreaming: Bool
    }

    private(set) var messages: [String: Message] = [:]
    private(set) var enums: [String: Enum] = [:]
    private(set) var methods: [String: Method] = [:]

    public init() {}

    /// The method at `path` ("package.Service/Method", a leading "/" allowed).
    public func method(_ path: String) -> Method? {
        methods[path.hasPrefix("/") ? String(path.dropFirst()) : path]
    }

    /// The methods of `service`, by name, sorted.
    public func methodNames(of service: String) -> [String] {
        methods.values.filter { $0.service == service }.map(\.name).sorted()
    }

    /// The services' full names, sorted.
    public var services: [String] { Set(methods.values.map(\.service)).sorted() }

    /// Adds what one serialized `google.protobuf.FileDescriptorProto` declares.
    public mutating func add(fileDescriptor bytes: ByteBuffer) throws(ProtoJSON.Failure) {
        do {
            var reader = ProtoReader(bytes)
            var package = ""
            var messageBytes: [ByteBuffer] = []
            var enumBytes: [ByteBuffer] = []
            var serviceBytes: [ByteBuffer] = []
            while let field = try reader.next() {
                switch field {
                case .bytes(2, let value): package = String(buffer: value)
                case .bytes(4, let value): messageBytes.append(value)
                case .bytes(5, let value): enumBytes.append(value)
                case .bytes(6, let value): serviceBytes.append(value)
                default: break
                }
            }
            let scope = package.isEmpty ? "" : package + "."
            for message in messageBytes { try addMessage(message, scope: scope) }
            for value in enumBytes { try addEnum(value, scope: scope) }
            for service in serviceBytes { try addService(service, scope: scope) }
        } catch let failure as RPCDecodeFailure {
            throw .init("a file descriptor is not a FileDescriptorProto: \(failure)")
        } catch let failure as ProtoJSON.Failure {
            throw failure
        } catch {
            throw .init("\(error)")
        }
    }

    private mutating func addMessage(_ bytes: ByteBuffer, scope: String) throws {
        var reader = ProtoReader(bytes)
        var name = ""
        var fields: [Field] = []
        var nested: [ByteBuffer] = []
        var nestedEnums: [ByteBuffer] = []
        var isMapEntry = false
        while let field = try reader.next() {
            switch field {
            case .bytes(1, let value): name = String(buffer: value)
            case .bytes(2, let value): fields.append(try Self.field(value))
            case .bytes(3, let value): nested.append(value)
            case .bytes(4, let value): nestedEnums.append(value)
            case .bytes(7, let value):
                var options = ProtoReader(value)
                while let option = try options.next() {
                    if case .varint(7, let flag) = option { isMapEntry = flag != 0 }
                }
            default: break
            }
        }
        let fullName = scope + name
        messages[fullName] = Message(fullName: fullName, fields: fields, isMapEntry: isMapEntry)
        for message in nested { try addMessage(message, scope: fullName + ".") }
        for value in nestedEnums { try addEnum(value, scope: fullName + ".") }
    }

    private static func field(_ bytes: ByteBuffer) throws -> Field {
        var reader = ProtoReader(bytes)
        var name = "", jsonName = "", typeName = ""
        var number = 0, type = 0, label = 1
        while let field = try reader.next() {
            switch field {
            case .bytes(1, let value): name = String(buffer: value)
            case .varint(3, let value): number = Int(truncatingIfNeeded: value)
            case .varint(4, let value): label = Int(truncatingIfNeeded: value)
            case .varint(5, let value): type = Int(truncatingIfNeeded: value)
            case .bytes(6, let value): typeName = String(String(buffer: value).drop { $0 == "." })
            case .bytes(10, let value): jsonName = String(buffer: value)
            default: break
            }
        }
        guard let kind = Kind(rawValue: type) else { throw ProtoJSON.Failure("field \(name) has type \(type), which is not a protobuf type") }
        return Field(name: name, jsonName: jsonName.isEmpty ? lowerCamel(name) : jsonName, number: number, kind: kind, repeated: label == 3, typeName: typeName)
    }

    private mutating func addEnum(_ bytes: ByteBuffer, scope: String) throws {
        var reader = ProtoReader(bytes)
        var name = ""
        var values: [(String, Int32)] = []
        while let field = try reader.next() {
            switch field {
            case .bytes(1, let value): name = String(buffer: value)
            case .bytes(2, let value):
                var inner = ProtoReader(value)
                var valueName = ""
                var number: Int32 = 0
                while let part = try inner.next() {
                    switch part {
                    case .bytes(1, let text): valueName = String(buffer: text)
                    case .varint(2, let n): number = Int32(truncatingIfNeeded: n)
                    default: break
                    }
                }
                values.append((valueName, number))
            default: break
            }
        }
        enums[scope + name] = Enum(fullName: scope + name, values: values)
    }

    private mutating func addService(_ bytes: ByteBuffer, scope: String) throws {
        var reader = ProtoReader(bytes)
        var name = ""
        var methodBytes: [ByteBuffer] = []
        while let field = try reader.next() {
            switch field {
            case .bytes(1, let value): name = String(buffer: value)
            case .bytes(2, let value): methodBytes.append(value)
            default: break
            }
        }
        let service = scope + name
        for bytes in methodBytes {
            var inner = ProtoReader(bytes)
            var methodName = "", input = "", output = ""
            var clientStreaming = false, serverStreaming = false
            while let field = try inner.next() {
                switch field {
                case .bytes(1, let value): methodName = String(buffer: value)
                case .bytes(2, let value): input = String(String(buffer: value).drop { $0 == "." })
                case .bytes(3, let value): output = String(String(buffer: value).drop { $0 == "." })
                case .varint(5, let value): clientStreaming = value != 0
                case .varint(6, let value): serverStreaming = value != 0
                default: break
                }
            }
            methods[service + "/" + methodName] = Method(
                service: service, name: methodName, input: input, output: output, clientStreaming: clientStreaming, serverStreaming: serverStreaming
            )
        }
    }

    /// protoc's JSON name for a field that has none in its descriptor.
    static func lowerCamel(_ name: String) -> String {
        var out = ""
        var upper = false
        for character in name {
            if character == "_" {
                upper = true
            } else {
                out.append(upper ? Character(character.uppercased()) : character)
                upper = false
            }
        }
        return out
    }
}
