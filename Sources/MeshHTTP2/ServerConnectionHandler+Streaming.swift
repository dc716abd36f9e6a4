import CNGHTTP2
import MeshRPC
import MeshTracing
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Streaming calls: the handler starts when the headers are in, reads request
/// messages as they arrive and writes responses as it makes them. What the
/// stream may do next is `ServerStreamStateMachine`'s to say; this file only
/// carries its actions out on the session.
extension ServerConnectionHandler {
    func startStreaming(_ stream: Stream, _ route: RPCRoute) {
        guard let context, let run = route.stream else { return }
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        let id = stream.id
        let requests = RPCMessageQueue<InboundMessage>(capacity: 1024) { message in
            let taken = message.wireBytes
            if loop.inEventLoop {
                bound.value.requestTaken(id, bytes: taken)
            } else {
                loop.execute { bound.value.requestTaken(id, bytes: taken) }
            }
        }
        let (callContext, recorded) = makeCallContext(stream, route)
        let call = StreamingCall(maxMessageBytes: config.maxMessageBytes, requests: requests, context: callContext)
        stream.streaming = call
        let serverStream = RPCServerStream(
            requests: RPCMessageStream { () throws(RPCError) in
                guard let message = try await requests.next() else { return nil }
                callContext.noteRequestCompressed(message.compressed)
                return message.bytes
            },
            responses: RPCWriter { (message: ByteBuffer) throws(RPCError) in
                try await Self.write(message, id: id, bound: bound, loop: loop)
            }
        )
        let task = Task.immediate(executorPreference: executor) {
            let result: Result<Void, any Error>
            do {
                if recorded {
                    try await RPCTracing.serving(callContext.method, metadata: callContext.metadata) { try await run(serverStream, callContext) }
                } else {
                    try await run(serverStream, callContext)
                }
                result = .success(())
            } catch {
                result = .failure(error)
            }
            if loop.inEventLoop {
                bound.value.streamHandlerFinished(id, result)
            } else {
                loop.execute { bound.value.streamHandlerFinished(id, result) }
            }
        }
        if stream.streaming != nil, call.machine.handlerRunning {
            stream.task = task
        }
    }

    /// Bytes of the request stream: cut into messages for the handler. The window is given
    /// back while the handler keeps up; past its unread budget it is withheld until it reads.
    func streamData(_ stream: Stream, _ call: StreamingCall, _ chunk: UnsafeRawBufferPointer) {
        guard let session else { return }
        call.unreadBytes += chunk.count
        heldBytes += chunk.count
        if call.unreadBytes <= Self.inboundHighWater && heldBytes <= config.connectionBufferBudget {
            nghttp2_session_consume(session, stream.id, chunk.count)
        } else {
            if call.withheldBytes == 0 { metrics?.transport.inboundStalls.increment() }
            call.withheldBytes += chunk.count
        }
        call.deframer.append(chunk)
        while true {
            let message: GRPCMessageDeframer.Message?
            do {
                message = try call.deframer.next()
            } catch {
                streamFailed(stream, call, GRPCMessageDeframer.status(error, side: .request, maxMessageBytes: config.maxMessageBytes))
                return
            }
            guard let message else { return }
            let wireBytes = message.bytes.readableBytes + GRPCFraming.prefixLength
            switch call.machine.requestReceived() {
            case .deliver:
                var bytes = message.bytes
                if message.compressed {
                    do {
                        bytes = try inflate(message.bytes, stream.requestEncoding, side: .request)
                    } catch {
                        streamFailed(stream, call, error)
                        return
                    }
                }
                stream.callMetrics?.messagesReceived?.increment()
                call.requests.offer(InboundMessage(bytes: bytes, compressed: message.compressed, wireBytes: wireBytes))
            case .drop:
                requestTaken(stream.id, bytes: wireBytes)
            }
        }
    }

    /// The handler took a message: its bytes no longer count, and a withheld window opens.
    func requestTaken(_ id: Int32, bytes: Int) {
        guard let session, let stream = streams[id], let call = stream.streaming else { return }
        let n = min(bytes, call.unreadBytes)
        call.unreadBytes -= n
        heldBytes -= n
        if call.withheldBytes > 0, call.unreadBytes <= Self.inboundHighWater, heldBytes <= config.connectionBufferBudget {
            nghttp2_session_consume(session, id, call.withheldBytes)
            call.withheldBytes = 0
            scheduleFlush()
        }
    }

