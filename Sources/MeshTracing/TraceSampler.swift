import Synchronization

/// The sampling decision, made before any span exists: OpenTelemetry's `OTEL_TRACES_SAMPLER` /
/// `OTEL_TRACES_SAMPLER_ARG` (always_on, always_off, traceidratio, and their parentbased_ forms),
/// taken here rather than by the tracer because a span the tracer creates only to drop it costs
/// its ids — three getrandom(2) calls under one lock — on every call (4.5 µs per trivial call at
/// 1 % sampling, measured). A call that is not sampled makes no span; it passes an unsampled
/// `traceparent` on (flags 00), so that the services it calls do not sample its trace either.
public struct TraceSampler: Sendable, Equatable {
    public enum Root: Sendable, Equatable {
        case always, never
        case ratio(Double)
    }

    public let root: Root
    /// Follow the caller's decision (the `sampled` flag of its traceparent) when there is one.
    public let parentBased: Bool

    public init(root: Root, parentBased: Bool) {
        self.root = root
        self.parentBased = parentBased
    }

    /// OpenTelemetry's default: parentbased_always_on.
    public static let `default` = TraceSampler(root: .always, parentBased: true)

    /// From the environment as the OpenTelemetry specification names it; an unknown sampler is the default.
    public init(environment: [String: String]) {
        let name = environment["OTEL_TRACES_SAMPLER"]?.lowercased() ?? "parentbased_always_on"
        let ratio = environment["OTEL_TRACES_SAMPLER_ARG"].flatMap(Double.init).map { min(max($0, 0), 1) } ?? 1
        switch name {
        case "always_on": self.init(root: .always, parentBased: false)
        case "always_off": self.init(root: .never, parentBased: false)
        case "traceidratio": self.init(root: .ratio(ratio), parentBased: false)
        case "parentbased_always_off": self.init(root: .never, parentBased: true)
        case "parentbased_traceidratio": self.init(root: .ratio(ratio), parentBased: true)
        default: self = .default
        }
    }

    /// Whether a call is recorded, given the caller's `traceparent` (if any) and a uniform random number.
    public func samples(parent: String?, random: UInt64) -> Bool {
        samples(parent: parent) { random }
    }

    /// As `samples(parent:random:)`, drawing the number only when a ratio needs one.
    func samples(parent: String?, random: () -> UInt64) -> Bool {
        if parentBased, let parent, let sampled = Self.sampledFlag(parent) {
            return sampled
        }
        switch root {
        case .always: return true
        case .never: return false
        case .ratio(let ratio): return ratio >= 1 || Double(random() >> 11) * 0x1p-53 < ratio
        }
    }

    /// The `sampled` flag of a W3C traceparent ("00-<trace id>-<parent id>-<flags>"), nil when it is not one.
    public static func sampledFlag(_ traceparent: String) -> Bool? {
        let utf8 = traceparent.utf8
        guard utf8.count >= 55, let flags = UInt8(traceparent.suffix(2), radix: 16) else { return nil }
        return flags & 1 == 1
    }

    /// A traceparent for a call that is not sampled, with fresh (non-cryptographic) ids: the
    /// services it calls see the decision and take the same one.
    static func unsampledParent(random: () -> UInt64) -> String {
        func hex(_ value: UInt64) -> String {
            let digits = String(value, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }
        return "00-" + hex(random() | 1) + hex(random()) + "-" + hex(random() | 1) + "-00"
    }
}

/// Uniform random numbers for sampling decisions and unsampled ids: splitmix64 over one atomic
/// counter, no system call.
enum SamplingRandom {
    private static let state = Atomic<UInt64>(UInt64.random(in: 0...UInt64.max))

    static func next() -> UInt64 {
        mix(state.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue)
    }

    /// splitmix64's output function: what `next` makes of the counter, and of a seed's later steps.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
