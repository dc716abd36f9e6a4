import NIOCore
import Synchronization

/// Messages of one call arriving one after another: a streaming call's requests
/// on the server, its responses on the client. Iteration ends after the last
/// message; on the client it throws the call's status when that is not OK.
public struct RPCMessageStream<Message: Sendable>: AsyncSequence, Sendable {
    public typealias Element = Message
    public typealias Failure = RPCError

    private let nextMessage: @Sendable () async throws(RPCError) -> Message?

    public init(next: @escaping @Sendable () async throws(RPCError) -> Message?) {
        self.nextMessage = next
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        public typealias Element = Message
        public typealias Failure = RPCError
        let nextMessage: @Sendable () async throws(RPCError) -> Message?

        public mutating func next() async throws(RPCError) -> Message? {
            try await nextMessage()
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws(RPCError) -> Message? {
            try await nextMessage()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(nextMessage: nextMessage)
    }

    /// The next message, or nil after the last.
    public func next() async throws(RPCError) -> Message? {
        try await nextMessage()
    }

    /// Decodes each message as `Decoded`: bytes that are not one are the `undecodable` status.
    public func decoded<Decoded: RPCMessage>(as type: Decoded.Type, undecodable: RPCError.Code) -> RPCMessageStream<Decoded> where Message == ByteBuffer {
        let next = nextMessage
        return RPCMessageStream<Decoded> { () throws(RPCError) -> Decoded? in
            guard let bytes = try await next() else { return nil }
            do throws(MessageCodingError) {
                return try Decoded(protobuf: bytes)
            } catch {
                throw undecodable == .internal
                    ? RPCError(error, failedTo: "decode \(Decoded.protoName)")
                    : RPCError(undecodable, "could not decode \(Decoded.protoName): \(error)")
            }
        }
    }
}

/// Where one side of a streaming call writes its messages. `write` waits while
/// the peer is not reading (flow control), so a fast writer is held, not buffered.
public struct RPCWriter<Message: Sendable>: Sendable {
    private let writeMessage: @Sendable (Message) async throws(RPCError) -> Void

    public init(write: @escaping @Sendable (Message) async throws(RPCError) -> Void) {
        self.writeMessage = write
    }

    /// Sends one message; throws the call's status when the call is over (the peer
    /// cancelled, the deadline passed, the stream was reset).
    public func write(_ message: Message) async throws(RPCError) {
        try await writeMessage(message)
    }

    /// Writes each message in order, waiting for room as `write` does.
    public func write(contentsOf messages: some Sequence<Message>) async throws(RPCError) {
        for message in messages {
            try await writeMessage(message)
        }
    }

    /// Encodes each message before writing its bytes.
    public static func encoding(_ raw: RPCWriter<ByteBuffer>) -> RPCWriter<Message> where Message: RPCMessage {
        RPCWriter<Message> { (message: Message) throws(RPCError) in
            var buffer = ByteBuffer()
            do throws(MessageCodingError) {
                try message.encode(into: &buffer)
            } catch {
                throw RPCError(error, failedTo: "encode \(Message.protoName)")
            }
            try await raw.write(buffer)
        }
    }
}

/// What a transport gives a streaming route: the call's request messages and
/// where its response messages go (protobuf bytes, without gRPC's length prefix:
/// the transport frames them). The route returns when the call is done; the
/// transport then sends the status (OK, or the `RPCError` thrown) with the
/// context's trailing metadata.
public struct RPCServerStream: Sendable {
    public let requests: RPCMessageStream<ByteBuffer>
    public let responses: RPCWriter<ByteBuffer>

    public init(requests: RPCMessageStream<ByteBuffer>, responses: RPCWriter<ByteBuffer>) {
        self.requests = requests
        self.responses = responses
    }
}

/// A streaming call as a client holds it, before types: write requests, half-close,
/// read responses, and the response metadata. Made by `RPCChannel.openStream`.
public struct RPCClientStream: Sendable {
    public let requests: RPCWriter<ByteBuffer>
    /// Half-closes: the server's request stream ends after what was written.
    public let finishRequests: @Sendable () -> Void
    /// Ends normally after the last message when the status is OK; otherwise throws it.
    public let responses: RPCMessageStream<ByteBuffer>
    /// The server's response headers (initial metadata), waiting for them.
    public let initialMetadata: @Sendable () async throws(RPCError) -> Metadata
    /// The trailers, once `responses` has ended (empty before).
    public let trailingMetadata: @Sendable () -> Metadata
    /// Cancels the call (RST_STREAM CANCEL): the server's handler is cancelled.
    public let cancel: @Sendable () -> Void

    public init(
        requests: RPCWriter<ByteBuffer>,
        finishRequests: @escaping @Sendable () -> Void,
        responses: RPCMessageStream<ByteBuffer>,
        initialMetadata: @escaping @Sendable () async throws(RPCError) -> Metadata,
        trailingMetadata: @escaping @Sendable () -> Metadata,
        cancel: @escaping @Sendable () -> Void
    ) {
        self.requests = requests
        self.finishRequests = finishRequests
        self.responses = responses
        self.initialMetadata = initialMetadata
        self.trailingMetadata = trailingMetadata
        self.cancel = cancel
    }
}

extension RPCClientStream {
    /// The same call, watched: each message written and read, and its end once — the responses'
    /// end (OK, or the status thrown) or the caller's cancel, whichever comes first. What metrics
    /// and traces of a client's streaming call hang on.
    public func observed(
        sent: (@Sendable () -> Void)? = nil, received: (@Sendable () -> Void)? = nil, ended: @escaping @Sendable (RPCError.Code) -> Void
    ) -> RPCClientStream {
        let once = Atomic<Bool>(false)
        let end: @Sendable (RPCError.Code) -> Void = { code in
            if !once.exchange(true, ordering: .relaxed) { ended(code) }
        }
        let requests = self.requests
        let responses = self.responses
        let cancel = self.cancel
        return RPCClientStream(
            requests: RPCWriter { (message: ByteBuffer) throws(RPCError) in
                try await requests.write(message)
                sent?()
            },
            finishRequests: finishRequests,
            responses: RPCMessageStream { () throws(RPCError) -> ByteBuffer? in
                do throws(RPCError) {
                    guard let message = try await responses.next() else {
                        end(.ok)
                        return nil
                    }
                    received?()
                    return message
                } catch {
                    end(error.code)
                    throw error
                }
            },
            initialMetadata: initialMetadata,
            trailingMetadata: trailingMetadata,
            cancel: {
                end(.cancelled)
                cancel()
            }
        )
    }
}

/// A typed streaming call, as a generated client's body sees it.
public struct RPCStreamingCall<Request: RPCMessage, Response: RPCMessage>: Sendable {
    public let raw: RPCClientStream
    public let requests: RPCWriter<Request>
    public let responses: RPCMessageStream<Response>

    public init(raw: RPCClientStream) {
        self.raw = raw
        self.requests = .encoding(raw.requests)
        // A server that sends what we cannot decode faithfully is broken: INTERNAL.
        self.responses = raw.responses.decoded(as: Response.self, undecodable: .internal)
    }

    /// Sends one request message, waiting for flow-control room.
    public func send(_ request: Request) async throws(RPCError) {
        try await requests.write(request)
    }

    /// No more requests: the server's request stream ends.
    public func finishSending() {
        raw.finishRequests()
    }

    /// The server's response headers, once they arrive.
    public func initialMetadata() async throws(RPCError) -> Metadata {
        try await raw.initialMetadata()
    }

    /// Known once `responses` has ended.
    public var trailingMetadata: Metadata { raw.trailingMetadata() }
}

/// The head of a streaming call: everything but its messages.
public struct ClientStreamHead: Sendable {
    public var method: MethodDescriptor
    public var metadata: Metadata
    public var deadline: NIODeadline?
    public var compression: MessageEncoding?
    /// Which side sends more than one message: not on the wire, only for the client's metrics.
    public var kind: RPCRoute.Kind

    public init(method: MethodDescriptor, metadata: Metadata, deadline: NIODeadline?, compression: MessageEncoding? = nil, kind: RPCRoute.Kind = .bidirectionalStreaming) {
        self.kind = kind
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.compression = compression
    }
}

extension RPCWriter {
    /// Writes, or throws RESOURCE_EXHAUSTED when the peer has not made room for the message
    /// within `limit` (a watcher that stopped reading). The write itself runs on in the
    /// background and ends with the call, which the caller ends by throwing on. The limit is
    /// kept by one clock for the process (`StallClock`), not a timer per write: a cancelled
    /// sleep holds its task until it would have woken, and a watch writes thousands of times.
    public func write(_ message: Message, stallLimit limit: Duration) async throws(RPCError) {
        let race = StallRace()
        let result: Result<Void, RPCError> = await withCheckedContinuation { continuation in
            race.start(continuation)
            let id = StallClock.shared.watch(race, limit: limit)
            Task {
                do throws(RPCError) {
                    try await self.write(message)
                    race.finish(.success(()))
                } catch {
                    race.finish(.failure(error))
                }
                StallClock.shared.done(id)
            }
        }
        try result.get()
    }
}

/// The writes waiting under a stall limit, and the one task that fails those past it. The
/// task runs only while there are such writes (most take no time at all: they are queued).
final class StallClock: Sendable {
    static let shared = StallClock()

    private struct Pending {
        var deadline: ContinuousClock.Instant
        var limit: Duration
        var race: StallRace
    }

    private struct State {
        var pending: [UInt64: Pending] = [:]
        var next: UInt64 = 0
        var sweeping = false
    }

    private let state = Mutex(State())

    func watch(_ race: StallRace, limit: Duration) -> UInt64 {
        let (id, start) = state.withLock { state -> (UInt64, Bool) in
            state.next += 1
            state.pending[state.next] = Pending(deadline: .now + limit, limit: limit, race: race)
            defer { state.sweeping = true }
            return (state.next, !state.sweeping)
        }
        if start { Task { await self.sweep() } }
        return id
    }

    func done(_ id: UInt64) {
        state.withLock { _ = $0.pending.removeValue(forKey: id) }
    }

    /// Every 250 ms while writes wait (a stall is cut off within a quarter second of its limit).
    private func sweep() async {
        while true {
            try? await Task.sleep(for: .milliseconds(250))
            let now = ContinuousClock.now
            let (overdue, more) = state.withLock { state -> ([Pending], Bool) in
                let overdue = state.pending.filter { $0.value.deadline <= now }
                for id in overdue.keys { state.pending[id] = nil }
                if state.pending.isEmpty { state.sweeping = false }
                return (Array(overdue.values), state.sweeping)
            }
            for pending in overdue {
                pending.race.finish(.failure(.resourceExhausted("the peer read nothing for \(pending.limit): the stream is cut off; resume it")))
            }
            if !more { return }
        }
    }
}

/// The first of a write and its stall limit to finish answers the writer.
final class StallRace: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Result<Void, RPCError>, Never>?
        var result: Result<Void, RPCError>?
    }

    private let state = Mutex(State())

    func start(_ continuation: CheckedContinuation<Result<Void, RPCError>, Never>) {
        state.withLock { $0.continuation = continuation }
    }

    func finish(_ result: Result<Void, RPCError>) {
        let continuation = state.withLock { state -> CheckedContinuation<Result<Void, RPCError>, Never>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(returning: result)
    }
}
