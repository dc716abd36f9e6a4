import CNGHTTP2
import MeshRPC
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// One multiplexed HTTP/2 client connection: an nghttp2 client session on the
/// channel's event loop. Calls are started and cancelled on the loop.
final class ClientConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    final class Call {
        let callID: UInt64
        let promise: EventLoopPromise<ByteBuffer>
        var request: ByteBuffer
        var body: ByteBuffer
        var grpcStatus: Int?
        var grpcMessage: String?
        var httpStatus = 0
        var trailers = Metadata()
        /// The response's `grpc-encoding` (nil: none).
        var encoding: MessageEncoding?
        var deadline: NIODeadline?
        var path = ""
        var failure: RPCError?
        /// True once nghttp2 has written the request's HEADERS: from then on the server may have acted on it.
        var sent = false
        var startedAt = NIODeadline.now()

        init(callID: UInt64, promise: EventLoopPromise<ByteBuffer>, request: ByteBuffer, allocator: ByteBufferAllocator) {
            self.callID = callID
            self.promise = promise
            self.request = request
            self.body = allocator.buffer(capacity: 0)
        }
    }


    let authority: String
    /// "https" over TLS.
    let scheme: String
    let maxMessageBytes: Int
    let connectionState: ClientConnection.SharedState
    var session: OpaquePointer?
    var context: ChannelHandlerContext?
    private var calls: [Int32: Call] = [:]
    private var streamsByCall: [UInt64: Int32] = [:]
    /// Streaming calls, apart from the unary ones so that the unary path stays as it was.
    var streamCalls: [Int32: StreamCall] = [:]
    var streamCallsByID: [UInt64: Int32] = [:]
    private var flushScheduled = false
    var goawayLastStreamID: Int32 = .max
    var deadlineTimer = SoonestDeadlineTimer()
    private let silenceTimeout: TimeAmount
    /// When the server last sent anything (a frame, a PING answer).
    var lastHeard = NIODeadline.now()
    private var probing = false

    struct Keepalive {
        let interval: TimeAmount
        let timeout: TimeAmount
        let withoutCalls: Bool
    }

    private let keepalive: Keepalive?
    private var keepaliveTimer: RepeatedTask?

    init(authority: String, scheme: String = "http", maxMessageBytes: Int, silenceTimeout: TimeAmount, keepalive: Keepalive? = nil, state: ClientConnection.SharedState) {
        self.authority = authority
        self.scheme = scheme
        self.maxMessageBytes = maxMessageBytes
        self.silenceTimeout = silenceTimeout
        self.keepalive = keepalive
        self.connectionState = state
    }

    /// A PING every interval while calls are open; no answer within the timeout closes the
    /// connection, failing its calls UNAVAILABLE, so the channel reconnects or goes elsewhere.
    private func keepalivePing() {
        guard let keepalive, let session, let context, context.channel.isActive else { return }
        guard keepalive.withoutCalls || !calls.isEmpty || !streamCalls.isEmpty else { return }
        let askedAt = NIODeadline.now()
        nghttp2_submit_ping(session, NG.flagNone, nil)
        scheduleFlush()
        context.eventLoop.assumeIsolated().scheduleTask(in: keepalive.timeout) {
            guard self.lastHeard < askedAt, let context = self.context, context.channel.isActive else { return }
            self.connectionState.markClosed()
            self.failAll(.unavailable("\(self.authority) did not answer a keepalive PING within \(keepalive.timeout)"))
            context.close(promise: nil)
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks, clientOnHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, clientOnFrameRecv)
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, clientOnFrameSend)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, clientOnDataChunkRecv)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, clientOnStreamClose)
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        defer { nghttp2_option_del(option) }
        // Window updates are ours to send: a streaming call's reader that stops reading holds the server.
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_session_client_new2(&session, callbacks, Unmanaged.passUnretained(self).toOpaque(), option)
        var settings = NG.settings([
            (NGHTTP2_SETTINGS_ENABLE_PUSH, 0),
            (NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20),
            (NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024),
        ])
        nghttp2_submit_settings(session, NG.flagNone, &settings, settings.count)
        nghttp2_session_set_local_window_size(session, NG.flagNone, 0, 16 << 20)
        if let keepalive {
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            keepaliveTimer = context.eventLoop.scheduleRepeatedTask(initialDelay: keepalive.interval, delay: keepalive.interval) { _ in
                bound.value.keepalivePing()
            }
        }
        if context.channel.isActive {
            flush()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        keepaliveTimer?.cancel()
        keepaliveTimer = nil
        failAll(.unavailable("connection closed"))
        if let session {
            nghttp2_session_del(session)
        }
        session = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        flush()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connectionState.markClosed()
        failAll(.unavailable("connection to \(authority) closed"))
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session else { return }
        lastHeard = .now()
        if !connectionState.hasHeard { connectionState.markHeard() }
        if connectionState.isSuspect { connectionState.markSuspect(false) }
        let buffer = unwrapInboundIn(data)
        let result = buffer.withUnsafeReadableBytes { raw in
            nghttp2_session_mem_recv(session, raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count)
        }
        if result < 0 {
            failAll(.unavailable("HTTP/2 error from \(authority): \(NG.errorName(result))"))
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flush()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { flush() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(.unavailable("connection to \(authority) failed: \(error)"))
        context.close(promise: nil)
    }

    private func failAll(_ error: RPCError) {
        let pending = calls
        calls.removeAll()
        streamsByCall.removeAll()
        deadlineTimer.cancel()
        failStreamCalls(error)
        for call in pending.values {
            call.promise.fail(call.sent ? error as Error : CallNotSent(error: error))
        }
    }

    // MARK: Calls (on the event loop)

    func start(_ request: ClientRequest, callID: UInt64, promise: EventLoopPromise<ByteBuffer>) {
        guard let session, let context, context.channel.isActive, !connectionState.isDraining else {
            promise.fail(CallNotSent(error: .unavailable("connection to \(authority) is not usable")))
            return
        }
        var headers: HeaderList
        do {
            headers = try requestHeaders(request.method, deadline: request.deadline, extra: request.metadata.count)
        } catch {
            promise.fail(error)
            return
        }
        var body = request.body
        if let encoding = request.compression, encoding != .identity {
            headers.add("grpc-encoding", encoding.rawValue)
            headers.add("grpc-accept-encoding", MessageEncoding.acceptHeader)
            let message = body.getSlice(at: body.readerIndex + GRPCFraming.prefixLength, length: body.readableBytes - GRPCFraming.prefixLength)!
            body = GRPCFraming.frame(compressed: MessageCompression.compress(message, encoding, allocator: context.channel.allocator), allocator: context.channel.allocator)
        }
        for (name, value) in request.metadata {
            headers.add(name, value)
        }
        let call = Call(callID: callID, promise: promise, request: body, allocator: context.channel.allocator)
        var provider = nghttp2_data_provider()
        provider.read_callback = clientReadRequest
        let streamID = headers.withNV { nva, count in
            nghttp2_submit_request(session, nil, nva, count, &provider, nil)
        }
        if streamID < 0 {
            promise.fail(CallNotSent(error: .unavailable("could not start a stream to \(authority): \(NG.errorName(Int(streamID)))")))
            return
        }
        calls[streamID] = call
        streamsByCall[callID] = streamID
        if let deadline = request.deadline {
            call.deadline = deadline
            call.path = request.method.path
            deadlineTimer.arm(deadline, on: context.eventLoop) { self.expireDeadlines() }
        }
        scheduleFlush()
    }

    /// A call's request headers up to its metadata; DEADLINE_EXCEEDED when its deadline has passed.
    func requestHeaders(_ method: MethodDescriptor, deadline: NIODeadline?, extra: Int) throws(RPCError) -> HeaderList {
        var headers = HeaderList(capacity: 8 + extra)
        headers.add(":method", "POST")
        headers.add(":scheme", scheme)
        headers.add(":path", method.path)
        headers.add(":authority", authority)
        headers.add("content-type", "application/grpc")
        headers.add("te", "trailers")
        headers.add("user-agent", "chatmesh-swift/1")
        if let deadline {
            let remaining = deadline - .now()
            if remaining <= .zero {
                throw .deadlineExceeded("deadline passed before \(method.path) was sent")
            }
            headers.add("grpc-timeout", GRPCTimeout.format(remaining))
        }
        return headers
    }

    func expireDeadlines() {
        deadlineTimer.fired()
        let now = NIODeadline.now()
        var next: NIODeadline?
        for call in calls.values {
            guard let deadline = call.deadline else { continue }
            if deadline <= now {
                if lastHeard < call.startedAt { probeSilence() }
                abort(callID: call.callID, error: .deadlineExceeded("deadline exceeded calling \(call.path)"))
            } else if next.map({ deadline < $0 }) ?? true {
                next = deadline
            }
        }
        if let soonest = expireStreamDeadlines(now: now) {
            next = next.map { min($0, soonest) } ?? soonest
        }
        if let next, let loop = context?.eventLoop {
            deadlineTimer.arm(next, on: loop) { self.expireDeadlines() }
        }
    }

    /// A call ran out of time and the server has sent nothing since it began: the link may
    /// be cut (packets dropped, nothing refused), which TCP would notice only after minutes.
    /// New calls avoid this connection while a PING asks; silence for `silenceTimeout`
    /// closes it, so the channel reconnects and the other addresses carry the calls.
    func probeSilence() {
        guard !probing, let session, let context else { return }
        probing = true
        connectionState.markSuspect(true)
        let askedAt = NIODeadline.now()
        nghttp2_submit_ping(session, NG.flagNone, nil)
        scheduleFlush()
        context.eventLoop.assumeIsolated().scheduleTask(in: silenceTimeout) {
            self.probing = false
            guard self.lastHeard < askedAt, let context = self.context else { return }
            self.connectionState.markClosed()
            self.failAll(.unavailable("\(self.authority) stopped answering (no reply to a PING within \(self.silenceTimeout))"))
            context.close(promise: nil)
        }
    }

    /// Cancels a call (deadline or the caller's task was cancelled): RST_STREAM(CANCEL).
    func abort(callID: UInt64, error: RPCError) {
        guard let session, let streamID = streamsByCall.removeValue(forKey: callID),
              let call = calls.removeValue(forKey: streamID) else { return }
        call.promise.fail(error)
        nghttp2_submit_rst_stream(session, NG.flagNone, streamID, NG.cancel)
        scheduleFlush()
    }

    func scheduleFlush() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            self.flush()
        }
    }

    private func flush() {
        guard let session, let context else { return }
        var sent = 0
        let error = SessionOutput.drain(session, into: context, sent: &sent)
        if error != 0 {
            failAll(.unavailable("HTTP/2 error to \(authority): \(NG.errorName(error))"))
            context.close(promise: nil)
            return
        }
        if connectionState.isDraining && calls.isEmpty && streamCalls.isEmpty {
            context.close(promise: nil)
        }
    }

    // MARK: nghttp2 callbacks

    fileprivate func onHeader(_ frame: UnsafePointer<nghttp2_frame>, _ name: UnsafePointer<UInt8>, _ nameLen: Int, _ value: UnsafePointer<UInt8>, _ valueLen: Int) -> Int32 {
        guard let call = calls[frame.pointee.hd.stream_id] else {
            if let call = streamCalls[frame.pointee.hd.stream_id] {
                streamHeader(call, frame, name, nameLen, value, valueLen)
            }
            return 0
        }
        if bytesEqual(name, nameLen, ":status") {
            call.httpStatus = Int(makeString(value, valueLen)) ?? 0
        } else if bytesEqual(name, nameLen, "grpc-status") {
            call.grpcStatus = Int(makeString(value, valueLen))
        } else if bytesEqual(name, nameLen, "grpc-message") {
            call.grpcMessage = StatusMessageEncoding.decode(makeString(value, valueLen))
        } else if bytesEqual(name, nameLen, "grpc-encoding") {
            call.encoding = MessageEncoding(rawValue: makeString(value, valueLen))
        } else if name[0] != UInt8(ascii: ":"), !bytesEqual(name, nameLen, "content-type"), !bytesEqual(name, nameLen, "grpc-accept-encoding") {
            call.trailers.add(makeString(name, nameLen), makeString(value, valueLen))
        }
        return 0
    }

    fileprivate func onFrameRecv(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        if frame.pointee.hd.type == NG.headersFrame, let call = streamCalls[frame.pointee.hd.stream_id] {
            streamHeadersReceived(call, frame)
        }
        if frame.pointee.hd.type == NG.goawayFrame {
            // The server is going away: calls above last_stream_id were not processed
            // and are closed as refused; new calls go to a new connection.
            goawayLastStreamID = frame.pointee.goaway.last_stream_id
            connectionState.markDraining()
        }
        return 0
    }

    fileprivate func onFrameSend(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        if frame.pointee.hd.type == NG.headersFrame, let call = calls[frame.pointee.hd.stream_id] {
            call.sent = true
        }
        if frame.pointee.hd.type == NG.headersFrame, let call = streamCalls[frame.pointee.hd.stream_id] {
            call.sent = true
        }
        return 0
    }

    fileprivate func onDataChunk(_ streamID: Int32, _ data: UnsafePointer<UInt8>, _ len: Int) -> Int32 {
        guard let session else { return 0 }
        if let call = streamCalls[streamID] {
            streamData(call, streamID, UnsafeRawBufferPointer(start: data, count: len))
            return 0
        }
        // A unary response is wanted whole: its window opens as it arrives.
        nghttp2_session_consume(session, streamID, len)
        guard let call = calls[streamID], call.failure == nil else { return 0 }
        if call.body.readableBytes + len > maxMessageBytes + GRPCFraming.prefixLength {
            call.failure = .resourceExhausted("response from \(authority) is over the limit of \(maxMessageBytes) bytes")
            nghttp2_submit_rst_stream(session, NG.flagNone, streamID, NG.cancel)
            return 0
        }
        call.body.writeBytes(UnsafeRawBufferPointer(start: data, count: len))
        return 0
    }

    fileprivate func onStreamClose(_ streamID: Int32, _ errorCode: UInt32) -> Int32 {
        guard let call = calls.removeValue(forKey: streamID) else {
            if let call = streamCalls.removeValue(forKey: streamID) {
                streamCallsByID.removeValue(forKey: call.callID)
                streamClosed(call, streamID: streamID, errorCode: errorCode)
            }
            return 0
        }
        streamsByCall.removeValue(forKey: call.callID)
        call.promise.completeWith(outcome(call, streamID: streamID, errorCode: errorCode))
        return 0
    }

    private func outcome(_ call: Call, streamID: Int32, errorCode: UInt32) -> Result<ByteBuffer, Error> {
        if let failure = call.failure { return .failure(failure) }
        if let status = call.grpcStatus {
            if status == 0 {
                do {
                    if case .compressed(let bytes) = GRPCFraming.unframeUnary(call.body, maxMessageBytes: maxMessageBytes) {
                        return .success(try inflate(bytes, call.encoding))
                    }
                    return .success(try GRPCFraming.unaryMessage(call.body, maxMessageBytes: maxMessageBytes, side: .response))
                } catch {
                    return .failure(RPCError(error.code, "bad response from \(authority): \(error.message)"))
                }
            }
            return .failure(RPCError(RPCError.Code(wireValue: status), call.grpcMessage ?? "", metadata: call.trailers))
        }
        return .failure(statusWithoutGRPCStatus(httpStatus: call.httpStatus, streamID: streamID, errorCode: errorCode))
    }

    /// No gRPC status: the stream was reset or the response was not gRPC.
    func statusWithoutGRPCStatus(httpStatus: Int, streamID: Int32, errorCode: UInt32) -> any Error {
        if errorCode == NG.refusedStream || streamID > goawayLastStreamID {
            return CallNotSent(error: .unavailable("\(authority) refused the stream"))
        }
        if errorCode == NG.cancel { return RPCError.cancelled("stream cancelled by \(authority)") }
        if errorCode == NG.enhanceYourCalm { return RPCError.resourceExhausted("\(authority) said ENHANCE_YOUR_CALM") }
        if errorCode != NG.noError { return RPCError.internal("stream reset by \(authority) with HTTP/2 error \(errorCode)") }
        switch httpStatus {
        case 400: return RPCError.internal("HTTP 400 from \(authority)")
        case 401: return RPCError.unauthenticated("HTTP 401 from \(authority)")
        case 403: return RPCError.permissionDenied("HTTP 403 from \(authority)")
        case 404: return RPCError.unimplemented("HTTP 404 from \(authority)")
        case 429, 502, 503, 504: return RPCError.unavailable("HTTP \(httpStatus) from \(authority)")
        default: return RPCError.unknown("response from \(authority) had no grpc-status (HTTP \(httpStatus))")
        }
    }

    fileprivate func readRequest(_ streamID: Int32, _ buf: UnsafeMutablePointer<UInt8>, _ length: Int, _ flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let call = calls[streamID] else { return Int(NG.temporalCallbackFailure) }
        let n = min(length, call.request.readableBytes)
        call.request.readWithUnsafeReadableBytes { raw in
            if n > 0 { UnsafeMutableRawPointer(buf).copyMemory(from: raw.baseAddress!, byteCount: n) }
            return n
        }
        if call.request.readableBytes == 0 {
            flags.pointee |= NG.dataFlagEOF
        }
        return n
    }
}