    func streamRequestsEnded(_ stream: Stream, _ call: StreamingCall) {
        if call.deframer.hasPartialMessage {
            streamFailed(stream, call, .internal("the request stream ended inside a message (truncated gRPC message)"))
            return
        }
        switch call.machine.requestsEnded() {
        case .finishRequests:
            call.requests.finish()
        case .none:
            break
        }
    }

    /// Hops to the loop when the handler is elsewhere, and waits while the client is not reading.
    static func write(_ message: ByteBuffer, id: Int32, bound: NIOLoopBound<ServerConnectionHandler>, loop: any EventLoop) async throws(RPCError) {
        try await StreamOutbound.write(on: loop) {
            bound.value.enqueueResponse(id, message)
        } wait: { continuation in
            bound.value.waitForRoom(id, continuation)
        }
    }

    func enqueueResponse(_ id: Int32, _ message: ByteBuffer) -> StreamOutbound.WriteOutcome {
        guard let session, let context, let stream = streams[id], let call = stream.streaming else {
            return .refused(.cancelled("the stream was closed"))
        }
        if message.readableBytes > config.maxMessageBytes {
            return .refused(.resourceExhausted("response message of \(message.readableBytes) bytes is over the limit of \(config.maxMessageBytes)"))
        }
        switch call.machine.responseWritten() {
        case .refuse(let error):
            return .refused(error)
        case .sendHeadersAndMessage:
            submitStreamHeaders(session, stream, call)
        case .sendMessage:
            break
        }
        let framed: ByteBuffer
        if let encoding = call.responseEncoding, call.context.compressesResponses {
            framed = GRPCFraming.frame(compressed: MessageCompression.compress(message, encoding, allocator: context.channel.allocator), allocator: context.channel.allocator)
        } else {
            framed = GRPCFraming.frame(bytes: message, allocator: context.channel.allocator)
        }
        let outcome = call.outbound.append(framed, session: session, streamID: stream.id)
        stream.callMetrics?.messagesSent?.increment()
        scheduleFlush()
        return outcome
    }

    func waitForRoom(_ id: Int32, _ continuation: CheckedContinuation<Void, any Error>) {
        guard let stream = streams[id], let call = stream.streaming, call.machine.responses == .open else {
            continuation.resume(throwing: RPCError.cancelled("the stream was closed"))
            return
        }
        metrics?.transport.outboundStalls.increment()
        answersQueued()
        call.outbound.wait(continuation)
    }

    private func submitStreamHeaders(_ session: OpaquePointer, _ stream: Stream, _ call: StreamingCall) {
        let initial = call.context.responseInitialMetadata
        var headers = HeaderList(capacity: 4 + initial.count)
        headers.add(":status", "200")
        headers.add("content-type", "application/grpc")
        headers.add("grpc-accept-encoding", MessageEncoding.acceptHeader)
        if call.context.responseCompressionRequested, let encoding = Self.responseEncoding(stream) {
            call.responseEncoding = encoding
            headers.add("grpc-encoding", encoding.rawValue)
        }
        for (name, value) in initial {
            headers.add(name, value)
        }
        var provider = nghttp2_data_provider()
        provider.read_callback = serverReadStream
        _ = headers.withNV { nva, count in
            nghttp2_submit_response(session, stream.id, nva, count, &provider)
        }
    }

    /// The request's own encoding when the client also accepts it, else gzip, else deflate, else none.
    static func responseEncoding(_ stream: Stream) -> MessageEncoding? {
        let accepted = MessageEncoding.accepted(stream.acceptEncoding ?? "")
        if let own = stream.requestEncoding, own != .identity, accepted.contains(own) { return own }
        if accepted.contains(.gzip) { return .gzip }
        if accepted.contains(.deflate) { return .deflate }
        return nil
    }

    /// nghttp2 asks for the next bytes of a streaming response.
    func readStream(_ streamID: Int32, _ buf: UnsafeMutablePointer<UInt8>, _ length: Int, _ flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let session, let stream = streams[streamID], let call = stream.streaming else {
            return Int(NG.temporalCallbackFailure)
        }
        sendingResponse()
        guard let written = call.outbound.read(into: buf, length: length, ending: call.statusQueued) else {
            return NG.deferred
        }
        if call.outbound.isEmpty && call.statusQueued {
            flags.pointee |= NG.dataFlagEOF | NG.dataFlagNoEndStream
            let trailers = statusHeaders(call.status, call.context.responseTrailingMetadata, initial: nil)
            _ = trailers.withNV { nva, count in
                nghttp2_submit_trailer(session, streamID, nva, count)
            }
        }
        return written
    }

