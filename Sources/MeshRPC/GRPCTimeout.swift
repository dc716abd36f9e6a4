import NIOCore

/// The `grpc-timeout` header: at most 8 digits and a unit (H M S m u n).
public enum GRPCTimeout {
    /// nil for a malformed value; the server then answers INVALID_ARGUMENT rather than guess a deadline.
    public static func parse(_ bytes: some Collection<UInt8>) -> TimeAmount? {
        guard bytes.count >= 2, bytes.count <= 9 else { return nil }
        var value: Int64 = 0
        var unit: UInt8 = 0
        var digits = 0
        for (i, b) in bytes.enumerated() {
            if i == bytes.count - 1 {
                unit = b
            } else {
                guard b >= 0x30, b <= 0x39 else { return nil }
                value = value * 10 + Int64(b - 0x30)
                digits += 1
            }
        }
        guard digits >= 1 else { return nil }
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

    public static func parse(_ text: String) -> TimeAmount? {
        parse(Array(text.utf8))
    }

    /// The shortest exact-or-rounded-up encoding that fits in 8 digits.
    public static func format(_ amount: TimeAmount) -> String {
        let ns = max(amount.nanoseconds, 1)
        let units: [(Int64, Character)] = [(1, "n"), (1_000, "u"), (1_000_000, "m"), (1_000_000_000, "S"), (60_000_000_000, "M"), (3_600_000_000_000, "H")]
        for (scale, unit) in units {
            let value = (ns + scale - 1) / scale
            if value < 100_000_000 {
                return "\(value)\(unit)"
            }
        }
        return "99999999H"
    }
}
