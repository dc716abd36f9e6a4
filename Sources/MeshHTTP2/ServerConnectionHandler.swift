import CNGHTTP2
import Logging
import MeshMetrics
import MeshRPC
import MeshTracing
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Asks a server connection to finish its calls and close (sent as an outbound user event).
struct GracefulDrainEvent: Sendable {}

/// One HTTP/2 server connection: an nghttp2 session fed from and drained to
/// the channel, touched only on the channel's event loop. Each complete
/// request runs in its own Task; its answer hops back to the loop.
final class ServerConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// One request and, later, its response.
    final class Stream {
        let id: Int32
        var path: String?
        var isPost = false
        var grpcContentType = false
        var authorization: String?
        var deadline: NIODeadline?
        var timeout: TimeAmount?
        var timeoutMalformed = false
        /// `grpc-encoding` of the request messages (nil: none), or the name we do not speak.
        var requestEncoding: MessageEncoding?
        var unsupportedEncoding: String?
        /// `grpc-accept-encoding`: what the client can inflate.
        var acceptEncoding: String?
        var metadata = Metadata()
        var headerBytes = 0
        /// The client has sent END_STREAM: closed before that, the stream was abandoned.
        var clientEnded = false
        var body: ByteBuffer?
        var route: RPCRoute?
        var principal: Principal?
        /// Request bytes held for this stream (released to the connection budget on close).
        var heldBytes = 0
        /// Set once the response (or an error) has been submitted: later data is dropped.
        var answered = false
        var task: Task<Void, Never>?
        var response: ByteBuffer?
        /// Set for calls to streaming routes (and unary routes served as streams).
        var streaming: StreamingCall?
        /// Metrics on: the method's series, when the call was admitted, and how it ended
        /// (a stream closed before any status was sent was cancelled by the client).
        var callMetrics: MethodMetrics?
        var startedAt = NIODeadline.uptimeNanoseconds(0)
        var code = RPCError.Code.cancelled

        init(id: Int32) {
            self.id = id
        }
    }

    /// What a streaming call holds besides its `Stream`.
    final class StreamingCall {
        var machine = ServerStreamStateMachine()
        var deframer: GRPCMessageDeframer
        let requests: RPCMessageQueue<InboundMessage>
        let context: ServerContext
        /// Set when the headers declared a `grpc-encoding` for the responses.
        var responseEncoding: MessageEncoding?
        /// Request bytes received and not yet taken by the handler.
        var unreadBytes = 0
        /// Window not yet given back because the handler is not reading.
        var withheldBytes = 0
        /// Response messages not yet given to nghttp2, and the handler's writes waiting for room.
        var outbound = StreamOutbound()
        var status: RPCError?
        var statusQueued = false

        init(maxMessageBytes: Int, requests: RPCMessageQueue<InboundMessage>, context: ServerContext) {
            self.deframer = GRPCMessageDeframer(maxMessageBytes: maxMessageBytes)
            self.requests = requests
            self.context = context
        }
    }

    /// A request message on its way to the handler: inflated, with what it cost on the wire.
    struct InboundMessage: Sendable {
        let bytes: ByteBuffer
        let compressed: Bool
        let wireBytes: Int
    }

    /// The handler's unread request bytes past which the stream's window stops opening.
    static let inboundHighWater = 64 * 1024

    let router: RPCRouter
    let config: GRPCServer.Config
    let logger: Logger
    let metrics: ServerMetrics?
    /// The last method's series: calls on a connection tend to repeat one method.
    private var lastMethodMetrics: (path: String, metrics: MethodMetrics)?
    /// What this connection counted and has not reported yet, and whether a report is scheduled.
    private var tally = ConnectionTally()
    private var tallyReportScheduled = false
    var session: OpaquePointer?
    var context: ChannelHandlerContext?
    var streams: [Int32: Stream] = [:]
    /// The stream whose headers are being received: header callbacks come in a run per stream.
    private var receiving: Stream?
    var heldBytes = 0
    /// Window updates withheld while the connection holds more than its budget.
    private var deferredConsumes: [(Int32, Int)] = []
    private var readPending = false
    private var flushScheduled = false
    /// Made once: scheduling a flush then allocates no closure.
    private var scheduledFlush: (() -> Void)?
    var draining = false
    /// The second GOAWAY of a drain (the one that names the last stream) is queued.
    private var finalGoawaySent = false
    private var closing = false
    /// A GOAWAY that ends the connection is queued: close once it is written.
    private var closeAfterFlush = false
    var peer = ""
    var executor: EventLoopTaskExecutor?
    private var deadlineTimer = SoonestDeadlineTimer()
    /// Clients send the same path and token call after call: the last ones are
    /// remembered so the common case makes no String and verifies nothing.
    /// Connection liveness: when it opened, when it last had a call, the client's PING pace.
    private let openedAt = NIODeadline.now()
    private var lastActive = NIODeadline.now()
    /// Streams begun since the last age check: counted, not timed, so a call reads no clock for it.
    private var streamsSinceCheck = 0
    private var drainStartedAt: NIODeadline?
    private var lastPingAt: NIODeadline?
    private var pingStrikes = 0
    /// What the peer must do in time and must not do too often (handshake, header blocks, stream ids, SETTINGS).
    private var connectionGuard: ConnectionGuard
    private var guardTicking = false
    /// Bytes written since the guard's last tick (a stalled peer's connection writes none).
    private var sentSinceTick = 0
    /// Unary answers' bytes nghttp2 has not taken yet: past the connection's budget, new calls
    /// are refused rather than answered into memory a peer that does not read would pin.
    private var unsentAnswerBytes = 0
    /// Shared with the server, which lets a connection that never completed its handshake go first when full.
    let record: ConnectionRecord

    /// The server is sending headers or data: as gRPC servers do, a client's PINGs count as
    /// strikes only while the server sends nothing (grpc's BDP probes ping along with data).
    func sendingResponse() {
        pingStrikes = 0
        lastPingAt = nil
    }
    private var ageTimer: RepeatedTask?
    /// The age past which this connection drains: the configured age ±10 %, so that
    /// connections opened together do not all reconnect at once.
    private let maxAge: TimeAmount?
    private var lastPath: (bytes: [UInt8], path: String, route: RPCRoute?)?
    private var lastAuthorization: (bytes: [UInt8], value: String)?
    private var lastPrincipal: VerifiedToken?

    /// A class, so that checking the remembered token copies one reference, not its strings.
    private final class VerifiedToken {
        let authorization: String
        let principal: Principal

        init(authorization: String, principal: Principal) {
            self.authorization = authorization
            self.principal = principal
        }
    }

    init(router: RPCRouter, config: GRPCServer.Config, logger: Logger, record: ConnectionRecord) {
        self.router = router
        self.config = config
        self.logger = logger
        self.metrics = config.metrics
        self.record = record
        connectionGuard = ConnectionGuard(
            limits: .init(handshakeTimeout: config.handshakeTimeout, sendStallTimeout: config.sendStallTimeout), openedAt: record.openedAt
        )
        self.maxAge = config.maxConnectionAge.map { .nanoseconds(Int64(Double($0.nanoseconds) * Double.random(in: 0.9...1.1))) }
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        executor = EventLoopTaskExecutor(loop: context.eventLoop)
        // Strong on purpose: a flush still queued when the connection goes must find the
        // handler alive (it then does nothing). handlerRemoved breaks the cycle.
        scheduledFlush = {
            self.flushScheduled = false
            self.flush()
        }
        peer = context.channel.remoteAddress?.description ?? ""
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, serverOnBeginFrame)
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, serverOnBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, serverOnHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, serverOnFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, serverOnDataChunkRecv)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, serverOnStreamClose)
        if metrics != nil {
            // Only to count the GOAWAYs nghttp2 sends, its own (a protocol error, a flood) among them.
            nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, serverOnFrameSend)
        }

        var option: OpaquePointer?
        nghttp2_option_new(&option)
        defer { nghttp2_option_del(option) }
        // Window updates are ours to send, so that what a peer makes us buffer stays bounded.
        nghttp2_option_set_no_auto_window_update(option, 1)
        // The guard limits resets (and answers as gRPC servers do); nghttp2's limit is the backstop.
        let resets = connectionGuard.limits.resets
        nghttp2_option_set_stream_reset_rate_limit(option, UInt64(resets.burst * 2), UInt64(resets.perSecond * 2))

        nghttp2_session_server_new2(&session, callbacks, Unmanaged.passUnretained(self).toOpaque(), option)
        var settings = NG.settings([
            (NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, config.maxConcurrentStreams),
            (NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, UInt32(config.streamWindowBytes)),
            (NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, UInt32(config.maxHeaderListBytes)),
        ])
        nghttp2_submit_settings(session, NG.flagNone, &settings, settings.count)
        nghttp2_session_set_local_window_size(session, NG.flagNone, 0, Int32(config.connectionWindowBytes))
        let limits = [config.maxConnectionIdle, maxAge].compactMap { $0 }
        if let shortest = limits.min() {
            // Checked at a tenth of the shortest limit: a connection lives at most 10 % past it.
            let every = max(TimeAmount.milliseconds(50), .nanoseconds(shortest.nanoseconds / 10))
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            ageTimer = context.eventLoop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in
                bound.value.checkAge()
            }
        }
        tickGuard(after: connectionGuard.tickInterval)
        if context.channel.isActive {
            flush()
        }
    }

    /// Ticks the guard while it waits for something (the handshake, a header block begun).
    private func tickGuard(after delay: TimeAmount) {
        guard !guardTicking, let context else { return }
        guardTicking = true
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: delay) {
            let handler = bound.value
            handler.guardTicking = false
            guard handler.context != nil else { return }
            let waiting = handler.answersWaiting
            handler.act(handler.connectionGuard.tick(now: .now(), answersWaiting: waiting, sentSinceLastTick: handler.sentSinceTick > 0))
            handler.sentSinceTick = 0
            if handler.connectionGuard.wantsTicks || waiting { handler.tickGuard(after: handler.connectionGuard.tickInterval) }
        }
    }

    /// Response bytes are queued for the peer (a unary answer, or a stream's messages).
    private var answersWaiting: Bool {
        unsentAnswerBytes > 0 || streams.values.contains { $0.streaming.map { !$0.outbound.isEmpty } ?? false }
    }

    /// Answers are queued: the guard ticks to notice a peer that never takes them.
    func answersQueued() {
        if config.sendStallTimeout != nil { tickGuard(after: connectionGuard.tickInterval) }
    }

    /// A guard's verdict, outside mem_recv: GOAWAY with its code and reason, then close.
    private func act(_ action: ConnectionGuard.Action) {
        guard case .goaway(let code, let reason) = action else { return }
        endConnection(code, reason)
        flush()
    }

    /// Queues a GOAWAY that ends the connection, its reason as debug data; the next flush sends it
    /// and closes.
    private func endConnection(_ code: UInt32, _ reason: String) {
        guard let session, !closing else { return }
        logger.debug("closing a connection", metadata: ["peer": "\(peer)", "reason": "\(reason)"])
        let data = Array(reason.utf8)
        nghttp2_submit_goaway(session, NG.flagNone, nghttp2_session_get_last_proc_stream_id(session), code, data, data.count)
        closeAfterFlush = true
    }

    /// Idle past `maxConnectionIdle`, or older than `maxConnectionAge`: GOAWAY, calls in flight
    /// finish (an aged one gets `maxConnectionAgeGrace`), then the connection closes.
    private func checkAge() {
        let now = NIODeadline.now()
        if streamsSinceCheck > 0 || !streams.isEmpty {
            lastActive = now
            streamsSinceCheck = 0
        }
        if let idle = config.maxConnectionIdle, streams.isEmpty, now - lastActive >= idle, !draining {
            logger.debug("closing an idle connection", metadata: ["peer": "\(peer)"])
            beginDrain()
        }
        if let maxAge, now - openedAt >= maxAge {
            if !draining {
                logger.debug("draining a connection past its maximum age", metadata: ["peer": "\(peer)"])
                beginDrain()
            } else if let started = drainStartedAt, now - started >= config.maxConnectionAgeGrace {
                closeConnection()
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if let metrics { tally.report(to: metrics.transport) }
        ageTimer?.cancel()
        ageTimer = nil
        for stream in streams.values {
            stream.task?.cancel()
        }
        deadlineTimer.cancel()
        streams.removeAll()
        if let session {
            nghttp2_session_del(session)
        }
        session = nil
        scheduledFlush = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        flush()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        for stream in streams.values {
            stream.task?.cancel()
        }
        deadlineTimer.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session, !closing else { return }
        let buffer = unwrapInboundIn(data)
        if metrics != nil {
            tally.received(buffer.readableBytes)
            tallied()
        }
        let result = buffer.withUnsafeReadableBytes { raw in
            nghttp2_session_mem_recv(session, raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count)
        }
        if result < 0 {
            // Garbage instead of a preface, a bad frame, a flood: nghttp2 (or the guard) has
            // queued a GOAWAY where it could; send it and close.
            logger.debug("closing connection", metadata: ["peer": "\(peer)", "reason": "\(NG.errorName(result))"])
            closeAfterFlush = true
            flush()
            closeConnection()
        } else if connectionGuard.wantsTicks {
            // A header block stopped mid-way: it has the handshake timeout to finish.
            tickGuard(after: connectionGuard.tickInterval)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flush()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            flush()
            if readPending {
                readPending = false
                context.read()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("connection error", metadata: ["peer": "\(peer)", "error": "\(error)"])
        closeConnection()
    }

    /// Reading stops while the peer does not read what we write: a peer that
    /// never reads cannot make us queue without bound.
    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            context.read()
        } else {
            readPending = true
        }
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if event is GracefulDrainEvent {
            beginDrain()
            promise?.succeed()
        } else {
            context.triggerUserOutboundEvent(event, promise: promise)
        }
    }

    // MARK: Shutdown

    /// A graceful GOAWAY in two steps, as gRPC servers drain: first a notice (last stream id
    /// 2^31-1: no stream is refused yet, the client stops opening new ones) and a PING; when the
    /// PING comes back — the client has read the notice, so nothing it sent before is still on its
    /// way — the real GOAWAY naming the last stream served. A stream the client opened while the
    /// notice travelled is served, not refused or cut off by the close.
    private func beginDrain() {
        guard let session, !draining else { return }
        draining = true
        drainStartedAt = .now()
        nghttp2_submit_shutdown_notice(session)
        _ = Self.drainPing.withUnsafeBufferPointer { nghttp2_submit_ping(session, NG.flagNone, $0.baseAddress) }
        // A client that never answers gets the real GOAWAY anyway.
        context?.eventLoop.assumeIsolated().scheduleTask(in: Self.drainNoticeTimeout) {
            self.sendFinalGoaway()
            self.flush()
        }
        flush()
    }

    private static let drainPing: [UInt8] = Array("cm-drain".utf8)
    private static let drainNoticeTimeout: TimeAmount = .seconds(1)

    /// Streams up to the last one received are served; later ones the client retries elsewhere.
    private func sendFinalGoaway() {
        guard let session, draining, !finalGoawaySent else { return }
        finalGoawaySent = true
        nghttp2_submit_goaway(session, NG.flagNone, nghttp2_session_get_last_proc_stream_id(session), NG.noError, nil, 0)
    }

    private func closeConnection() {
        guard !closing, let context else { return }
        closing = true
        context.close(promise: nil)
    }

    // MARK: Output

    func scheduleFlush() {
        guard !flushScheduled, let context, let scheduledFlush else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute(scheduledFlush)
    }

    /// Drains nghttp2's output into the channel while it is writable. Never
    /// called from inside an nghttp2 callback (mem_send is not re-entrant).
    private func flush() {
        guard let session, let context, !closing else { return }
        var sent = 0
        let error = SessionOutput.drain(session, into: context, sent: &sent)
        sentSinceTick &+= sent
        if sent > 0, metrics != nil {
            tally.sent(sent)
            tallied()
        }
        if error != 0 {
            logger.debug("nghttp2 send failed", metadata: ["peer": "\(peer)", "reason": "\(NG.errorName(error))"])
            closeConnection()
            return
        }
        if closeAfterFlush || (nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0) {
            closeConnection()
        } else if finalGoawaySent && streams.isEmpty && nghttp2_session_want_write(session) == 0 {
            closeConnection()
        }
    }

    // MARK: nghttp2 callbacks (called from inside mem_recv)

    fileprivate func onBeginFrame(_ header: UnsafePointer<nghttp2_frame_hd>) -> Int32 {
        let id = header.pointee.stream_id
        let type = header.pointee.type
        guard type == NG.headersFrame || type == NG.rstStreamFrame || type == NG.settingsFrame else { return 0 }
        let action = connectionGuard.frameBegan(type: type, flags: header.pointee.flags, stream: id, streamIsOpen: streams[id] != nil)
        guard case .goaway(let code, let reason) = action else { return 0 }
        // Queued now, sent by the flush that follows mem_recv's failure.
        endConnection(code, reason)
        return NG.callbackFailure
    }

    fileprivate func onBeginHeaders(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        guard frame.pointee.hd.type == NG.headersFrame, frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST else { return 0 }
        let id = frame.pointee.hd.stream_id
        connectionGuard.headerBlockBegan(id)
        let stream = Stream(id: id)
        streams[id] = stream
        if metrics != nil { tally.opened() }
        receiving = stream
        streamsSinceCheck &+= 1
        // A client with calls to make may ping as it likes (gRPC resets its strikes when it sends).
        pingStrikes = 0
        return 0
    }

    fileprivate func onHeader(_ frame: UnsafePointer<nghttp2_frame>, _ name: UnsafePointer<UInt8>, _ nameLen: Int, _ value: UnsafePointer<UInt8>, _ valueLen: Int) -> Int32 {
        let id = frame.pointee.hd.stream_id
        guard let stream = receiving?.id == id ? receiving : streams[id] else { return 0 }
        stream.headerBytes += nameLen + valueLen + 32
        if stream.headerBytes > config.maxHeaderListBytes {
            // The header list is over the advertised limit: reset the stream.
            return NG.temporalCallbackFailure
        }
        if frame.pointee.headers.cat != NGHTTP2_HCAT_REQUEST { return 0 }  // request trailers carry nothing for us
        if name[0] == UInt8(ascii: ":") {
            if bytesEqual(name, nameLen, ":path") {
                if let last = lastPath, bytesEqual(last.bytes, value, valueLen) {
                    stream.path = last.path
                } else {
                    let path = makeString(value, valueLen)
                    lastPath = (Array(UnsafeBufferPointer(start: value, count: valueLen)), path, router.route(path: path))
                    stream.path = path
                }
            } else if bytesEqual(name, nameLen, ":method") {
                stream.isPost = bytesEqual(value, valueLen, "POST")
            }
            return 0
        }
        if bytesEqual(name, nameLen, "content-type") {
            stream.grpcContentType = valueLen >= 16 && memcmp(value, "application/grpc", 16) == 0
                && (valueLen == 16 || value[16] == UInt8(ascii: "+") || value[16] == UInt8(ascii: ";"))
        } else if bytesEqual(name, nameLen, "authorization") {
            if let last = lastAuthorization, bytesEqual(last.bytes, value, valueLen) {
                stream.authorization = last.value
            } else {
                let value = (Array(UnsafeBufferPointer(start: value, count: valueLen)), makeString(value, valueLen))
                lastAuthorization = value
                stream.authorization = value.1
            }
        } else if bytesEqual(name, nameLen, "grpc-timeout") {
            stream.timeout = GRPCTimeout.parse(UnsafeBufferPointer(start: value, count: valueLen))
            stream.timeoutMalformed = stream.timeout == nil
        } else if bytesEqual(name, nameLen, "grpc-encoding") {
            let encoding = makeString(value, valueLen)
            if let known = MessageEncoding(rawValue: encoding) {
                stream.requestEncoding = known
            } else {
                stream.unsupportedEncoding = encoding
            }
        } else if bytesEqual(name, nameLen, "grpc-accept-encoding") {
            stream.acceptEncoding = makeString(value, valueLen)
        } else if bytesEqual(name, nameLen, "te") || bytesEqual(name, nameLen, "user-agent")
            || (nameLen > 5 && memcmp(name, "grpc-", 5) == 0) {
            // gRPC's own headers.
        } else {
            stream.metadata.add(makeString(name, nameLen), makeString(value, valueLen))
        }
        return 0
    }

    fileprivate func onFrameRecv(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let type = frame.pointee.hd.type
        let id = frame.pointee.hd.stream_id
        if type == NG.pingFrame {
            if frame.pointee.hd.flags & NG.ackFlag == 0 {
                pingReceived()
            } else if draining, withUnsafeBytes(of: frame.pointee.ping.opaque_data, { Array($0) }) == Self.drainPing {
                sendFinalGoaway()
            }
        }
        if type == NG.goawayFrame {
            metrics?.transport.goaway(.received, code: frame.pointee.goaway.error_code)
        }
        if type == NG.settingsFrame, frame.pointee.hd.flags & NG.ackFlag == 0 {
            settingsReceived()
        }
        if type == NG.headersFrame, frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST, let stream = streams[id] {
            receiving = nil
            connectionGuard.headerBlockEnded(id)
            admit(stream)
        }
        if (type == NG.headersFrame || type == NG.dataFrame), frame.pointee.hd.flags & NG.endStream != 0,
           let stream = streams[id] {
            stream.clientEnded = true
            guard !stream.answered else { return 0 }
            if let call = stream.streaming {
                streamRequestsEnded(stream, call)
            } else {
                dispatch(stream)
            }
        }
        return 0
    }

    fileprivate func onDataChunk(_ streamID: Int32, _ data: UnsafePointer<UInt8>, _ len: Int) -> Int32 {
        guard let session else { return 0 }
        guard let stream = streams[streamID], !stream.answered else {
            // Data for a stream already answered or reset: drop it, keep the window open.
            nghttp2_session_consume(session, streamID, len)
            return 0
        }
        let chunk = UnsafeRawBufferPointer(start: data, count: len)
        if let call = stream.streaming {
            streamData(stream, call, chunk)
            return 0
        }
        if stream.body == nil {
            stream.body = context!.channel.allocator.buffer(bytes: chunk)
        } else {
            stream.body!.writeBytes(chunk)
        }
        stream.heldBytes += len
        heldBytes += len
        if heldBytes <= config.connectionBufferBudget {
            nghttp2_session_consume(session, streamID, len)
        } else {
            if deferredConsumes.isEmpty { metrics?.transport.inboundStalls.increment() }
            deferredConsumes.append((streamID, len))
        }
        // Refuse an oversize message as soon as its prefix says so, before buffering it.
        if let body = stream.body, body.readableBytes >= GRPCFraming.prefixLength,
           let length = body.getInteger(at: body.readerIndex + 1, as: UInt32.self) {
            if Int(length) > config.maxMessageBytes {
                answer(stream, error: .resourceExhausted("request message of \(length) bytes is over the limit of \(config.maxMessageBytes)"))
            } else if body.readableBytes > GRPCFraming.prefixLength + Int(length) {
                answer(stream, error: .internal("more than one request message in a unary call"))
            }
        }
        return 0
    }

    /// nghttp2 answers every PING itself; a client that pings too often is told to calm down and
    /// let go, as gRPC servers do (a ping flood costs the server a frame each).
    private func pingReceived() {
        let now = NIODeadline.now()
        if let last = lastPingAt, now - last < config.minPingInterval {
            pingStrikes += 1
            if pingStrikes > config.maxPingStrikes {
                endConnection(NG.enhanceYourCalm, "too_many_pings")
            }
        }
        lastPingAt = now
    }

    /// The client's SETTINGS: the first completes its handshake.
    private func settingsReceived() {
        guard !connectionGuard.handshaken else { return }
        connectionGuard.settingsReceived()
        record.markHandshaken()
    }

    fileprivate func onStreamClose(_ streamID: Int32) -> Int32 {
        guard let stream = streams.removeValue(forKey: streamID) else { return 0 }
        if let unsent = stream.response { unsentAnswerBytes -= unsent.readableBytes }
        connectionGuard.headerBlockEnded(streamID)
        if !stream.clientEnded { connectionGuard.streamAbandoned(streamID) }
        if metrics != nil {
            tally.end(stream.callMetrics, code: stream.code, since: stream.startedAt)
            tallied()
        }
        if let call = stream.streaming {
            streamClosed(stream, call)
        }
        stream.task?.cancel()
        release(stream)
        return 0
    }

    fileprivate func readResponse(_ streamID: Int32, _ buf: UnsafeMutablePointer<UInt8>, _ length: Int, _ flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let session, let stream = streams[streamID], var response = stream.response else {
            return Int(NG.temporalCallbackFailure)
        }
        sendingResponse()
        let n = min(length, response.readableBytes)
        unsentAnswerBytes -= n
        response.readWithUnsafeReadableBytes { raw in
            UnsafeMutableRawPointer(buf).copyMemory(from: raw.baseAddress!, byteCount: n)
            return n
        }
        if response.readableBytes == 0 {
            stream.response = nil
            flags.pointee |= NG.dataFlagEOF | NG.dataFlagNoEndStream
            nghttp2_submit_trailer(session, streamID, StaticHeaders.okTrailers.nva, StaticHeaders.okTrailers.count)
        } else {
            stream.response = response
        }
        return n
    }

    // MARK: Calls

    /// Headers are complete: refuse what can be refused before the body arrives.
    private func admit(_ stream: Stream) {
        guard stream.isPost, stream.grpcContentType else {
            answer(stream, error: .unimplemented("not a gRPC request (need POST with content-type application/grpc)"))
            return
        }
        let route: RPCRoute?
        if let path = stream.path, let last = lastPath, last.path == path {
            route = last.route
        } else {
            route = stream.path.flatMap { router.route(path: $0) }
        }
        if let metrics { startCounting(stream, route, metrics) }
        guard let route else {
            answer(stream, error: .unimplemented("unknown method \(stream.path ?? "(none)")"))
            return
        }
        if let encoding = stream.unsupportedEncoding {
            // As the gRPC spec says: UNIMPLEMENTED, and the encodings we do speak.
            answer(stream, error: RPCError(
                .unimplemented, "grpc-encoding '\(encoding)' is not supported (supported: \(MessageEncoding.acceptHeader))",
                metadata: Metadata([("grpc-accept-encoding", MessageEncoding.acceptHeader)])
            ))
            return
        }
        if stream.timeoutMalformed {
            answer(stream, error: .invalidArgument("malformed grpc-timeout header"))
            return
        }
        do {
            if route.requiresAuth, let auth = stream.authorization, let last = lastPrincipal,
               last.authorization == auth, last.principal.expiresAtMs > WallClock.coarseNowMs() {
                stream.principal = last.principal
            } else {
                stream.principal = try router.authenticate(route, authorization: stream.authorization)
                if let principal = stream.principal, let auth = stream.authorization {
                    lastPrincipal = VerifiedToken(authorization: auth, principal: principal)
                }
            }
        } catch {
            answer(stream, error: error)
            return
        }
        if finalGoawaySent && stream.id > nghttp2_session_get_last_proc_stream_id(session) {
            answer(stream, error: .unavailable("server is shutting down"))
            return
        }
        stream.route = route
        // The deadline counts from the headers, as the caller's does: a body that trickles in
        // cannot buy the call more time, and one that never comes is answered when it passes.
        if let timeout = stream.timeout, let context {
            let deadline = NIODeadline.now() + timeout
            stream.deadline = deadline
            deadlineTimer.arm(deadline, on: context.eventLoop) { self.expireDeadlines() }
        }
        if route.stream != nil {
            startStreaming(stream, route)
        }
    }

    /// Something was counted: reported at once when the batch is full, else within `ConnectionTally.delay`.
    private func tallied() {
        guard let metrics else { return }
        if tally.isFull {
            tally.report(to: metrics.transport)
        } else if !tallyReportScheduled, let context {
            tallyReportScheduled = true
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: ConnectionTally.delay) {
                let handler = bound.value
                handler.tallyReportScheduled = false
                if let metrics = handler.metrics { handler.tally.report(to: metrics.transport) }
            }
        }
    }

    /// The call's method series (a path not served counts as `unknown`), and its start.
    private func startCounting(_ stream: Stream, _ route: RPCRoute?, _ metrics: ServerMetrics) {
        let method: MethodMetrics
        if let route {
            if let last = lastMethodMetrics, last.path == route.method.path {
                method = last.metrics
            } else {
                method = metrics.rpc.method(route.method, kind: route.kind)
                lastMethodMetrics = (route.method.path, method)
            }
        } else {
            method = metrics.rpc.method(RPCMetrics.unknownMethod, kind: .unary)
        }
        tally.start(method)
        stream.callMetrics = method
        stream.startedAt = .now()
    }

    /// The request is complete: run it.
    private func dispatch(_ stream: Stream) {
        guard let route = stream.route, let context else { return }
        let message: ByteBuffer
        do {
            message = try unaryRequestMessage(stream)
        } catch {
            answer(stream, error: error)
            return
        }
        if unsentAnswerBytes > config.connectionBufferBudget {
            answer(stream, error: .resourceExhausted("the connection holds \(unsentAnswerBytes) bytes of answers its client has not taken"))
            return
        }
        if let deadline = stream.deadline, deadline <= .now() {
            // Passed while the body arrived (or the timer is late on a busy loop): the handler never starts.
            answer(stream, error: .deadlineExceeded("deadline exceeded before \(stream.path ?? "") started"))
            return
        }
        let (callContext, recorded) = makeCallContext(stream, route)
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        let id = stream.id
        let run = route.run
        // Immediate: the handler starts on this thread now, and one that does not
        // suspend answers before dispatch returns, with no job queued at all.
        let task = Task.immediate(executorPreference: executor) {
            let result: Result<ByteBuffer, any Error>
            do {
                if recorded {
                    result = .success(try await RPCTracing.serving(callContext.method, metadata: callContext.metadata) { try await run(message, callContext) })
                } else {
                    result = .success(try await run(message, callContext))
                }
            } catch {
                result = .failure(error)
            }
            if loop.inEventLoop {
                bound.value.complete(id, result)
            } else {
                loop.execute { bound.value.complete(id, result) }
            }
        }
        guard !stream.answered else { return }
        stream.task = task
    }

    /// What the handler sees of the call, and whether it is recorded in a span: traced, a call is
    /// decided here, before it runs — recorded, or passed on unrecorded on its context.
    func makeCallContext(_ stream: Stream, _ route: RPCRoute) -> (ServerContext, recorded: Bool) {
        var recorded = false
        var unsampled: UnsampledTraceContext?
        if RPCTracing.isEnabled {
            switch RPCTracing.decide(stream.metadata) {
            case .record: recorded = true
            case .passOn(let trace): unsampled = trace
            }
        }
        let context = ServerContext(
            method: route.method, metadata: stream.metadata, deadline: stream.deadline,
            principal: stream.principal, authorization: stream.authorization, peer: peer, unsampledTrace: unsampled
        )
        return (context, recorded)
    }

    /// The request message of a unary call, inflated when it came compressed.
    private func unaryRequestMessage(_ stream: Stream) throws(RPCError) -> ByteBuffer {
        switch GRPCFraming.unframeUnary(stream.body ?? ByteBuffer(), maxMessageBytes: config.maxMessageBytes) {
        case .message(let message):
            return message
        case .compressed(let bytes):
            return try inflate(bytes, stream.requestEncoding, side: .request)
        case .tooLarge(let n):
            throw .resourceExhausted("request message of \(n) bytes is over the limit of \(config.maxMessageBytes)")
        case .malformed(let why):
            throw .internal(why)
        }
    }

    /// A message with the compressed flag, in `encoding`; the flag without an encoding is a protocol error.
    func inflate(_ bytes: ByteBuffer, _ encoding: MessageEncoding?, side: GRPCFraming.Side) throws(RPCError) -> ByteBuffer {
        try MessageCompression.inflate(
            bytes, encoding, limit: config.maxMessageBytes, allocator: context?.channel.allocator ?? ByteBufferAllocator(), side: side,
            withoutEncoding: "the \(side.rawValue) message has the compressed flag set and the call has no grpc-encoding"
        )
    }

    /// Answers DEADLINE_EXCEEDED for every call past its deadline and re-arms for the next.
    private func expireDeadlines() {
        deadlineTimer.fired()
        let now = NIODeadline.now()
        var next: NIODeadline?
        for stream in streams.values where !stream.answered {
            guard let deadline = stream.deadline else { continue }
            if deadline <= now {
                let error = RPCError.deadlineExceeded("deadline exceeded while serving \(stream.path ?? "")")
                if let call = stream.streaming {
                    streamFailed(stream, call, error)
                } else {
                    answer(stream, error: error)
                }
            } else if next.map({ deadline < $0 }) ?? true {
                next = deadline
            }
        }
        if let next, let loop = context?.eventLoop {
            deadlineTimer.arm(next, on: loop) { self.expireDeadlines() }
        }
        flush()
    }

    private func complete(_ id: Int32, _ outcome: Result<ByteBuffer, any Error>) {
        guard let stream = streams[id], !stream.answered else { return }
        stream.task = nil
        let result: Result<ByteBuffer, RPCError> = outcome.mapError { error in
            let status = RPCError(answering: error)
            if status.isUnmappedFailure {
                logger.error("handler failed", metadata: ["method": "\(stream.path ?? "")", "error": "\(error)"])
            }
            return status
        }
        switch result {
        case .success(let response):
            if response.readableBytes - GRPCFraming.prefixLength > config.maxMessageBytes {
                answer(stream, error: .resourceExhausted("response message is over the limit of \(config.maxMessageBytes) bytes"))
            } else {
                answer(stream, response: response)
            }
        case .failure(let error):
            answer(stream, error: error)
        }
        scheduleFlush()
    }

    private func answer(_ stream: Stream, response: ByteBuffer) {
        guard let session else { return }
        stream.answered = true
        stream.code = .ok
        stream.response = response
        if unsentAnswerBytes == 0 { answersQueued() }
        unsentAnswerBytes += response.readableBytes
        var provider = nghttp2_data_provider()
        provider.read_callback = serverReadResponse
        nghttp2_submit_response(session, stream.id, StaticHeaders.responseHeaders.nva, StaticHeaders.responseHeaders.count, &provider)
    }

    /// A Trailers-Only response: HEADERS with the status and END_STREAM.
    private func answer(_ stream: Stream, error: RPCError) {
        guard let session, !stream.answered else { return }
        stream.answered = true
        stream.code = error.code
        stream.task?.cancel()
        stream.task = nil
        let headers = statusHeaders(error, Metadata(), initial: Metadata())
        sendingResponse()
        headers.withNV { nva, count in
            _ = nghttp2_submit_response(session, stream.id, nva, count, nil)
        }
        // What was buffered for the request is no longer needed.
        release(stream)
        stream.body = nil
    }

    /// Gives a stream's buffered request bytes back to the connection budget
    /// and opens the window that was withheld while over it.
    func release(_ stream: Stream) {
        guard stream.heldBytes > 0 else { return }
        heldBytes -= stream.heldBytes
        stream.heldBytes = 0
        guard let session, !deferredConsumes.isEmpty else { return }
        var i = 0
        while i < deferredConsumes.count, heldBytes <= config.connectionBufferBudget {
            let (id, n) = deferredConsumes[i]
            if streams[id] != nil {
                nghttp2_session_consume(session, id, n)
            } else {
                nghttp2_session_consume_connection(session, n)
            }
            i += 1
        }
        deferredConsumes.removeFirst(i)
    }
}

