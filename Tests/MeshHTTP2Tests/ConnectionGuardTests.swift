@testable import MeshHTTP2
import NIOCore
import Testing

/// The rules a server connection's peer must keep, without a socket (the attacks themselves,
/// frame by frame against a real server, are in Tests/interop/test_http2_attacks.py).
@Suite struct ConnectionGuardTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func makeGuard(stall: TimeAmount? = nil) -> ConnectionGuard {
        ConnectionGuard(limits: .init(handshakeTimeout: .seconds(10), sendStallTimeout: stall), openedAt: start)
    }

    func headers(_ g: inout ConnectionGuard, _ id: Int32, open: Bool = false) -> ConnectionGuard.Action {
        g.frameBegan(type: NG.headersFrame, flags: 0, stream: id, streamIsOpen: open, now: start)
    }

    @Test func streamIdsMustGoUp() {
        var g = makeGuard()
        #expect(headers(&g, 1) == .none)
        #expect(headers(&g, 5) == .none)
        // Stream 5's trailers while it is open are fine; 3 after 5 goes backwards; 5 again, closed, is reuse.
        #expect(headers(&g, 5, open: true) == .none)
        #expect(headers(&g, 3) == .goaway(code: NG.protocolError, reason: "stream 3 is not above 5"))
        #expect(headers(&g, 5) == .goaway(code: NG.protocolError, reason: "stream 5 is not above 5"))
        #expect(headers(&g, 7) == .none)
    }

    @Test func lateTrailersOfAnAbandonedStreamAreNotAnError() {
        var g = makeGuard()
        for id in stride(from: Int32(1), through: 41, by: 2) { #expect(headers(&g, id) == .none) }
        g.streamAbandoned(39)
        #expect(headers(&g, 39) == .none)
        // Only the last eight abandoned are remembered.
        for id in stride(from: Int32(21), through: 35, by: 2) { g.streamAbandoned(id) }
        #expect(headers(&g, 35) == .none)
        #expect(headers(&g, 39) != .none)
    }

    @Test func aSettingsFloodIsCalmedAndTheBucketRefills() {
        var g = makeGuard()
        for _ in 0..<64 {
            #expect(g.frameBegan(type: NG.settingsFrame, flags: 0, stream: 0, streamIsOpen: false, now: start) == .none)
        }
        #expect(g.frameBegan(type: NG.settingsFrame, flags: 0, stream: 0, streamIsOpen: false, now: start)
            == .goaway(code: NG.enhanceYourCalm, reason: "too_many_settings"))
        // ACKs are not counted; a second later 8 more are allowed.
        #expect(g.frameBegan(type: NG.settingsFrame, flags: NG.ackFlag, stream: 0, streamIsOpen: false, now: start) == .none)
        let later = start + .seconds(1)
        for _ in 0..<8 {
            #expect(g.frameBegan(type: NG.settingsFrame, flags: 0, stream: 0, streamIsOpen: false, now: later) == .none)
        }
        #expect(g.frameBegan(type: NG.settingsFrame, flags: 0, stream: 0, streamIsOpen: false, now: later) != .none)
    }

    @Test func rapidResetsPastTheBurstAreCalmed() {
        var g = makeGuard()
        for _ in 0..<1000 {
            #expect(g.frameBegan(type: NG.rstStreamFrame, flags: 0, stream: 1, streamIsOpen: true, now: start) == .none)
        }
        #expect(g.frameBegan(type: NG.rstStreamFrame, flags: 0, stream: 1, streamIsOpen: true, now: start)
            == .goaway(code: NG.enhanceYourCalm, reason: "too_many_resets"))
    }

    @Test func theHandshakeMustComeInTime() {
        var late = makeGuard()
        #expect(late.wantsTicks)
        #expect(late.tick(now: start + .seconds(5)) == .none)
        #expect(late.tick(now: start + .seconds(10)) == .goaway(code: NG.noError, reason: "handshake_timeout"))
        var onTime = makeGuard()
        onTime.settingsReceived()
        #expect(!onTime.wantsTicks)
        #expect(onTime.tick(now: start + .seconds(60)) == .none)
    }

    @Test func aHeaderBlockSeenUnfinishedByThreeTicksEndsTheConnection() {
        var g = makeGuard()
        g.settingsReceived()
        g.headerBlockBegan(1)
        #expect(g.wantsTicks)
        #expect(g.tick(now: start + .seconds(5)) == .none)
        #expect(g.tick(now: start + .seconds(10)) == .none)
        #expect(g.tick(now: start + .seconds(15)) == .goaway(code: NG.noError, reason: "header_timeout"))
        // Blocks that finish between ticks never add up, however many there are.
        var busy = makeGuard()
        busy.settingsReceived()
        for i in 0..<10 {
            let id = Int32(2 * i + 1)
            busy.headerBlockBegan(id)
            #expect(busy.tick(now: start + .seconds(Int64(5 * i))) == .none)
            busy.headerBlockEnded(id)
        }
        #expect(!busy.wantsTicks)
    }

    @Test func answersThatNeverLeaveEndTheConnectionAfterTheStallTimeout() {
        var g = makeGuard(stall: .seconds(20))
        g.settingsReceived()
        var t = start
        func tick(_ waiting: Bool, _ sent: Bool) -> ConnectionGuard.Action {
            t = t + .seconds(5)
            return g.tick(now: t, answersWaiting: waiting, sentSinceLastTick: sent)
        }
        // Progress now and then keeps it alive; so does having nothing to send.
        for _ in 0..<10 { #expect(tick(true, false) == .none); #expect(tick(true, true) == .none) }
        for _ in 0..<10 { #expect(tick(false, false) == .none) }
        // Stalled: the first tick may follow the last byte at once, so 20 s are 5 ticks.
        for _ in 0..<4 { #expect(tick(true, false) == .none) }
        #expect(tick(true, false) == .goaway(code: NG.noError, reason: "send_stalled"))
        var never = makeGuard(stall: nil)
        never.settingsReceived()
        for _ in 0..<100 { #expect(never.tick(now: start, answersWaiting: true, sentSinceLastTick: false) == .none) }
    }
}
