/// Prometheus' text exposition format (0.0.4) read back: what `chatmesh top` and the tests see
/// of a `/metrics` page. Comments and blank lines are skipped; a sample is a name, its labels
/// and a value (a timestamp after it is ignored).
public struct PrometheusText: Sendable {
    public struct Sample: Sendable, Equatable {
        public let name: String
        public let labels: [String: String]
        public let value: Double
    }

    public let samples: [Sample]

    public struct Malformed: Error, CustomStringConvertible {
        public let line: String
        public var description: String { "not a Prometheus sample: \(line)" }
    }

    public init(_ text: String) throws(Malformed) {
        var samples: [Sample] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
            if trimmed.isEmpty || trimmed.first == "#" { continue }
            guard let sample = Self.parse(Substring(trimmed)) else { throw Malformed(line: String(line)) }
            samples.append(sample)
        }
        self.samples = samples
    }

    /// The samples named `name` whose labels include every one of `matching`.
    public func samples(_ name: String, _ matching: [String: String] = [:]) -> [Sample] {
        samples.filter { sample in
            sample.name == name && matching.allSatisfy { sample.labels[$0.key] == $0.value }
        }
    }

    /// The sum of the samples `samples(name, matching)` answers (0 when there are none).
    public func sum(_ name: String, _ matching: [String: String] = [:]) -> Double {
        samples(name, matching).reduce(0) { $0 + $1.value }
    }

    static func parse(_ line: Substring) -> Sample? {
        var i = line.startIndex
        while i < line.endIndex, line[i] != "{", line[i] != " " { i = line.index(after: i) }
        let name = String(line[line.startIndex..<i])
        guard !name.isEmpty, i < line.endIndex else { return nil }
        var labels: [String: String] = [:]
        if line[i] == "{" {
            i = line.index(after: i)
            while true {
                while i < line.endIndex, line[i] == " " || line[i] == "," { i = line.index(after: i) }
                guard i < line.endIndex else { return nil }
                if line[i] == "}" {
                    i = line.index(after: i)
                    break
                }
                let nameStart = i
                while i < line.endIndex, line[i] != "=" { i = line.index(after: i) }
                guard i < line.endIndex else { return nil }
                let label = String(line[nameStart..<i]).trimmingSpaces
                i = line.index(after: i)
                guard i < line.endIndex, line[i] == "\"" else { return nil }
                i = line.index(after: i)
                var value = ""
                while i < line.endIndex, line[i] != "\"" {
                    if line[i] == "\\" {
                        i = line.index(after: i)
                        guard i < line.endIndex else { return nil }
                        switch line[i] {
                        case "n": value.append("\n")
                        default: value.append(line[i])
                        }
                    } else {
                        value.append(line[i])
                    }
                    i = line.index(after: i)
                }
                guard i < line.endIndex else { return nil }
                i = line.index(after: i)
                labels[label] = value
            }
        }
        let rest = line[i...].split(separator: " ", omittingEmptySubsequences: true)
        guard let first = rest.first, let value = Self.number(first) else { return nil }
        return Sample(name: name, labels: labels, value: value)
    }

    static func number(_ text: Substring) -> Double? {
        switch text {
        case "+Inf": .infinity
        case "-Inf": -.infinity
        case "NaN": .nan
        default: Double(text)
        }
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}

/// `histogram_quantile()` as Prometheus computes it: the bucket the rank falls in, and a linear
/// interpolation inside it (from 0 for the first bucket); a rank past the last finite bound
/// answers that bound.
public enum HistogramQuantile {
    /// `buckets` are (upper bound, cumulative count) in increasing bound order, +Inf last; nil when empty.
    public static func value(_ q: Double, buckets: [(bound: Double, count: Double)]) -> Double? {
        guard let total = buckets.last?.count, total > 0 else { return nil }
        let rank = q * total
        var lowerBound = 0.0
        var lowerCount = 0.0
        for (bound, count) in buckets {
            if count >= rank {
                if bound == .infinity { return lowerBound }
                if count == lowerCount { return bound }
                return lowerBound + (bound - lowerBound) * (rank - lowerCount) / (count - lowerCount)
            }
            lowerBound = bound
            lowerCount = count
        }
        return lowerBound
    }
}