    func streamHandlerFinished(_ id: Int32, _ result: Result<Void, any Error>) {
        guard let stream = streams[id], let call = stream.streaming else { return }
        stream.task = nil
        let status: RPCError?
        if case .failure(let error) = result {
            let answer = RPCError(answering: error)
            if answer.isUnmappedFailure {
                logger.error("handler failed", metadata: ["method": "\(stream.path ?? "")", "error": "\(error)"])
            }
            status = answer
        } else {
            status = nil
        }
        if let status, status.code == .resourceExhausted, !call.outbound.isEmpty, let session {
            // The peer is not taking what is queued (a watcher that stopped reading): a status could never
            // follow it, so the stream is reset instead, and what is queued let go. gRPC clients read
            // ENHANCE_YOUR_CALM as RESOURCE_EXHAUSTED.
            call.outbound.discard(status)
            stream.code = status.code
            nghttp2_submit_rst_stream(session, NG.flagNone, id, NG.enhanceYourCalm)
            scheduleFlush()
            return
        }
        apply(call.machine.handlerFinished(), stream, call, status)
        scheduleFlush()
    }

    /// The call ends before its handler does (deadline, a broken request stream).
    func streamFailed(_ stream: Stream, _ call: StreamingCall, _ error: RPCError) {
        apply(call.machine.failed(), stream, call, error)
        scheduleFlush()
    }

    func streamClosed(_ stream: Stream, _ call: StreamingCall) {
        heldBytes -= call.unreadBytes
        call.unreadBytes = 0
        switch call.machine.streamClosed() {
        case .cancel:
            stream.task?.cancel()
            call.requests.close(.cancelled("the client cancelled the call"))
        case .none:
            break
        }
        call.outbound.releaseWriters(.cancelled("the stream was closed"))
    }

    private func apply(_ action: ServerStreamStateMachine.StatusAction, _ stream: Stream, _ call: StreamingCall, _ status: RPCError?) {
        guard let session else { return }
        switch action {
        case .none:
            return
        case .sendTrailersOnly(let cancelHandler, let failRequests):
            end(stream, call, cancelHandler: cancelHandler, failRequests: failRequests)
            stream.code = status?.code ?? .ok
            let headers = statusHeaders(status, call.context.responseTrailingMetadata, initial: call.context.responseInitialMetadata)
            sendingResponse()
            _ = headers.withNV { nva, count in
                nghttp2_submit_response(session, stream.id, nva, count, nil)
            }
        case .sendTrailers(let cancelHandler, let failRequests):
            end(stream, call, cancelHandler: cancelHandler, failRequests: failRequests)
            stream.code = status?.code ?? .ok
            call.status = status
            call.statusQueued = true
            call.outbound.resume(session: session, streamID: stream.id)
        }
    }

    private func end(_ stream: Stream, _ call: StreamingCall, cancelHandler: Bool, failRequests: RPCError?) {
        stream.answered = true
        if cancelHandler {
            stream.task?.cancel()
            stream.task = nil
        }
        if let failRequests {
            call.requests.close(failRequests)
        }
        call.outbound.releaseWriters(.cancelled("the call is over"))
    }

    /// The status (nil: OK) and trailing metadata; with `initial`, a Trailers-Only response's headers.
    func statusHeaders(_ status: RPCError?, _ trailing: Metadata, initial: Metadata?) -> HeaderList {
        let extra = status?.metadata.count ?? 0
        var headers = HeaderList(capacity: 4 + trailing.count + extra + (initial?.count ?? 0))
        if let initial {
            headers.add(":status", "200")
            headers.add("content-type", "application/grpc")
            for (name, value) in initial { headers.add(name, value) }
        }
        headers.add("grpc-status", String(status?.code.rawValue ?? 0))
        if let status, !status.message.isEmpty {
            headers.add("grpc-message", StatusMessageEncoding.encode(status.message))
        }
        for (name, value) in trailing { headers.add(name, value) }
        if let status {
            for (name, value) in status.metadata { headers.add(name, value) }
        }
        return headers
    }
}

private let serverReadStream: nghttp2_data_source_read_callback = { _, streamID, buf, length, flags, _, userData in
    Unmanaged<ServerConnectionHandler>.fromOpaque(userData!).takeUnretainedValue().readStream(streamID, buf!, length, flags!)
}
