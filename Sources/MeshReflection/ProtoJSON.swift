import Foundation
import NIOCore

/// Protobuf messages to and from their proto3 JSON form (the mapping grpcurl and every gRPC
/// gateway use: lowerCamel field names, the proto names accepted too; 64-bit integers as strings;
/// enums by name; bytes in base64; maps as objects), driven by a `ProtoSchema`.
public enum ProtoJSON {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// The message `type` from JSON text (an object).
    public static func encode(_ json: String, as type: String, schema: ProtoSchema) throws(Failure) -> ByteBuffer {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(json.utf8), options: [.fragmentsAllowed])
        } catch {
            throw Failure("the request is not JSON: \(error.localizedDescription)")
        }
        return try encode(value: object, as: type, schema: schema)
    }

    /// The message `type` from a parsed JSON value (`JSONSerialization`'s).
    public static func encode(value: Any, as type: String, schema: ProtoSchema) throws(Failure) -> ByteBuffer {
        do {
            return try Encoder(schema: schema).message(value, type, path: "").buffer
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure("\(error)")
        }
    }

    /// The message `type`'s bytes as indented JSON text.
    public static func decode(_ bytes: ByteBuffer, as type: String, schema: ProtoSchema) throws(Failure) -> String {
        do {
            var out = ""
            try Decoder(schema: schema).message(bytes, type).write(to: &out, indent: "")
            return out
        } catch let failure as Failure {
            throw failure
        } catch let failure as RPCDecodeFailure {
            throw Failure("the answer is not a \(type): \(failure)")
        } catch {
            throw Failure("\(error)")
        }
    }

    // MARK: JSON → protobuf

    struct Encoder {
        let schema: ProtoSchema

        func message(_ value: Any, _ type: String, path: String) throws -> ProtoWriter {
            guard let message = schema.messages[type] else { throw Failure("\(type) is not described by the server's descriptors") }
            guard let object = value as? [String: Any] else { throw Failure("\(path.isEmpty ? "the request" : path) must be a JSON object (\(type))") }
            var writer = ProtoWriter()
            for key in object.keys.sorted() {
                guard let field = message.field(named: key) else { throw Failure("\(path)\(key): \(type) has no such field") }
                let value = object[key]!
                if value is NSNull { continue }
                let fieldPath = path + key
                if field.repeated {
                    if let entry = schema.messages[field.typeName], entry.isMapEntry {
                        guard let map = value as? [String: Any] else { throw Failure("\(fieldPath) must be a JSON object (a map)") }
                        guard let keyField = entry.field(number: 1), let valueField = entry.field(number: 2) else { throw Failure("\(fieldPath): a map without key or value") }
                        for mapKey in map.keys.sorted() {
                            var pair = ProtoWriter()
                            try scalarOrMessage(&pair, keyField, keyField.kind == .string ? mapKey : mapKey as Any, path: "\(fieldPath).\(mapKey)")
                            try scalarOrMessage(&pair, valueField, map[mapKey]!, path: "\(fieldPath).\(mapKey)")
                            writer.message(field.number, pair)
                        }
                    } else {
                        guard let list = value as? [Any] else { throw Failure("\(fieldPath) must be a JSON array") }
                        for (index, element) in list.enumerated() {
                            try scalarOrMessage(&writer, field, element, path: "\(fieldPath)[\(index)]")
                        }
                    }
                } else {
                    try scalarOrMessage(&writer, field, value, path: fieldPath)
                }
            }
            return writer
        }

        func scalarOrMessage(_ writer: inout ProtoWriter, _ field: ProtoSchema.Field, _ value: Any, path: String) throws {
            let n = field.number
            switch field.kind {
            case .message: writer.message(n, try message(value, field.typeName, path: path + "."))
            case .string:
                guard let text = value as? String else { throw Failure("\(path) must be a string") }
                writer.string(n, text)
            case .bytes:
                guard let text = value as? String, let data = Data(base64Encoded: text) else { throw Failure("\(path) must be base64 text") }
                writer.bytes(n, Array(data))
            case .bool:
                guard Self.isBoolean(value), let flag = value as? Bool else { throw Failure("\(path) must be true or false") }
                writer.varint(n, flag ? 1 : 0)
            case .enum:
                if let name = value as? String {
                    guard let number = schema.enums[field.typeName]?.values.first(where: { $0.name == name })?.number else {
                        throw Failure("\(path): \(field.typeName) has no value \(name)")
                    }
                    writer.varint(n, UInt64(bitPattern: Int64(number)))
                } else {
                    writer.varint(n, UInt64(bitPattern: Int64(try integer(value, path, Int64(Int32.min)...Int64(Int32.max)))))
                }
            case .int32: writer.varint(n, UInt64(bitPattern: try integer(value, path, Int64(Int32.min)...Int64(Int32.max))))
            case .int64: writer.varint(n, UInt64(bitPattern: try integer(value, path, Int64.min...Int64.max)))
            case .uint32: writer.varint(n, UInt64(try integer(value, path, 0...Int64(UInt32.max))))
            case .uint64: writer.varint(n, try unsigned(value, path))
            case .sint32:
                let v = Int32(try integer(value, path, Int64(Int32.min)...Int64(Int32.max)))
                writer.varint(n, UInt64(UInt32(bitPattern: (v << 1) ^ (v >> 31))))
            case .sint64:
                let v = try integer(value, path, Int64.min...Int64.max)
                writer.varint(n, UInt64(bitPattern: (v << 1) ^ (v >> 63)))
            case .fixed32: writer.fixed32(n, UInt32(try integer(value, path, 0...Int64(UInt32.max))))
            case .sfixed32: writer.fixed32(n, UInt32(bitPattern: Int32(try integer(value, path, Int64(Int32.min)...Int64(Int32.max)))))
            case .fixed64: writer.fixed64(n, try unsigned(value, path))
            case .sfixed64: writer.fixed64(n, UInt64(bitPattern: try integer(value, path, Int64.min...Int64.max)))
            case .double: writer.fixed64(n, try real(value, path).bitPattern)
            case .float: writer.fixed32(n, Float(try real(value, path)).bitPattern)
            case .group: throw Failure("\(path): groups are not supported")
            }
        }

        /// JSON's true and false: Foundation gives them as NSNumbers that also cast to Int (and
        /// numbers cast to Bool), told apart only by their C type.
        static func isBoolean(_ value: Any) -> Bool {
            guard let number = value as? NSNumber, !(value is String) else { return false }
            return String(cString: number.objCType) == "c"
        }

        func integer(_ value: Any, _ path: String, _ range: ClosedRange<Int64>) throws -> Int64 {
            let parsed: Int64?
            if let text = value as? String {
                parsed = Int64(text)
            } else if Self.isBoolean(value) {
                parsed = nil
            } else if let number = value as? NSNumber, let exact = Int64(exactly: number.doubleValue), Double(exact) == number.doubleValue {
                parsed = number.int64Value
            } else {
                parsed = nil
            }
            guard let parsed, range.contains(parsed) else { throw Failure("\(path) must be an integer in \(range.lowerBound)...\(range.upperBound)") }
            return parsed
        }

        func unsigned(_ value: Any, _ path: String) throws -> UInt64 {
            if let text = value as? String, let parsed = UInt64(text) { return parsed }
            return UInt64(try integer(value, path, 0...Int64.max))
        }

        func real(_ value: Any, _ path: String) throws -> Double {
            if let text = value as? String {
                switch text {
                case "NaN": return .nan
                case "Infinity": return .infinity
                case "-Infinity": return -.infinity
                default: if let parsed = Double(text) { return parsed }
                }
            } else if !Self.isBoolean(value), let number = value as? NSNumber {
                return number.doubleValue
            }
            throw Failure("\(path) must be a number")
        }
    }

    // MARK: protobuf → JSON

    indirect enum Value {
        case object([(String, Value)])
        case array([Value])
        case string(String)
        /// A JSON number or literal, written as it is.
        case literal(String)

        func write(to out: inout String, indent: String) {
            switch self {
            case .literal(let text): out += text
            case .string(let text): Self.quote(text, into: &out)
            case .array(let values):
                guard !values.isEmpty else { out += "[]"; return }
                out += "[\n"
                for (index, value) in values.enumerated() {
                    out += indent + "  "
                    value.write(to: &out, indent: indent + "  ")
                    out += index == values.count - 1 ? "\n" : ",\n"
                }
                out += indent + "]"
            case .object(let members):
                guard !members.isEmpty else { out += "{}"; return }
                out += "{\n"
                for (index, (key, value)) in members.enumerated() {
                    out += indent + "  "
                    Self.quote(key, into: &out)
                    out += ": "
                    value.write(to: &out, indent: indent + "  ")
                    out += index == members.count - 1 ? "\n" : ",\n"
                }
                out += indent + "}"
            }
        }

        static func quote(_ text: String, into out: inout String) {
            out += "\""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
                default: out.unicodeScalars.append(scalar)
                }
            }
            out += "\""
        }
    }

    struct Decoder {
        let schema: ProtoSchema

        func message(_ bytes: ByteBuffer, _ type: String) throws -> Value {
            guard let message = schema.messages[type] else { throw Failure("\(type) is not described by the server's descriptors") }
            // Field order as declared; repeated fields gather every occurrence (packed or not).
            var values: [Int: [Value]] = [:]
            var mapEntries: [Int: [(String, Value)]] = [:]
            var reader = ProtoReader(bytes)
            while let wire = try reader.next() {
                let number: Int
                switch wire {
                case .varint(let n, _), .bytes(let n, _), .fixed64(let n, _), .fixed32(let n, _): number = n
                }
                guard let field = message.field(number: number) else { continue }   // unknown: left out, as grpcurl does
                if field.repeated, let entry = schema.messages[field.typeName], entry.isMapEntry, case .bytes(_, let pair) = wire {
                    var key = ""
                    var value: Value = .literal("null")
                    if case .object(let members) = try self.message(pair, entry.fullName) {
                        for (name, member) in members {
                            if name == entry.field(number: 1)?.jsonName {
                                switch member {
                                case .string(let text), .literal(let text): key = text
                                default: break
                                }
                            } else {
                                value = member
                            }
                        }
                    }
                    if value.isNull, let valueField = entry.field(number: 2) { value = defaultValue(valueField) }
                    mapEntries[number, default: []].append((key, value))
                } else if field.repeated, field.kind.isPackable, case .bytes(_, let packed) = wire {
                    var inner = ProtoReader(packed)
                    while !inner.isAtEnd {
                        values[number, default: []].append(try scalar(field, from: &inner))
                    }
                } else {
                    values[number, default: []].append(try self.value(field, wire))
                }
            }
            var members: [(String, Value)] = []
            for field in message.fields {
                if let entries = mapEntries[field.number] {
                    members.append((field.jsonName, .object(entries)))
                } else if let found = values[field.number] {
                    members.append((field.jsonName, field.repeated ? .array(found) : found.last!))
                }
            }
            return .object(members)
        }

        func defaultValue(_ field: ProtoSchema.Field) -> Value {
            switch field.kind {
            case .string, .bytes: .string("")
            case .bool: .literal("false")
            case .message: .object([])
            case .enum: schema.enums[field.typeName]?.values.first { $0.number == 0 }.map { .string($0.name) } ?? .literal("0")
            case .int64, .uint64, .sint64, .fixed64, .sfixed64: .string("0")
            default: .literal("0")
            }
        }

        func value(_ field: ProtoSchema.Field, _ wire: ProtoReader.Field) throws -> Value {
            switch (field.kind, wire) {
            case (.message, .bytes(_, let bytes)): return try message(bytes, field.typeName)
            case (.string, .bytes(_, let bytes)): return .string(String(buffer: bytes))
            case (.bytes, .bytes(_, let bytes)): return .string(Data(bytes.readableBytesView).base64EncodedString())
            case (_, .varint(_, let v)): return try varintValue(field, v)
            case (_, .fixed64(_, let v)): return fixed64Value(field.kind, v)
            case (_, .fixed32(_, let v)): return fixed32Value(field.kind, v)
            default: throw Failure("field \(field.name) came with a wire type its type \(field.kind) does not have")
            }
        }

        func scalar(_ field: ProtoSchema.Field, from reader: inout ProtoReader) throws -> Value {
            switch field.kind {
            case .double, .fixed64, .sfixed64: return fixed64Value(field.kind, try reader.fixed64())
            case .float, .fixed32, .sfixed32: return fixed32Value(field.kind, try reader.fixed32())
            default: return try varintValue(field, try reader.varint())
            }
        }

        func varintValue(_ field: ProtoSchema.Field, _ v: UInt64) throws -> Value {
            switch field.kind {
            case .int32: return .literal(String(Int32(truncatingIfNeeded: v)))
            case .int64: return .string(String(Int64(bitPattern: v)))
            case .uint32: return .literal(String(UInt32(truncatingIfNeeded: v)))
            case .uint64: return .string(String(v))
            case .sint32:
                let u = UInt32(truncatingIfNeeded: v)
                return .literal(String(Int32(bitPattern: u >> 1) ^ -Int32(bitPattern: u & 1)))
            case .sint64: return .string(String(Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1)))
            case .bool: return .literal(v != 0 ? "true" : "false")
            case .enum:
                let number = Int32(truncatingIfNeeded: v)
                if let name = schema.enums[field.typeName]?.values.first(where: { $0.number == number })?.name { return .string(name) }
                return .literal(String(number))
            default: throw Failure("field \(field.name) came as a varint, which its type \(field.kind) is not")
            }
        }

        func fixed64Value(_ kind: ProtoSchema.Kind, _ v: UInt64) -> Value {
            switch kind {
            case .double: return Self.real(Double(bitPattern: v))
            case .sfixed64: return .string(String(Int64(bitPattern: v)))
            default: return .string(String(v))
            }
        }

        func fixed32Value(_ kind: ProtoSchema.Kind, _ v: UInt32) -> Value {
            switch kind {
            case .float: return Self.real(Double(Float(bitPattern: v)))
            case .sfixed32: return .literal(String(Int32(bitPattern: v)))
            default: return .literal(String(v))
            }
        }

        static func real(_ d: Double) -> Value {
            if d.isNaN { return .string("NaN") }
            if d.isInfinite { return .string(d > 0 ? "Infinity" : "-Infinity") }
            if d == d.rounded(), abs(d) < 1e15 { return .literal(String(Int64(d))) }
            return .literal(String(d))
        }
    }
}

extension ProtoJSON.Value {
    var isNull: Bool {
        if case .literal("null") = self { return true }
        return false
    }
}

extension ProtoSchema.Kind {
    /// Scalars proto3 packs when repeated.
    var isPackable: Bool {
        switch self {
        case .string, .bytes, .message, .group: false
        default: true
        }
    }
}
