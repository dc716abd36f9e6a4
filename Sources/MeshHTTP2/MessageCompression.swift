import CZlib
import MeshRPC
import NIOCore

/// gzip and deflate for gRPC messages, on zlib. Inflating stops at the message limit:
/// a small compressed message that would inflate past it (a zip bomb) costs no more than
/// the limit, and is RESOURCE_EXHAUSTED.
enum MessageCompression {
    enum Failure: Error, Equatable {
        case tooLarge(limit: Int)
        case corrupt(String)
    }

    private static func windowBits(_ encoding: MessageEncoding) -> Int32 {
        // 15: zlib's largest window; +16 writes and reads the gzip wrapper instead of zlib's.
        encoding == .gzip ? 15 + 16 : 15
    }

    static func compress(_ message: ByteBuffer, _ encoding: MessageEncoding, allocator: ByteBufferAllocator) -> ByteBuffer {
        precondition(encoding != .identity)
        var stream = z_stream()
        var rc = deflateInit2_(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, windowBits(encoding), 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        precondition(rc == Z_OK, "deflateInit2 failed: \(rc)")
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, uLong(message.readableBytes)))
        var out = allocator.buffer(capacity: bound)
        message.withUnsafeReadableBytes { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(input.count)
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { output in
                stream.next_out = output.bindMemory(to: Bytef.self).baseAddress
                stream.avail_out = uInt(output.count)
                rc = deflate(&stream, Z_FINISH)
                return output.count - Int(stream.avail_out)
            }
        }
        precondition(rc == Z_STREAM_END, "deflate did not finish within deflateBound: \(rc)")
        return out
    }

    static func decompress(_ data: ByteBuffer, _ encoding: MessageEncoding, limit: Int, allocator: ByteBufferAllocator) throws(Failure) -> ByteBuffer {
        precondition(encoding != .identity)
        var stream = z_stream()
        guard inflateInit2_(&stream, windowBits(encoding), ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw .corrupt("inflateInit2 failed")
        }
        defer { inflateEnd(&stream) }
        var out = allocator.buffer(capacity: min(max(data.readableBytes * 4, 256), limit + 1))
        var rc = Z_OK
        data.withUnsafeReadableBytes { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(input.count)
            while rc == Z_OK {
                // One byte past the limit is enough to know it is over.
                let room = min(max(out.writableBytes, 4096), limit + 1 - out.readableBytes)
                if room <= 0 { break }
                out.writeWithUnsafeMutableBytes(minimumWritableBytes: room) { output in
                    stream.next_out = output.bindMemory(to: Bytef.self).baseAddress
                    stream.avail_out = uInt(room)
                    rc = CZlib.inflate(&stream, Z_NO_FLUSH)
                    return room - Int(stream.avail_out)
                }
                if rc == Z_BUF_ERROR && stream.avail_in == 0 { break }
                if rc == Z_BUF_ERROR { rc = Z_OK }
            }
        }
        if out.readableBytes > limit {
            throw .tooLarge(limit: limit)
        }
        guard rc == Z_STREAM_END else {
            throw .corrupt(rc == Z_OK || rc == Z_BUF_ERROR ? "the compressed message is truncated" : "not valid \(encoding.rawValue) data (zlib \(rc))")
        }
        if stream.avail_in != 0 {
            throw .corrupt("bytes after the end of the \(encoding.rawValue) data")
        }
        return out
    }

    /// A received message with the compressed flag, in the call's encoding: the flag without an
    /// encoding is a protocol error (INTERNAL, `withoutEncoding` saying so), and one that cannot
    /// be inflated within `limit` is the status `status(_:side:)` gives.
    static func inflate(
        _ bytes: ByteBuffer, _ encoding: MessageEncoding?, limit: Int, allocator: ByteBufferAllocator,
        side: GRPCFraming.Side, withoutEncoding: @autoclosure () -> String
    ) throws(RPCError) -> ByteBuffer {
        guard let encoding, encoding != .identity else {
            throw .internal(withoutEncoding())
        }
        do {
            return try decompress(bytes, encoding, limit: limit, allocator: allocator)
        } catch {
            throw status(error, side: side)
        }
    }

    /// The status for a message that could not be inflated, on the side that received it.
    static func status(_ failure: Failure, side: GRPCFraming.Side) -> RPCError {
        switch failure {
        case .tooLarge(let limit):
            return .resourceExhausted("\(side.rawValue) message inflates past the limit of \(limit) bytes")
        case .corrupt(let why):
            return .internal("could not decompress the \(side.rawValue) message: \(why)")
        }
    }
}