// C callbacks: user_data is the handler, unretained; the session is deleted in
// handlerRemoved, so no callback runs after the handler is gone.

@inline(__always)
private func handler(_ userData: UnsafeMutableRawPointer?) -> ServerConnectionHandler {
    Unmanaged<ServerConnectionHandler>.fromOpaque(userData!).takeUnretainedValue()
}

private let serverOnBeginFrame: nghttp2_on_begin_frame_callback = { _, header, userData in
    handler(userData).onBeginFrame(header!)
}

private let serverOnBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, userData in
    handler(userData).onBeginHeaders(frame!)
}

private let serverOnHeader: nghttp2_on_header_callback = { _, frame, name, nameLen, value, valueLen, _, userData in
    handler(userData).onHeader(frame!, name!, nameLen, value!, valueLen)
}

private let serverOnFrameRecv: nghttp2_on_frame_recv_callback = { _, frame, userData in
    handler(userData).onFrameRecv(frame!)
}

private let serverOnFrameSend: nghttp2_on_frame_send_callback = { _, frame, userData in
    if let frame, frame.pointee.hd.type == NG.goawayFrame {
        handler(userData).metrics?.transport.goaway(.sent, code: frame.pointee.goaway.error_code)
    }
    return 0
}

private let serverOnDataChunkRecv: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, data, len, userData in
    handler(userData).onDataChunk(streamID, data!, len)
}

private let serverOnStreamClose: nghttp2_on_stream_close_callback = { _, streamID, _, userData in
    handler(userData).onStreamClose(streamID)
}

private let serverReadResponse: nghttp2_data_source_read_callback = { _, streamID, buf, length, flags, _, userData in
    handler(userData).readResponse(streamID, buf!, length, flags!)
}
