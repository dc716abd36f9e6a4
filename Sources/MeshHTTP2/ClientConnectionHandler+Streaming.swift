import CNGHTTP2
import MeshRPC
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Streaming calls on a client connection: requests written as the caller makes
/// them (held while the server does not read), responses handed over as they
/// arrive (the window opens as the caller reads them).
extension ClientConnectionHandler {
    final class StreamCall {
        let callID: UInt64
        let path: String
        let responses: RPCMessageQueue<ResponseMessage>
        let headers: EventLoopPromise<Metadata>
        let trailers: ResponseTrailers
        var deframer: GRPCMessageDeframer
        /// What the call may do next: decided there, carried out here.
        var machine = ClientStreamStateMachine()
        var initial = Metadata()
        var trailing = Metadata()
        /// The response's `grpc-encoding`, and the one the requests are compressed in.
        var responseEncoding: MessageEncoding?
        var requestEncoding: MessageEncoding?
        var grpcStatus: Int?
        var grpcMessage: String?
        var httpStatus = 0
        var sent = false
        var deadline: NIODeadline?
        var unreadBytes = 0
        var withheldBytes = 0
        var outbound = StreamOutbound()

        init(callID: UInt64, path: String, responses: RPCMessageQueue<ResponseMessage>, headers: EventLoopPromise<Metadata>, trailers: ResponseTrailers, maxMessageBytes: Int) {
            self.callID = callID
            self.path = path
            self.responses = responses
            self.headers = headers
            self.trailers = trailers
            self.deframer = GRPCMessageDeframer(maxMessageBytes: maxMessageBytes)
        }
    }

    /// A response on its way to the caller: inflated, with what it cost on the wire.
    struct ResponseMessage: Sendable {
        let bytes: ByteBuffer
        let wireBytes: Int
    }

    static let inboundHighWater = 64 * 1024

    /// Starts the stream; fails with `CallNotSent` when this connection cannot take it.
    func startStream(_ head: ClientStreamHead, _ call: StreamCall) throws {
        guard let session, let context, context.channel.isActive, !connectionState.isDraining else {
            throw CallNotSent(error: .unavailable("connection to \(authority) is not usable"))
        }
        var headers = try requestHeaders(head.method, deadline: head.deadline, extra: head.metadata.count + 2)
        headers.add("grpc-accept-encoding", MessageEncoding.acceptHeader)
        if let encoding = head.compression, encoding != .identity {
            headers.add("grpc-encoding", encoding.rawValue)
            call.requestEncoding = encoding
        }
        for (name, value) in head.metadata {
            headers.add(name, value)
        }
        var provider = nghttp2_data_provider()
        provider.read_callback = clientReadStream
        let streamID = headers.withNV { nva, count in
            nghttp2_submit_request(session, nil, nva, count, &provider, nil)
        }
        if streamID < 0 {
            throw CallNotSent(error: .unavailable("could not start a stream to \(authority): \(NG.errorName(Int(streamID)))"))
        }
        streamCalls[streamID] = call
        streamCallsByID[call.callID] = streamID
        if let deadline = head.deadline {
            call.deadline = deadline
            deadlineTimer.arm(deadline, on: context.eventLoop) { self.expireDeadlines() }
        }
        scheduleFlush()
    }

    func streamHeader(_ call: StreamCall, _ frame: UnsafePointer<nghttp2_frame>, _ name: UnsafePointer<UInt8>, _ nameLen: Int, _ value: UnsafePointer<UInt8>, _ valueLen: Int) {
        let isTrailers = frame.pointee.headers.cat == NGHTTP2_HCAT_HEADERS
        if bytesEqual(name, nameLen, ":status") {
            call.httpStatus = Int(makeString(value, valueLen)) ?? 0
        } else if bytesEqual(name, nameLen, "grpc-status") {
            call.grpcStatus = Int(makeString(value, valueLen))
        } else if bytesEqual(name, nameLen, "grpc-message") {
            call.grpcMessage = StatusMessageEncoding.decode(makeString(value, valueLen))
        } else if bytesEqual(name, nameLen, "grpc-encoding") {
            let encoding = makeString(value, valueLen)
            call.responseEncoding = MessageEncoding(rawValue: encoding)
            if call.responseEncoding == nil, let streamID = streamCallsByID[call.callID] {
                fail(call, streamID, .internal("\(authority) answered in grpc-encoding '\(encoding)', which was not offered"))
            }
        } else if name[0] != UInt8(ascii: ":"), !bytesEqual(name, nameLen, "content-type"), !bytesEqual(name, nameLen, "grpc-encoding"),
                  !bytesEqual(name, nameLen, "grpc-accept-encoding") {
            if isTrailers {
                call.trailing.add(makeString(name, nameLen), makeString(value, valueLen))
            } else {
                call.initial.add(makeString(name, nameLen), makeString(value, valueLen))
            }
        }
    }

