import Synchronization

/// A clock a test moves by hand, handed to handlers as their `now`.
public final class TestClock: Sendable {
    private let value: Mutex<Int64>

    public init(_ start: Int64) {
        value = Mutex(start)
    }

    public var now: Int64 { value.withLock { $0 } }

    public func advance(ms: Int64) {
        value.withLock { $0 += ms }
    }
}
