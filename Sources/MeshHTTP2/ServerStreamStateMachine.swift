import MeshRPC
import NIOCore

/// The life of one streaming call on the server, as two halves: the requests
/// (open until the client's END_STREAM or a reset) and the responses (idle
/// until the first message sends the headers; then open; closing once the
/// status is queued; closed when the stream is gone). Every event returns
/// what the connection must do; the connection does it, and nothing else
/// decides. Tested without sockets (ServerStreamStateMachineTests).
struct ServerStreamStateMachine {
    enum Requests: Equatable {
        case open
        case closed
    }

    enum Responses: Equatable {
        /// No headers sent yet.
        case idle
        /// Headers sent; messages may follow.
        case open
        /// The status is queued (after any messages still queued); nothing more may be written.
        case closing
        /// The stream is closed or reset.
        case closed
    }

    private(set) var requests: Requests = .open
    private(set) var responses: Responses = .idle
    private(set) var handlerRunning = true

    enum MessageAction: Equatable {
        /// Hand the message to the handler's request stream.
        case deliver
        /// The call is over or the client already ended its requests: drop it.
        case drop
    }

    /// A request message arrived.
    mutating func requestReceived() -> MessageAction {
        requests == .open && (responses == .idle || responses == .open) ? .deliver : .drop
    }

    enum EndAction: Equatable {
        /// End the handler's request stream normally.
        case finishRequests
        case none
    }

    /// The client half-closed (END_STREAM).
    mutating func requestsEnded() -> EndAction {
        guard requests == .open else { return .none }
        requests = .closed
        return responses == .closed ? .none : .finishRequests
    }

    enum WriteAction: Equatable {
        /// Submit the response headers, then queue the message.
        case sendHeadersAndMessage
        case sendMessage
        /// The call is over: the writer gets this status.
        case refuse(RPCError)
    }

    /// The handler writes a response message.
    mutating func responseWritten() -> WriteAction {
        switch responses {
        case .idle:
            responses = .open
            return .sendHeadersAndMessage
        case .open:
            return .sendMessage
        case .closing:
            return .refuse(.failedPrecondition("the call's status was already sent"))
        case .closed:
            return .refuse(.cancelled("the stream was closed"))
        }
    }

    enum StatusAction: Equatable {
        /// HEADERS with the status and END_STREAM (nothing was sent before).
        case sendTrailersOnly(cancelHandler: Bool, failRequests: RPCError?)
        /// The status in trailers, after the messages still queued.
        case sendTrailers(cancelHandler: Bool, failRequests: RPCError?)
        case none
    }

    /// The handler returned (status OK or the error it threw).
    mutating func handlerFinished() -> StatusAction {
        handlerRunning = false
        return close(cancelHandler: false, reason: .cancelled("the call is over"))
    }

    /// The call ends before the handler does: its deadline passed, or the request
    /// stream broke (a message over the limit, a truncated one). The handler is cancelled.
    mutating func failed() -> StatusAction {
        let running = handlerRunning
        handlerRunning = false
        return close(cancelHandler: running, reason: .cancelled("the call failed"))
    }

    private mutating func close(cancelHandler: Bool, reason: RPCError) -> StatusAction {
        let failRequests: RPCError? = requests == .open ? reason : nil
        requests = .closed
        switch responses {
        case .idle:
            responses = .closing
            return .sendTrailersOnly(cancelHandler: cancelHandler, failRequests: failRequests)
        case .open:
            responses = .closing
            return .sendTrailers(cancelHandler: cancelHandler, failRequests: failRequests)
        case .closing, .closed:
            return .none
        }
    }

    enum ClosedAction: Equatable {
        /// The client reset the stream (or the connection went) while the call ran:
        /// cancel the handler, end its requests with CANCELLED, release its writers.
        case cancel
        /// The stream closed after its status: nothing is left to do.
        case none
    }

    /// nghttp2 closed the stream (reset by either side, or done).
    mutating func streamClosed() -> ClosedAction {
        let wasRunning = handlerRunning
        requests = .closed
        responses = .closed
        handlerRunning = false
        return wasRunning ? .cancel : .none
    }
}