    func streamHeadersReceived(_ call: StreamCall, _ frame: UnsafePointer<nghttp2_frame>) {
        switch call.machine.headersReceived() {
        case .publishInitialMetadata:
            call.headers.succeed(call.initial)
        case .none:
            break
        }
    }

    func streamData(_ call: StreamCall, _ streamID: Int32, _ chunk: UnsafeRawBufferPointer) {
        guard let session else { return }
        guard call.machine.acceptsMessages else {
            nghttp2_session_consume(session, streamID, chunk.count)
            return
        }
        call.unreadBytes += chunk.count
        if call.unreadBytes <= Self.inboundHighWater {
            nghttp2_session_consume(session, streamID, chunk.count)
        } else {
            call.withheldBytes += chunk.count
        }
        call.deframer.append(chunk)
        while true {
            let message: GRPCMessageDeframer.Message?
            var bytes: ByteBuffer
            do {
                message = try call.deframer.next()
                guard let message else { return }
                bytes = message.bytes
                if message.compressed {
                    bytes = try inflate(message.bytes, call.responseEncoding)
                }
            } catch let error as GRPCMessageDeframer.Failure {
                fail(call, streamID, GRPCMessageDeframer.status(error, side: .response, maxMessageBytes: maxMessageBytes))
                return
            } catch {
                fail(call, streamID, error as? RPCError ?? .internal("\(error)"))
                return
            }
            call.responses.offer(ResponseMessage(bytes: bytes, wireBytes: message!.bytes.readableBytes + GRPCFraming.prefixLength))
        }
    }

    private func fail(_ call: StreamCall, _ streamID: Int32, _ error: RPCError) {
        guard let session else { return }
        switch call.machine.responseFailed(error) {
        case .reset:
            nghttp2_submit_rst_stream(session, NG.flagNone, streamID, NG.cancel)
            scheduleFlush()
        case .none:
            break
        }
    }

    /// A response with the compressed flag, in the response's encoding.
    func inflate(_ bytes: ByteBuffer, _ encoding: MessageEncoding?) throws(RPCError) -> ByteBuffer {
        try MessageCompression.inflate(
            bytes, encoding, limit: maxMessageBytes, allocator: context?.channel.allocator ?? ByteBufferAllocator(), side: .response,
            withoutEncoding: "a response message from \(authority) has the compressed flag set and no grpc-encoding"
        )
    }

    /// The caller took a response: its window opens again.
    func responseTaken(_ callID: UInt64, bytes: Int) {
        guard let session, let streamID = streamCallsByID[callID], let call = streamCalls[streamID] else { return }
        call.unreadBytes -= min(bytes, call.unreadBytes)
        if call.withheldBytes > 0, call.unreadBytes <= Self.inboundHighWater {
            nghttp2_session_consume(session, streamID, call.withheldBytes)
            call.withheldBytes = 0
            scheduleFlush()
        }
    }

    func streamClosed(_ call: StreamCall, streamID: Int32, errorCode: UInt32) {
        // The trailers, or a Trailers-Only response's headers, carry the status's metadata.
        let metadata = call.machine.responses == .trailersReceived ? call.trailing : call.initial
        let end: Result<Void, RPCError>
        switch call.machine.streamClosed(grpcStatus: call.grpcStatus, grpcMessage: call.grpcMessage, partialMessage: call.deframer.hasPartialMessage) {
        case .alreadyEnded:
            return
        case .ok:
            call.trailers.set(metadata)
            end = .success(())
        case .status(let code, let message):
            call.trailers.set(metadata)
            end = .failure(RPCError(RPCError.Code(wireValue: code), message, metadata: metadata))
        case .failed(let error):
            end = .failure(error)
        case .withoutStatus:
            switch statusWithoutGRPCStatus(httpStatus: call.httpStatus, streamID: streamID, errorCode: errorCode) {
            case let notSent as CallNotSent: end = .failure(notSent.error)
            case let error as RPCError: end = .failure(error)
            default: end = .failure(.unknown("stream to \(authority) ended without a status"))
            }
        }
        finish(call, end)
    }

