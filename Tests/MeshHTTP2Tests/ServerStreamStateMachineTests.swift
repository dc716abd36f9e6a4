@testable import MeshHTTP2
import MeshRPC
import Testing

/// Every transition of a streaming call's life on the server, without a socket.
@Suite struct ServerStreamStateMachineTests {
    @Test func messagesAreDeliveredWhileBothHalvesAreOpen() {
        var machine = ServerStreamStateMachine()
        #expect(machine.requestReceived() == .deliver)
        #expect(machine.responseWritten() == .sendHeadersAndMessage)
        #expect(machine.requestReceived() == .deliver)
        #expect(machine.responseWritten() == .sendMessage)
        #expect(machine.responses == .open)
    }

    @Test func theClientHalfCloseEndsTheRequestsOnce() {
        var machine = ServerStreamStateMachine()
        #expect(machine.requestsEnded() == .finishRequests)
        #expect(machine.requests == .closed)
        #expect(machine.requestsEnded() == .none)
        // Data after END_STREAM (a broken peer) is dropped; responses still flow.
        #expect(machine.requestReceived() == .drop)
        #expect(machine.responseWritten() == .sendHeadersAndMessage)
    }

    @Test func aHandlerThatWroteNothingAnswersTrailersOnly() {
        var machine = ServerStreamStateMachine()
        #expect(machine.requestsEnded() == .finishRequests)
        #expect(machine.handlerFinished() == .sendTrailersOnly(cancelHandler: false, failRequests: nil))
        #expect(machine.responses == .closing)
        #expect(!machine.handlerRunning)
    }

    @Test func aHandlerThatWroteSendsTrailersAfterItsMessages() {
        var machine = ServerStreamStateMachine()
        _ = machine.responseWritten()
        // It returns without reading the client's half-close: the requests end for it.
        #expect(machine.handlerFinished() == .sendTrailers(cancelHandler: false, failRequests: .cancelled("the call is over")))
        #expect(machine.requests == .closed)
    }

    @Test func afterTheStatusNothingMoreIsWrittenOrDelivered() {
        var machine = ServerStreamStateMachine()
        _ = machine.responseWritten()
        _ = machine.handlerFinished()
        #expect(machine.responseWritten() == .refuse(.failedPrecondition("the call's status was already sent")))
        #expect(machine.requestReceived() == .drop)
        #expect(machine.handlerFinished() == .none)
        #expect(machine.failed() == .none)
    }

    @Test func aDeadlineOrABrokenRequestCancelsTheRunningHandler() {
        var idle = ServerStreamStateMachine()
        #expect(idle.failed() == .sendTrailersOnly(cancelHandler: true, failRequests: .cancelled("the call failed")))
        var writing = ServerStreamStateMachine()
        _ = writing.responseWritten()
        _ = writing.requestsEnded()
        #expect(writing.failed() == .sendTrailers(cancelHandler: true, failRequests: nil))
        // The handler then returns (cancelled): its status is not sent twice.
        #expect(writing.handlerFinished() == .none)
    }

    @Test func aResetWhileTheHandlerRunsCancelsIt() {
        var machine = ServerStreamStateMachine()
        _ = machine.responseWritten()
        #expect(machine.streamClosed() == .cancel)
        #expect(machine.responses == .closed && machine.requests == .closed)
        #expect(machine.responseWritten() == .refuse(.cancelled("the stream was closed")))
        #expect(machine.handlerFinished() == .none)
    }

    @Test func aCloseAfterTheStatusHasNothingToCancel() {
        var machine = ServerStreamStateMachine()
        _ = machine.handlerFinished()
        #expect(machine.streamClosed() == .none)
    }
}
