@testable import MeshHTTP2
import MeshRPC
import Testing

/// Every transition of a streaming call's life on the client, without a socket.
@Suite struct ClientStreamStateMachineTests {
    @Test func headersThenMessagesThenTrailersThenOK() {
        var machine = ClientStreamStateMachine()
        #expect(!machine.acceptsMessages)
        #expect(machine.headersReceived() == .publishInitialMetadata)
        #expect(machine.initialMetadataPublished && machine.acceptsMessages)
        #expect(machine.headersReceived() == .none)
        #expect(machine.responses == .trailersReceived && !machine.acceptsMessages)
        #expect(machine.streamClosed(grpcStatus: 0, grpcMessage: nil, partialMessage: false) == .ok)
        #expect(machine.responses == .closed)
    }

    @Test func aTrailersOnlyAnswerPublishesItsHeadersAndEndsWithItsStatus() {
        var machine = ClientStreamStateMachine()
        #expect(machine.headersReceived() == .publishInitialMetadata)
        #expect(machine.streamClosed(grpcStatus: 5, grpcMessage: "no such order", partialMessage: false) == .status(code: 5, message: "no such order"))
    }

    @Test func writesUntilFinishedThenRefused() {
        var machine = ClientStreamStateMachine()
        #expect(machine.requestWritten() == .send)
        #expect(machine.requestsFinished() == .endStream)
        #expect(machine.requestsFinished() == .none)
        #expect(machine.requestWritten() == .refuse(.failedPrecondition("requests were already finished")))
    }

    @Test func aResponseItCannotTakeResetsOnceAndEndsWithItsError() {
        var machine = ClientStreamStateMachine()
        _ = machine.headersReceived()
        let error = RPCError.resourceExhausted("response message of 9 MiB is over the limit")
        #expect(machine.responseFailed(error) == .reset)
        #expect(!machine.acceptsMessages)
        #expect(machine.responseFailed(.internal("later")) == .none)
        // The server's status that follows the reset does not replace the reason.
        #expect(machine.streamClosed(grpcStatus: 0, grpcMessage: nil, partialMessage: false) == .failed(error))
    }

    @Test func aStreamEndingInsideAMessageFailsEvenWithOK() {
        var machine = ClientStreamStateMachine()
        _ = machine.headersReceived()
        _ = machine.headersReceived()
        #expect(machine.streamClosed(grpcStatus: 0, grpcMessage: nil, partialMessage: true) == .failed(.internal("the response stream ended inside a message")))
    }

    @Test func noStatusIsLeftToTheTransportToName() {
        var machine = ClientStreamStateMachine()
        #expect(machine.streamClosed(grpcStatus: nil, grpcMessage: nil, partialMessage: false) == .withoutStatus)
        #expect(!machine.initialMetadataPublished)
    }

    @Test func aCallEndedHereEndsOnceAndRefusesWrites() {
        var machine = ClientStreamStateMachine()
        let first = machine.ended()
        let second = machine.ended()
        #expect(first && !second)
        #expect(machine.requestWritten() == .refuse(.cancelled("the call is over")))
        #expect(machine.requestsFinished() == .none)
        #expect(machine.streamClosed(grpcStatus: 0, grpcMessage: nil, partialMessage: false) == .alreadyEnded)
    }
}
