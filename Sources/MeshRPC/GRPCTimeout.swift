import NIOCore

/// The `grpc-timeout` header: at most 8 digits and a unit (H M S m u n).
public enum GRPCTimeout {
    /// nil for a malformed value; the server then answers INVALID_ARGUMENT rather than guess a deadline.
    /// Inlinable so that the transport's call, on the bytes nghttp2 hands it, is specialised.
    @inlinable
    public static func parse<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> TimeAmount? {
        let count = bytes.count
        guard count >= 2, count <= 9 else { return nil }
        var value: Int64 = 0
        var unit: UInt8 = 0
        var i = 0
        for b in bytes {
            if i == count - 1 {
                unit = b
            } else {
                guard b >= 0x30, b <= 0x39 else { return nil }
                value = value * 10 + Int64(b - 0x30)
            }
            i += 1
        }
        switch unit {
        case UInt8(ascii: "H"): return .hours(value)
        case UInt8(ascii: "M"): return .minutes(value)
        case UInt8(ascii: "S"): return .seconds(value)
        case UInt8(ascii: "m"): return .milliseconds(value)
        case UInt8(ascii: "u"): return .microseconds(value)
        case UInt8(ascii: "n"): return .nanoseconds(value)
        default: return nil
        }
    }

    /// A `grpc-timeout` value ("100m", "5S"…) as a duration; nil when it is malformed.
    public static func parse(_ text: String) -> TimeAmount? {
        parse(Array(text.utf8))
    }

    /// The shortest exact-or-rounded-up encoding that fits in 8 digits.
    public static func format(_ amount: TimeAmount) -> String {
        let ns = max(amount.nanoseconds, 1)
        let units: [(Int64, Character)] = [(1, "n"), (1_000, "u"), (1_000_000, "m"), (1_000_000_000, "S"), (60_000_000_000, "M"), (3_600_000_000_000, "H")]
        for (scale, unit) in units {
            // Not (ns + scale - 1) / scale: a deadline carried from a caller's "99999999H" is near
            // Int64.max nanoseconds away, and the sum overflowed (found by the grpc-request fuzzer).
            let value = ns / scale + (ns % scale == 0 ? 0 : 1)
            if value < 100_000_000 {
                return "\(value)\(unit)"
            }
        }
        return "99999999H"
    }
}
