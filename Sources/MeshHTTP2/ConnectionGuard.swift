import NIOCore
import Synchronization

/// What a server connection's peer must do in time, and what it may not do at all or too often:
/// the rules that keep a hostile peer from holding a connection slot, the event loop or memory
/// (README, The runtime: "Hostile peers"). A plain state machine fed by the connection handler;
/// each transition says what the handler must do.
struct ConnectionGuard {
    struct Limits {
        /// The client's preface and SETTINGS, and each request's header block once begun, must
        /// arrive within this (slowloris).
        var handshakeTimeout: TimeAmount
        /// SETTINGS frames a client may send at once, and how many more it earns per second:
        /// each costs the server an ACK and a pass over its streams' windows.
        var settings = TokenBucket.Rate(burst: 64, perSecond: 8)
        /// RST_STREAMs a client may send at once and per second (rapid reset, CVE-2023-44487): as
        /// nghttp2's own limit, which is set higher so that this one, answering as gRPC servers do
        /// (ENHANCE_YOUR_CALM rather than its INTERNAL_ERROR), acts first.
        var resets = TokenBucket.Rate(burst: 1000, perSecond: 33)
        /// Answers waiting on the peer's shut window with not a byte sent for this long: the peer is
        /// gone or stalls on purpose (a zero window), and is let go. nil: never.
        var sendStallTimeout: TimeAmount?
    }

    enum Action: Equatable {
        case none
        /// End the connection with GOAWAY carrying `code`; `reason` goes into its debug data.
        case goaway(code: UInt32, reason: String)
    }

    let limits: Limits
    private let openedAt: NIODeadline
    private(set) var handshaken = false
    /// The stream whose request header block is being received (its HEADERS began, its last
    /// frame has not come), and how many ticks in a row have seen that same block unfinished.
    private var headerBlock: Int32?
    private var watched: (stream: Int32, ticks: Int)?
    /// Ticks in a row that found answers waiting and nothing sent since the one before.
    private var stalledTicks = 0
    /// The highest stream id a HEADERS frame has opened: a new stream's id must be above it.
    private var highestStream: Int32 = 0
    /// Streams closed before the client ended its side (reset, or answered early): a HEADERS the
    /// client sent before it learnt that (its trailers) is not an error (RFC 9113 §5.1, closed).
    private var abandoned = AbandonedStreams()
    private var settings: TokenBucket
    private var resets: TokenBucket

    init(limits: Limits, openedAt: NIODeadline) {
        self.limits = limits
        self.openedAt = openedAt
        settings = TokenBucket(limits.settings, now: openedAt)
        resets = TokenBucket(limits.resets, now: openedAt)
    }

    /// While something is waited for, `tick` runs this often. Header blocks are timed by ticks,
    /// not clock reads, so that a call costs no clock read for it: a block seen unfinished by
    /// three ticks in a row has taken at least two intervals, the timeout.
    var tickInterval: TimeAmount { .nanoseconds(limits.handshakeTimeout.nanoseconds / 2) }
    var wantsTicks: Bool { !handshaken || headerBlock != nil }

    /// A frame's 9-byte header has arrived. A HEADERS frame on a stream id at or below one already
    /// used, for no stream open or recently abandoned, reuses an id or goes backwards: a connection
    /// error (RFC 9113 §5.1.1), which nghttp2 would let pass as an ignored header block.
    /// SETTINGS and RST_STREAM are counted here, as they arrive, not once processed: a read
    /// can hold thousands, and nghttp2 would meet its own flood limits (and close without a word)
    /// before the read was over.
    mutating func frameBegan(
        type: UInt8, flags: UInt8, stream: Int32, streamIsOpen: Bool, now: @autoclosure () -> NIODeadline = .now()
    ) -> Action {
        if type == NG.rstStreamFrame {
            return resets.take(now: now()) ? .none : .goaway(code: NG.enhanceYourCalm, reason: "too_many_resets")
        }
        if type == NG.settingsFrame {
            guard flags & NG.ackFlag == 0 else { return .none }
            return settings.take(now: now()) ? .none : .goaway(code: NG.enhanceYourCalm, reason: "too_many_settings")
        }
        guard type == NG.headersFrame else { return .none }
        if stream > highestStream {
            highestStream = stream
        } else if !streamIsOpen && !abandoned.contains(stream) {
            return .goaway(code: NG.protocolError, reason: "stream \(stream) is not above \(highestStream)")
        }
        return .none
    }

