import MeshTracing
import Testing

@Suite struct TraceSamplerTests {
    static let sampledParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    static let unsampledParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"

    @Test func theEnvironmentNamesTheSamplerAsOpenTelemetryDoes() {
        #expect(TraceSampler(environment: [:]) == .default)
        #expect(TraceSampler(environment: ["OTEL_TRACES_SAMPLER": "always_off"]) == TraceSampler(root: .never, parentBased: false))
        #expect(TraceSampler(environment: ["OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"])
            == TraceSampler(root: .ratio(0.01), parentBased: false))
        #expect(TraceSampler(environment: ["OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "7"])
            == TraceSampler(root: .ratio(1), parentBased: true))
        #expect(TraceSampler(environment: ["OTEL_TRACES_SAMPLER": "no_such_sampler"]) == .default)
    }

    @Test func aParentBasedSamplerFollowsTheCallersFlagAndOnlyDecidesForRoots() {
        let sampler = TraceSampler(root: .never, parentBased: true)
        #expect(sampler.samples(parent: Self.sampledParent, random: 0))
        #expect(!sampler.samples(parent: Self.unsampledParent, random: 0))
        #expect(!sampler.samples(parent: nil, random: 0))
        // Not a traceparent: decided as a root.
        #expect(!sampler.samples(parent: "garbage", random: 0))
        // Without parentbased_ the caller's flag is not asked.
        #expect(TraceSampler(root: .always, parentBased: false).samples(parent: Self.unsampledParent, random: .max))
    }

    @Test func aRatioSamplesThatShareOfUniformNumbers() {
        let sampler = TraceSampler(root: .ratio(0.01), parentBased: true)
        var sampled = 0
        let n = 100_000
        for i in 0..<n {
            // Evenly spread over the whole range.
            if sampler.samples(parent: nil, random: UInt64(i) &* (UInt64.max / UInt64(n))) { sampled += 1 }
        }
        #expect(abs(sampled - n / 100) <= 1)  // the one at the boundary falls either way in floating point
        #expect(TraceSampler(root: .ratio(0), parentBased: false).samples(parent: nil, random: 0) == false)
        #expect(TraceSampler(root: .ratio(1), parentBased: false).samples(parent: nil, random: .max))
    }

    @Test func flagsAreReadFromAW3CTraceparent() {
        #expect(TraceSampler.sampledFlag(Self.sampledParent) == true)
        #expect(TraceSampler.sampledFlag(Self.unsampledParent) == false)
        #expect(TraceSampler.sampledFlag("00-short-01") == nil)
    }
}