    private func finish(_ call: StreamCall, _ end: Result<Void, RPCError>) {
        if !call.machine.initialMetadataPublished {
            switch end {
            case .success: call.headers.succeed(call.initial)
            case .failure(let error): call.headers.fail(error)
            }
        }
        call.responses.finish(end)
        call.outbound.releaseWriters(end.failure)
    }

    func failStreamCalls(_ error: RPCError) {
        let pending = streamCalls
        streamCalls.removeAll()
        streamCallsByID.removeAll()
        for call in pending.values where call.machine.ended() {
            finish(call, .failure(error))
        }
    }

    /// Soonest deadline still ahead among streaming calls; those past it end DEADLINE_EXCEEDED.
    func expireStreamDeadlines(now: NIODeadline) -> NIODeadline? {
        var next: NIODeadline?
        for call in streamCalls.values {
            guard let deadline = call.deadline else { continue }
            if deadline <= now {
                abortStream(call.callID, .deadlineExceeded("deadline exceeded calling \(call.path)"))
            } else if next.map({ deadline < $0 }) ?? true {
                next = deadline
            }
        }
        return next
    }

    /// Ends the call now (the caller cancelled, its deadline passed): RST_STREAM(CANCEL).
    func abortStream(_ callID: UInt64, _ error: RPCError) {
        guard let session, let streamID = streamCallsByID.removeValue(forKey: callID),
              let call = streamCalls.removeValue(forKey: streamID), call.machine.ended() else { return }
        finish(call, .failure(error))
        nghttp2_submit_rst_stream(session, NG.flagNone, streamID, NG.cancel)
        scheduleFlush()
    }

    func enqueueRequest(_ callID: UInt64, _ message: ByteBuffer) -> StreamOutbound.WriteOutcome {
        guard let session, let context, let streamID = streamCallsByID[callID], let call = streamCalls[streamID] else {
            return .refused(.cancelled("the call is over"))
        }
        if case .refuse(let error) = call.machine.requestWritten() {
            return .refused(error)
        }
        if message.readableBytes > maxMessageBytes {
            return .refused(.resourceExhausted("request message of \(message.readableBytes) bytes is over the limit of \(maxMessageBytes)"))
        }
        let framed: ByteBuffer
        if let encoding = call.requestEncoding {
            framed = GRPCFraming.frame(compressed: MessageCompression.compress(message, encoding, allocator: context.channel.allocator), allocator: context.channel.allocator)
        } else {
            framed = GRPCFraming.frame(bytes: message, allocator: context.channel.allocator)
        }
        let outcome = call.outbound.append(framed, session: session, streamID: streamID)
        scheduleFlush()
        return outcome
    }

    func finishRequests(_ callID: UInt64) {
        guard let session, let streamID = streamCallsByID[callID], let call = streamCalls[streamID] else { return }
        switch call.machine.requestsFinished() {
        case .endStream:
            call.outbound.resume(session: session, streamID: streamID)
            scheduleFlush()
        case .none:
            break
        }
    }

    func waitForRoom(_ callID: UInt64, _ continuation: CheckedContinuation<Void, any Error>) {
        guard let streamID = streamCallsByID[callID], let call = streamCalls[streamID] else {
            // The message was queued and the call has ended since (a server may answer before the
            // requests end): the write is done; the next one learns how the call ended.
            continuation.resume()
            return
        }
        call.outbound.wait(continuation)
    }

    func readStream(_ streamID: Int32, _ buf: UnsafeMutablePointer<UInt8>, _ length: Int, _ flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let call = streamCalls[streamID] else { return Int(NG.temporalCallbackFailure) }
        let finished = call.machine.requests == .finished
        guard let written = call.outbound.read(into: buf, length: length, ending: finished) else {
            return NG.deferred
        }
        if call.outbound.isEmpty && finished {
            flags.pointee |= NG.dataFlagEOF
        }
        return written
    }
}

/// The trailers of a streaming call, set on the event loop when it ends, read by the caller.
final class ResponseTrailers: Sendable {
    private let value = Mutex(Metadata())
    func set(_ metadata: Metadata) { value.withLock { $0 = metadata } }
    func get() -> Metadata { value.withLock { $0 } }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

private let clientReadStream: nghttp2_data_source_read_callback = { _, streamID, buf, length, flags, _, userData in
    Unmanaged<ClientConnectionHandler>.fromOpaque(userData!).takeUnretainedValue().readStream(streamID, buf!, length, flags!)
}
