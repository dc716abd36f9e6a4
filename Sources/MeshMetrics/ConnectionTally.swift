import CoreMetrics
import MeshRPC
import NIOCore

/// What one server connection counted and has not reported yet. Kept in plain integers on the
/// connection's event loop and added to the shared series in batches (`report`): two event loops
/// serving calls would otherwise pass the same counters' and histogram's cache lines back and
/// forth on every call, which cost the trivial call 4–6 % of its rate; batched, a line moves once
/// a batch. The connection reports every `batch` calls and within `delay` of its first unreported one.
public struct ConnectionTally {
    public static let batch = 64
    public static let delay: TimeAmount = .milliseconds(50)

    private var started: [(method: MethodMetrics, count: Int)] = []
    private var ended: [(method: MethodMetrics, code: RPCError.Code, nanoseconds: Int64)] = []
    private var receivedBytes = 0
    private var sentBytes = 0
    private var streams = 0

    public init() {
        ended.reserveCapacity(Self.batch)
    }

    /// Past this many calls the connection reports at once.
    public var isFull: Bool { ended.count >= Self.batch }

    public mutating func start(_ method: MethodMetrics) {
        if let last = started.last, last.method === method {
            started[started.count - 1].count += 1
        } else {
            started.append((method, 1))
        }
    }

    /// A stream closed; `method` is nil for one that was never admitted as a call, `start` when it was.
    public mutating func end(_ method: MethodMetrics?, code: RPCError.Code, since start: NIODeadline) {
        streams -= 1
        if let method { ended.append((method, code, MethodMetrics.nanoseconds(since: start))) }
    }

    /// A stream opened that may never become a call (its headers are refused before admission).
    public mutating func opened() {
        streams += 1
    }

    public mutating func received(_ bytes: Int) { receivedBytes += bytes }
    public mutating func sent(_ bytes: Int) { sentBytes += bytes }

    /// Adds what was counted to the shared series and starts again.
    public mutating func report(to transport: TransportMetrics) {
        for (method, count) in started { method.start(count) }
        var run: (method: MethodMetrics, code: RPCError.Code, count: Int)?
        for (method, code, nanoseconds) in ended {
            method.observe(nanoseconds: nanoseconds)
            if let current = run, current.method === method, current.code == code {
                run!.count += 1
            } else {
                if let current = run { current.method.handled(current.code, count: current.count) }
                run = (method, code, 1)
            }
        }
        if let current = run { current.method.handled(current.code, count: current.count) }
        if receivedBytes > 0 { transport.receivedBytes.increment(by: Int64(receivedBytes)) }
        if sentBytes > 0 { transport.sentBytes.increment(by: Int64(sentBytes)) }
        if streams != 0 { transport.streams.add(streams, ordering: .relaxed) }
        started.removeAll(keepingCapacity: true)
        ended.removeAll(keepingCapacity: true)
        receivedBytes = 0
        sentBytes = 0
        streams = 0
    }
}
