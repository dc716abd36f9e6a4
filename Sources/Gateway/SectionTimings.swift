import Synchronization

/// How long each panel section took the service that serves it, as the gateway
/// saw it: kept for the last `capacity` answers of each section, summarised as
/// percentiles (the benchmark prints them when the gateway stops).
public final class SectionTimings: Sendable {
    struct Samples {
        var values: [Double] = []
        var next = 0
        var count = 0
    }

    let capacity: Int
    private let samples = Mutex<[String: Samples]>([:])

    public init(capacity: Int = 100_000) {
        self.capacity = capacity
    }

    public func record(_ section: String, milliseconds: Double) {
        samples.withLock { all in
            var s = all[section] ?? Samples()
            if s.values.count < capacity {
                s.values.append(milliseconds)
            } else {
                s.values[s.next] = milliseconds
                s.next = (s.next + 1) % capacity
            }
            s.count += 1
            all[section] = s
        }
    }

    public struct Summary: Sendable, Hashable {
        public var section: String
        public var count: Int
        public var p50: Double
        public var p99: Double
        public var max: Double
    }

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