    /// nghttp2 has begun a request header block it will deliver (not one it ignores).
    mutating func headerBlockBegan(_ stream: Int32) {
        headerBlock = stream
    }

    /// The block is whole, or its stream is gone (reset for its size, say): it is not waited for.
    mutating func headerBlockEnded(_ stream: Int32) {
        if headerBlock == stream { headerBlock = nil }
    }

    /// A client SETTINGS frame (not an ACK) was processed: the first completes the handshake.
    mutating func settingsReceived() {
        handshaken = true
    }

    /// A stream closed before the client sent END_STREAM on it.
    mutating func streamAbandoned(_ stream: Int32) {
        abandoned.insert(stream)
    }

    /// Whatever was waited for and has not come in time. `answersWaiting`: response bytes are
    /// queued for the peer; `sentSinceLastTick`: some bytes went out since the last tick.
    mutating func tick(now: NIODeadline, answersWaiting: Bool = false, sentSinceLastTick: Bool = false) -> Action {
        if !handshaken, now - openedAt >= limits.handshakeTimeout {
            return .goaway(code: NG.noError, reason: "handshake_timeout")
        }
        if let stall = limits.sendStallTimeout, answersWaiting, !sentSinceLastTick {
            stalledTicks += 1
            // The first such tick may come just after the last byte went: it counts from there.
            if Int64(stalledTicks - 1) * tickInterval.nanoseconds >= stall.nanoseconds {
                return .goaway(code: NG.noError, reason: "send_stalled")
            }
        } else {
            stalledTicks = 0
        }
        guard let block = headerBlock else {
            watched = nil
            return .none
        }
        let ticks = watched?.stream == block ? watched!.ticks + 1 : 1
        watched = (block, ticks)
        return ticks >= 3 ? .goaway(code: NG.noError, reason: "header_timeout") : .none
    }
}

/// So many at once, and so many more each second.
struct TokenBucket {
    struct Rate {
        var burst: Int
        var perSecond: Int
    }

    let rate: Rate
    private var tokens: Double
    private var refilledAt: NIODeadline

    init(_ rate: Rate, now: NIODeadline) {
        self.rate = rate
        tokens = Double(rate.burst)
        refilledAt = now
    }

    /// Takes a token if there is one.
    mutating func take(now: NIODeadline) -> Bool {
        let elapsed = Double((now - refilledAt).nanoseconds) / 1e9
        refilledAt = now
        tokens = min(Double(rate.burst), tokens + elapsed * Double(rate.perSecond))
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// The last few streams abandoned, in a fixed ring: a peer's late trailers follow its stream's
/// reset by a round trip, so only recent ones matter, and remembering costs no allocation.
struct AbandonedStreams {
    private var ids: (Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32) = (0, 0, 0, 0, 0, 0, 0, 0)
    private var next = 0

    func contains(_ id: Int32) -> Bool {
        withUnsafeBytes(of: ids) { $0.bindMemory(to: Int32.self).contains(id) }
    }

    mutating func insert(_ id: Int32) {
        withUnsafeMutableBytes(of: &ids) { $0.bindMemory(to: Int32.self)[next] = id }
        next = (next + 1) & 7
    }
}

/// What the server knows of a connection to choose which to let go when it is full: whether
/// the client has completed its handshake, from which host, since when.
final class ConnectionRecord: Sendable {
    let peerHost: String
    let openedAt: NIODeadline
    private let shaken = Atomic<Bool>(false)

    init(peerHost: String, openedAt: NIODeadline = .now()) {
        self.peerHost = peerHost
        self.openedAt = openedAt
    }

    var handshaken: Bool { shaken.load(ordering: .relaxed) }
    func markHandshaken() { shaken.store(true, ordering: .relaxed) }
}
