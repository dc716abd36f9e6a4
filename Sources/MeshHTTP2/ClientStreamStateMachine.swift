import MeshRPC

/// The life of one streaming call on the client, as two halves: the requests (open until
/// the caller finishes them) and the responses (awaiting the server's headers; open; the
/// trailers in; failed here — a bad message or encoding; closed). Every event returns what
/// the connection must do. Tested without sockets (ClientStreamStateMachineTests).
struct ClientStreamStateMachine {
    enum Requests: Equatable {
        case open
        case finished
    }

    enum Responses: Equatable {
        case awaitingHeaders
        case open
        case trailersReceived
        case failed(RPCError)
        case closed
    }

    private(set) var requests: Requests = .open
    private(set) var responses: Responses = .awaitingHeaders
    /// The caller was given the response headers (or told there will be none).
    private(set) var initialMetadataPublished = false

    enum HeadersAction: Equatable {
        /// The response headers (or a Trailers-Only response) arrived: hand them to the caller.
        case publishInitialMetadata
        case none
    }

    /// A HEADERS frame from the server: the first is the response's headers, a later one its trailers.
    mutating func headersReceived() -> HeadersAction {
        switch responses {
        case .awaitingHeaders:
            responses = .open
            initialMetadataPublished = true
            return .publishInitialMetadata
        case .open:
            responses = .trailersReceived
            return .none
        case .trailersReceived, .failed, .closed:
            return .none
        }
    }

    /// Whether response DATA still goes to the caller (else it is consumed and dropped).
    var acceptsMessages: Bool { responses == .open }

    enum FailAction: Equatable {
        /// Reset the stream (RST_STREAM CANCEL); the call ends with the error.
        case reset
        case none
    }

    /// A response the client cannot take (over the limit, not inflatable, an encoding never offered).
    mutating func responseFailed(_ error: RPCError) -> FailAction {
        switch responses {
        case .awaitingHeaders, .open, .trailersReceived:
            responses = .failed(error)
            return .reset
        case .failed, .closed:
            return .none
        }
    }

    enum WriteAction: Equatable {
        case send
        case refuse(RPCError)
    }

    /// The caller writes a request.
    func requestWritten() -> WriteAction {
        if case .closed = responses { return .refuse(.cancelled("the call is over")) }
        if requests == .finished { return .refuse(.failedPrecondition("requests were already finished")) }
        return .send
    }

    enum FinishAction: Equatable {
        /// Send END_STREAM after the requests already queued.
        case endStream
        case none
    }

    /// The caller has no more requests.
    mutating func requestsFinished() -> FinishAction {
        guard requests == .open else { return .none }
        requests = .finished
        if case .closed = responses { return .none }
        return .endStream
    }

    enum Outcome: Equatable {
        case ok
        /// The server's status (not OK), with its message.
        case status(code: Int, message: String)
        /// The call failed here (a response it could not take, a message cut short).
        case failed(RPCError)
        /// No grpc-status came: the stream was reset, or the answer was not gRPC.
        case withoutStatus
        /// It had already ended (cancelled or timed out here).
        case alreadyEnded
    }

    /// nghttp2 closed the stream: how the call ended, from what was received.
    mutating func streamClosed(grpcStatus: Int?, grpcMessage: String?, partialMessage: Bool) -> Outcome {
        let before = responses
        responses = .closed
        requests = .finished
        switch before {
        case .closed:
            return .alreadyEnded
        case .failed(let error):
            return .failed(error)
        case .awaitingHeaders, .open, .trailersReceived:
            guard let grpcStatus else { return .withoutStatus }
            if partialMessage { return .failed(.internal("the response stream ended inside a message")) }
            return grpcStatus == 0 ? .ok : .status(code: grpcStatus, message: grpcMessage ?? "")
        }
    }

    /// The call ends here before the stream does (the caller cancelled, the deadline passed,
    /// the connection went). False when it had ended already.
    mutating func ended() -> Bool {
        if case .closed = responses { return false }
        responses = .closed
        requests = .finished
        return true
    }
}
