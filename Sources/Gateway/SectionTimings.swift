import Synchronization

/// How long each panel section took the service that serves it, as the gateway
/// saw it: kept for the last `capacity` answers of each section, summarised as
/// percentiles (the benchmark prints them when the gateway stops).
public final class SectionTimings: Sendable {
    struct Samples {
        var values: [Double] = []
        var next = 0
        var count = 0

        mutating func add(_ value: Double, capacity: Int) {
            if values.count < capacity {
                values.append(value)
            } else {
                values[next] = value
                next = (next + 1) % capacity
            }
            count += 1
        }
    }

    let capacity: Int
    private let samples = Mutex<[String: Samples]>([:])

    /// 10,000 answers give a p99 of 100 samples; 100,000 grew the gateway's heap by 0.8 MB a section
    /// over a run's first 100,000 panels.
    public init(capacity: Int = 10_000) {
        self.capacity = capacity
    }

    /// Adds one read of `section` that took `milliseconds`.
    public func record(_ section: String, milliseconds: Double) {
        let capacity = self.capacity
        // Mutated in place: copying the samples out and back would copy the whole array on every call.
        samples.withLock { all in
            all[section, default: Samples()].add(milliseconds, capacity: capacity)
        }
    }

    /// One section's reads so far: how many, and their latency percentiles.
    public struct Summary: Sendable, Hashable {
        public var section: String
        public var count: Int
        public var p50: Double
        public var p99: Double
        public var max: Double
    }

    /// Every section's summary, by section name.
    public func summary() -> [Summary] {
        samples.withLock { all in
            all.map { section, s in
                let sorted = s.values.sorted()
                func at(_ p: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
                return Summary(section: section, count: s.count, p50: at(0.5), p99: at(0.99), max: sorted.last ?? 0)
            }.sorted { $0.section < $1.section }
        }
    }
}