/// A call that failed before the server could have acted on it: safe to retry on another connection.
struct CallNotSent: Error {
    let error: RPCError
}

extension RPCError {
    static func unknown(_ message: String) -> RPCError { RPCError(.unknown, message) }
}

@inline(__always)
private func handler(_ userData: UnsafeMutableRawPointer?) -> ClientConnectionHandler {
    Unmanaged<ClientConnectionHandler>.fromOpaque(userData!).takeUnretainedValue()
}

private let clientOnHeader: nghttp2_on_header_callback = { _, frame, name, nameLen, value, valueLen, _, userData in
    handler(userData).onHeader(frame!, name!, nameLen, value!, valueLen)
}

private let clientOnFrameRecv: nghttp2_on_frame_recv_callback = { _, frame, userData in
    handler(userData).onFrameRecv(frame!)
}

private let clientOnFrameSend: nghttp2_on_frame_send_callback = { _, frame, userData in
    handler(userData).onFrameSend(frame!)
}

private let clientOnDataChunkRecv: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, data, len, userData in
    handler(userData).onDataChunk(streamID, data!, len)
}

private let clientOnStreamClose: nghttp2_on_stream_close_callback = { _, streamID, errorCode, userData in
    handler(userData).onStreamClose(streamID, errorCode)
}

private let clientReadRequest: nghttp2_data_source_read_callback = { _, streamID, buf, length, flags, _, userData in
    handler(userData).readRequest(streamID, buf!, length, flags!)
}
