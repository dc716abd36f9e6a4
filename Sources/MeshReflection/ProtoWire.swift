import NIOCore

/// The protobuf wire format, for reflection's messages, which use `oneof` (the bridge generator
/// maps none), and for messages known only by their descriptors (`ProtoJSON`).
struct ProtoReader {
    private var buffer: ByteBuffer

    init(_ buffer: ByteBuffer) {
        self.buffer = buffer
    }

    enum Field {
        case varint(number: Int, value: UInt64)
        case bytes(number: Int, value: ByteBuffer)
        case fixed64(number: Int, value: UInt64)
        case fixed32(number: Int, value: UInt32)
    }

    /// The next field, or nil at the end; throws on bytes that are not protobuf.
    mutating func next() throws(RPCDecodeFailure) -> Field? {
        guard buffer.readableBytes > 0 else { return nil }
        let key = try varint()
        let number = Int(key >> 3)
        guard number > 0 else { throw RPCDecodeFailure("field number 0") }
        switch key & 7 {
        case 0:
            return .varint(number: number, value: try varint())
        case 1:
            return .fixed64(number: number, value: try fixed64())
        case 2:
            let length = try varint()
            guard length <= UInt64(buffer.readableBytes), let value = buffer.readSlice(length: Int(length)) else {
                throw RPCDecodeFailure("length-delimited field past the end")
            }
            return .bytes(number: number, value: value)
        case 5:
            return .fixed32(number: number, value: try fixed32())
        default:
            throw RPCDecodeFailure("wire type \(key & 7) is not supported")
        }
    }

    var isAtEnd: Bool { buffer.readableBytes == 0 }

    /// A bare fixed-width value (the elements of a packed repeated field).
    mutating func fixed64() throws(RPCDecodeFailure) -> UInt64 {
        guard let value = buffer.readInteger(endianness: .little, as: UInt64.self) else { throw RPCDecodeFailure("truncated fixed64") }
        return value
    }

    mutating func fixed32() throws(RPCDecodeFailure) -> UInt32 {
        guard let value = buffer.readInteger(endianness: .little, as: UInt32.self) else { throw RPCDecodeFailure("truncated fixed32") }
        return value
    }

    /// A bare varint (the elements of a packed repeated field).
    mutating func varint() throws(RPCDecodeFailure) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while let byte = buffer.readInteger(as: UInt8.self) {
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
            if shift > 63 { throw RPCDecodeFailure("varint longer than 10 bytes") }
        }
        throw RPCDecodeFailure("truncated varint")
    }
}

struct RPCDecodeFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct ProtoWriter {
    private(set) var buffer = ByteBuffer()

    mutating func varint(_ number: Int, _ value: UInt64) {
        tag(number, 0)
        raw(value)
    }

    mutating func bytes(_ number: Int, _ value: some Collection<UInt8>) {
        tag(number, 2)
        raw(UInt64(value.count))
        buffer.writeBytes(value)
    }

    mutating func string(_ number: Int, _ value: String) {
        bytes(number, Array(value.utf8))
    }

    mutating func message(_ number: Int, _ build: (inout ProtoWriter) -> Void) {
        var inner = ProtoWriter()
        build(&inner)
        message(number, inner)
    }

    mutating func fixed64(_ number: Int, _ value: UInt64) {
        tag(number, 1)
        buffer.writeInteger(value, endianness: .little)
    }

    mutating func fixed32(_ number: Int, _ value: UInt32) {
        tag(number, 5)
        buffer.writeInteger(value, endianness: .little)
    }

    mutating func message(_ number: Int, _ inner: ProtoWriter) {
        tag(number, 2)
        raw(UInt64(inner.buffer.readableBytes))
        buffer.writeImmutableBuffer(inner.buffer)
    }

    private mutating func tag(_ number: Int, _ wireType: UInt64) {
        raw(UInt64(number) << 3 | wireType)
    }

    private mutating func raw(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            buffer.writeInteger(UInt8(v & 0x7f | 0x80))
            v >>= 7
        }
        buffer.writeInteger(UInt8(v))
    }
}
