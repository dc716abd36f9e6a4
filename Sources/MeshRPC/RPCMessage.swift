import NIOCore

/// A protobuf message the runtime can carry: generated value types conform.
public protocol RPCMessage: Sendable {
    /// The full proto name, e.g. "chatmesh.v1.Page".
    static var protoName: String { get }
    init()
    /// Decodes protobuf bytes (the whole readable part of `buffer`).
    init(protobuf buffer: ByteBuffer) throws(MessageCodingError)
    /// Appends the protobuf encoding to `buffer`.
    func encode(into buffer: inout ByteBuffer) throws(MessageCodingError)
}

/// A request that belongs to one shop: the server checks it against the token.
public protocol ShopScoped {
    var shopId: String { get }
}

extension RPCError {
    /// A string protobuf-c cannot carry is the caller's bad input (INVALID_ARGUMENT, naming the
    /// field); bytes that are not the message are INTERNAL, as grpcio and grpc C++ answer.
    public init(_ error: MessageCodingError, failedTo action: String) {
        switch error {
        case .invalidString:
            self.init(.invalidArgument, error.description)
        case .malformed(let why):
            self.init(.internal, "could not \(action): \(why)")
        }
    }
}

/// Why a protobuf message could not be encoded or decoded.
public enum MessageCodingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The bytes are not a valid encoding of the message.
    case malformed(String)
    /// A string field protobuf-c cannot carry faithfully (embedded NUL) or that is not UTF-8.
    case invalidString(field: String, reason: String)

    public var description: String {
        switch self {
        case .malformed(let why): "malformed protobuf: \(why)"
        case .invalidString(let field, let reason): "field \(field) \(reason)"
        }
    }
}

extension RPCMessage {
    /// The protobuf bytes, for tests and tools.
    public func serializedBytes() throws(MessageCodingError) -> [UInt8] {
        var buffer = ByteBuffer()
        try encode(into: &buffer)
        return buffer.readBytes(length: buffer.readableBytes) ?? []
    }

    public init(serializedBytes bytes: [UInt8]) throws(MessageCodingError) {
        try self.init(protobuf: ByteBuffer(bytes: bytes))
    }
}

/// gRPC's length-prefixed message: 1 flag byte (0: not compressed), 4 bytes
/// big-endian length, then the message.
public enum GRPCFraming {
    public static let prefixLength = 5
    /// ARCHITECTURE.md: messages over 4 MiB are RESOURCE_EXHAUSTED.
    public static let defaultMaxMessageBytes = 4 * 1024 * 1024

    /// Encodes `message` behind a length prefix in one buffer.
    public static func frame(_ message: some RPCMessage, allocator: ByteBufferAllocator = ByteBufferAllocator()) throws(MessageCodingError) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        buffer.moveWriterIndex(forwardBy: prefixLength)
        try message.encode(into: &buffer)
        let length = buffer.readableBytes - prefixLength
        buffer.setInteger(UInt8(0), at: buffer.readerIndex)
        buffer.setInteger(UInt32(length), at: buffer.readerIndex + 1)
        return buffer
    }

    /// The payload of a unary call, out of its gRPC frame.
    public enum Unframed {
        case message(ByteBuffer)
        /// The compressed flag is set: the bytes are in the call's `grpc-encoding`.
        case compressed(ByteBuffer)
        case tooLarge(Int)
        case malformed(String)
    }

    /// Which side's message broke a limit, for the status that says so.
    public enum Side: String, Sendable {
        case request, response
    }

    /// The single message of a unary body, or the status that refuses it. Used where no
    /// `grpc-encoding` was negotiated: a compressed message is then a protocol error (INTERNAL).
    public static func unaryMessage(_ body: ByteBuffer, maxMessageBytes: Int, side: Side) throws(RPCError) -> ByteBuffer {
        switch unframeUnary(body, maxMessageBytes: maxMessageBytes) {
        case .message(let m):
            return m
        case .compressed:
            throw .internal("the \(side.rawValue) message has the compressed flag set and the call has no grpc-encoding")
        case .tooLarge(let n):
            throw .resourceExhausted("\(side.rawValue) message of \(n) bytes is over the limit of \(maxMessageBytes)")
        case .malformed(let why):
            throw .internal(why)
        }
    }

    /// The single message of a unary body (the whole HTTP/2 DATA payload).
    public static func unframeUnary(_ body: ByteBuffer, maxMessageBytes: Int) -> Unframed {
        var body = body
        guard body.readableBytes >= prefixLength,
              let flag = body.readInteger(as: UInt8.self),
              let length = body.readInteger(as: UInt32.self)
        else {
            return .malformed(body.readableBytes == 0 ? "no request message" : "truncated gRPC message prefix")
        }
        if Int(length) > maxMessageBytes { return .tooLarge(Int(length)) }
        if body.readableBytes < Int(length) {
            return .malformed("gRPC length prefix says \(length) bytes, body has \(body.readableBytes)")
        }
        if body.readableBytes > Int(length) {
            return .malformed("more than one message in a unary call")
        }
        return flag & 1 == 1 ? .compressed(body) : .message(body)
    }
}
