import NIOCore

/// Cuts a stream's DATA bytes into gRPC messages (1 flag byte, 4 bytes of
/// big-endian length, the message), however the bytes were split into frames.
/// Refuses a message over the limit as soon as its prefix arrives, before
/// buffering it.
public struct GRPCMessageDeframer {
    /// Why the bytes are not a gRPC message stream.
    public enum Failure: Error, Equatable, Sendable {
        case tooLarge(Int)
    }

    /// One message as it came: its bytes, and whether its compressed flag was set (then the
    /// bytes are in the stream's `grpc-encoding`, for the transport to inflate).
    public struct Message {
        public var bytes: ByteBuffer
        public var compressed: Bool
    }

    public let maxMessageBytes: Int
    private var buffer: ByteBuffer

    public init(maxMessageBytes: Int, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.maxMessageBytes = maxMessageBytes
        self.buffer = allocator.buffer(capacity: 0)
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        buffer.writeBytes(bytes)
    }

    public mutating func append(_ bytes: ByteBuffer) {
        var bytes = bytes
        buffer.writeBuffer(&bytes)
    }

    /// True when bytes of an unfinished message are held: at the end of the stream, a truncated message.
    public var hasPartialMessage: Bool { buffer.readableBytes > 0 }

    /// The next complete message (its bytes without the prefix), or nil until more arrive.
    public mutating func next() throws(Failure) -> Message? {
        guard buffer.readableBytes >= GRPCFraming.prefixLength,
              let flag = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
              let length = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self)
        else { return nil }
        if Int(length) > maxMessageBytes { throw .tooLarge(Int(length)) }
        guard buffer.readableBytes >= GRPCFraming.prefixLength + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: GRPCFraming.prefixLength)
        let message = buffer.readSlice(length: Int(length))!
        if buffer.readableBytes == 0 {
            // Nothing is left behind: start over so the storage does not grow with the stream.
            buffer.clear()
        } else if buffer.readerIndex > 64 * 1024 {
            buffer.discardReadBytes()
        }
        return Message(bytes: message, compressed: flag & 1 == 1)
    }

    /// The status that refuses a failure, for the side that received it.
    public static func status(_ failure: Failure, side: GRPCFraming.Side, maxMessageBytes: Int) -> RPCError {
        switch failure {
        case .tooLarge(let n):
            return .resourceExhausted("\(side.rawValue) message of \(n) bytes is over the limit of \(maxMessageBytes)")
        }
    }
}

extension GRPCFraming {
    /// `message` behind a length prefix (not compressed).
    public static func frame(bytes message: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var framed = allocator.buffer(capacity: prefixLength + message.readableBytes)
        framed.writeInteger(UInt8(0))
        framed.writeInteger(UInt32(message.readableBytes))
        framed.writeImmutableBuffer(message)
        return framed
    }

    /// `compressed` (already in the call's encoding) behind a prefix with the compressed flag.
    public static func frame(compressed message: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var framed = allocator.buffer(capacity: prefixLength + message.readableBytes)
        framed.writeInteger(UInt8(1))
        framed.writeInteger(UInt32(message.readableBytes))
        framed.writeImmutableBuffer(message)
        return framed
    }
}
