import CNGHTTP2

#if canImport(Glibc)
import Glibc
#endif

// The one small layer over libnghttp2 1.52's C API (the ssize_t API: the *2
// variants arrived in 1.60): header lists, settings, the constants the
// connection handlers compare against.

enum NG {
    static let headersFrame = UInt8(NGHTTP2_HEADERS.rawValue)
    static let dataFrame = UInt8(NGHTTP2_DATA.rawValue)
    static let goawayFrame = UInt8(NGHTTP2_GOAWAY.rawValue)
    static let pingFrame = UInt8(NGHTTP2_PING.rawValue)
    static let settingsFrame = UInt8(NGHTTP2_SETTINGS.rawValue)
    static let rstStreamFrame = UInt8(NGHTTP2_RST_STREAM.rawValue)
    static let ackFlag = UInt8(NGHTTP2_FLAG_ACK.rawValue)
    static let endStream = UInt8(NGHTTP2_FLAG_END_STREAM.rawValue)
    static let temporalCallbackFailure = Int32(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
    static let callbackFailure = Int32(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue)
    static let deferred = Int(NGHTTP2_ERR_DEFERRED.rawValue)
    static let dataFlagEOF = UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue)
    static let dataFlagNoEndStream = UInt32(NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue)
    static let noError = UInt32(NGHTTP2_NO_ERROR.rawValue)
    static let cancel = UInt32(NGHTTP2_CANCEL.rawValue)
    static let refusedStream = UInt32(NGHTTP2_REFUSED_STREAM.rawValue)
    static let enhanceYourCalm = UInt32(NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
    static let protocolError = UInt32(NGHTTP2_PROTOCOL_ERROR.rawValue)
    static let flagNone = UInt8(NGHTTP2_FLAG_NONE.rawValue)
    static let nvNoCopy = UInt8(NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue)

    static func settings(_ pairs: [(nghttp2_settings_id, UInt32)]) -> [nghttp2_settings_entry] {
        pairs.map { nghttp2_settings_entry(settings_id: Int32($0.0.rawValue), value: $0.1) }
    }

    static func errorName(_ code: Int) -> String {
        String(cString: nghttp2_strerror(Int32(truncatingIfNeeded: code)))
    }
}

/// A header list laid out for nghttp2: every name and value in one byte
/// array, and the nv array pointing into it. nghttp2 copies what it is given
/// in submit_*, so this only has to live for the call.
struct HeaderList {
    private var bytes: [UInt8] = []
    private var spans: [(name: Range<Int>, value: Range<Int>)] = []

    init(capacity: Int = 8) {
        spans.reserveCapacity(capacity)
        bytes.reserveCapacity(capacity * 32)
    }

    mutating func add(_ name: String, _ value: String) {
        let n0 = bytes.count
        bytes.append(contentsOf: name.utf8)
        let v0 = bytes.count
        bytes.append(contentsOf: value.utf8)
        spans.append((n0..<v0, v0..<bytes.count))
    }

    func withNV<R>(_ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
        bytes.withUnsafeBufferPointer { raw in
            let base = UnsafeMutablePointer(mutating: raw.baseAddress ?? HeaderList.empty)
            return withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: max(spans.count, 1)) { nva in
                for (i, s) in spans.enumerated() {
                    nva[i] = nghttp2_nv(
                        name: base + s.name.lowerBound, value: base + s.value.lowerBound,
                        namelen: s.name.count, valuelen: s.value.count, flags: 0
                    )
                }
                return body(UnsafePointer(nva.baseAddress!), spans.count)
            }
        }
    }

    nonisolated(unsafe) private static let empty = UnsafePointer<UInt8>(UnsafeMutablePointer<UInt8>.allocate(capacity: 1))
}

/// Header lists sent on every call, built once and never freed, so that nghttp2
/// may reference them without copying.
struct StaticHeaders: @unchecked Sendable {
    let nva: UnsafeMutablePointer<nghttp2_nv>
    let count: Int

    init(_ pairs: [(String, String)]) {
        nva = .allocate(capacity: pairs.count)
        count = pairs.count
        for (i, (name, value)) in pairs.enumerated() {
            let n = Array(name.utf8)
            let v = Array(value.utf8)
            let np = UnsafeMutablePointer<UInt8>.allocate(capacity: n.count)
            np.initialize(from: n, count: n.count)
            let vp = UnsafeMutablePointer<UInt8>.allocate(capacity: max(v.count, 1))
            vp.initialize(from: v, count: v.count)
            nva[i] = nghttp2_nv(name: np, value: vp, namelen: n.count, valuelen: v.count, flags: NG.nvNoCopy)
        }
    }

    static let responseHeaders = StaticHeaders([(":status", "200"), ("content-type", "application/grpc")])
    static let okTrailers = StaticHeaders([("grpc-status", "0")])
}

/// Compares header bytes from nghttp2 with a known name without making a String.
@inline(__always)
func bytesEqual(_ p: UnsafePointer<UInt8>, _ len: Int, _ literal: StaticString) -> Bool {
    guard len == literal.utf8CodeUnitCount else { return false }
    return memcmp(p, literal.utf8Start, len) == 0
}

@inline(__always)
func makeString(_ p: UnsafePointer<UInt8>, _ len: Int) -> String {
    String(decoding: UnsafeBufferPointer(start: p, count: len), as: UTF8.self)
}

@inline(__always)
func bytesEqual(_ known: [UInt8], _ p: UnsafePointer<UInt8>, _ len: Int) -> Bool {
    guard known.count == len else { return false }
    if len == 0 { return true }
    return known.withUnsafeBufferPointer { memcmp($0.baseAddress!, p, len) == 0 }
}

import NIOCore

enum SessionOutput {
    /// Moves what nghttp2 has to send into the channel while it is writable,
    /// batched in writes of up to 64 KiB, and flushes. Never call it from
    /// inside an nghttp2 callback: mem_send is not re-entrant. Answers
    /// nghttp2's error code when the session failed, else 0.
    static func drain(_ session: OpaquePointer, into context: ChannelHandlerContext, sent: inout Int) -> Int {
        var out: ByteBuffer?
        while context.channel.isWritable {
            var chunk: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &chunk)
            if n < 0 { return n }
            if n == 0 { break }
            sent += n
            if out == nil {
                out = context.channel.allocator.buffer(capacity: max(n, 4096))
            }
            out!.writeBytes(UnsafeRawBufferPointer(start: chunk, count: n))
            if out!.readableBytes >= 65536 {
                context.write(NIOAny(out!), promise: nil)
                out = nil
            }
        }
        if let out {
            context.writeAndFlush(NIOAny(out), promise: nil)
        } else {
            context.flush()
        }
        return 0
    }
}

/// One timer per connection, armed for the soonest deadline of its calls: a
/// NIO timer per call would cost a heap insert and a linear cancel each.
struct SoonestDeadlineTimer {
    private var scheduled: Scheduled<Void>?
    private var at: NIODeadline?

    /// Arms for `deadline` unless the timer already fires sooner.
    mutating func arm(_ deadline: NIODeadline, on loop: any EventLoop, fire: @escaping () -> Void) {
        if let at, at <= deadline { return }
        scheduled?.cancel()
        at = deadline
        scheduled = loop.assumeIsolated().scheduleTask(deadline: deadline, fire)
    }

    /// Call first thing when it fires, before re-arming.
    mutating func fired() {
        scheduled = nil
        at = nil
    }

    mutating func cancel() {
        scheduled?.cancel()
        fired()
    }
}
