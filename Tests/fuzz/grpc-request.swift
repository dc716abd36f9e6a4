import NIOCore

// libFuzzer target: what the transport does with a request stream's bytes before any handler —
// its `grpc-timeout` and `grpc-accept-encoding` values, the DATA cut into gRPC messages however
// the frames split them, and each compressed message inflated within the message limit.
// Input: byte 0 picks the encoding (bits 0-1) and the limit (bit 2: 64 bytes or 4 MiB); byte 1 the
// chunk size; then header text up to a NUL; then the stream's DATA bytes.
// Beyond not crashing: the messages do not depend on how the bytes were split, none is over the
// limit, and nothing inflates past it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGRPCRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    guard input.count >= 2 else { return 0 }
    let encoding: MessageEncoding = [.identity, .gzip, .deflate, .gzip][Int(input[0] & 3)]
    let limit = input[0] & 4 == 0 ? 64 : 4 << 20
    let chunk = Int(input[1]) + 1
    let rest = input[2...]
    let headerEnd = rest.firstIndex(of: 0) ?? rest.endIndex
    let header = String(decoding: rest[rest.startIndex..<headerEnd], as: UTF8.self)
    if let timeout = GRPCTimeout.parse(header) {
        precondition(timeout.nanoseconds >= 0, "a negative timeout from \(header.debugDescription)")
        _ = GRPCTimeout.parse(GRPCTimeout.format(timeout))
    }
    _ = GRPCTimeout.parse(Array(header.utf8))
    _ = MessageEncoding.accepted(header)
    let body = headerEnd < rest.endIndex ? Array(rest[(headerEnd + 1)...]) : []

    let whole = deframe(body, chunk: max(body.count, 1), limit: limit)
    let split = deframe(body, chunk: chunk, limit: limit)
    precondition(whole == split, "the messages depend on how the DATA was split")
    for message in split.messages where message.compressed && encoding != .identity {
        let allocator = ByteBufferAllocator()
        if let inflated = try? MessageCompression.decompress(ByteBuffer(bytes: message.bytes), encoding, limit: limit, allocator: allocator) {
            precondition(inflated.readableBytes <= limit, "inflated past the limit")
        }
    }
    return 0
}

struct Deframed: Equatable {
    var messages: [(bytes: [UInt8], compressed: Bool)] = []
    var failure: GRPCMessageDeframer.Failure?
    var partial = false

    static func == (a: Deframed, b: Deframed) -> Bool {
        a.failure == b.failure && a.partial == b.partial && a.messages.count == b.messages.count
            && zip(a.messages, b.messages).allSatisfy { $0.bytes == $1.bytes && $0.compressed == $1.compressed }
    }
}

func deframe(_ body: [UInt8], chunk: Int, limit: Int) -> Deframed {
    var deframer = GRPCMessageDeframer(maxMessageBytes: limit)
    var out = Deframed()
    var offset = 0
    while offset < body.count, out.failure == nil {
        let end = min(offset + chunk, body.count)
        body[offset..<end].withUnsafeBytes { deframer.append($0) }
        offset = end
        do {
            while let message = try deframer.next() {
                precondition(message.bytes.readableBytes <= limit, "a message over the limit")
                out.messages.append((Array(message.bytes.readableBytesView), message.compressed))
            }
        } catch {
            out.failure = error
        }
    }
    out.partial = out.failure == nil && deframer.hasPartialMessage
    return out
}
