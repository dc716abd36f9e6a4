/// What a server did between two scrapes of its `/metrics`, per method: calls a second, the
/// share that failed, and the 99th-percentile latency of those calls (from the histogram's
/// buckets, as `histogram_quantile(0.99, rate(...))` would answer). `chatmesh top` prints these.
public struct MethodRate: Sendable, Equatable {
    public let service: String
    public let method: String
    public let callsPerSecond: Double
    /// Calls that ended with any code but OK, as a fraction of all calls (0 when there were none).
    public let errorRatio: Double
    /// Seconds; nil when no call ended in the interval.
    public let p99: Double?
    public let calls: Double

    public init(service: String, method: String, callsPerSecond: Double, errorRatio: Double, p99: Double?, calls: Double) {
        self.service = service
        self.method = method
        self.callsPerSecond = callsPerSecond
        self.errorRatio = errorRatio
        self.p99 = p99
        self.calls = calls
    }

    /// The server side's methods that had calls between `before` and `after`, `seconds` apart, busiest first.
    /// A counter that went down (the server restarted) counts from zero.
    public static func between(_ before: PrometheusText, _ after: PrometheusText, seconds: Double, side: String = "server") -> [MethodRate] {
        struct Key: Hashable { let service: String, method: String }
        func key(_ sample: PrometheusText.Sample) -> Key? {
            guard let service = sample.labels["grpc_service"], let method = sample.labels["grpc_method"] else { return nil }
            return Key(service: service, method: method)
        }
        func identity(_ sample: PrometheusText.Sample) -> String {
            sample.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        }
        func deltas(_ name: String) -> [(PrometheusText.Sample, Double)] {
            var earlier: [String: Double] = [:]
            for sample in before.samples(name) { earlier[identity(sample)] = sample.value }
            return after.samples(name).map { sample in
                let was = earlier[identity(sample)] ?? 0
                return (sample, sample.value >= was ? sample.value - was : sample.value)
            }
        }
        var calls: [Key: Double] = [:]
        var failed: [Key: Double] = [:]
        for (sample, delta) in deltas("grpc_\(side)_handled_total") {
            guard let key = key(sample) else { continue }
            calls[key, default: 0] += delta
            if sample.labels["grpc_code"] != "OK" { failed[key, default: 0] += delta }
        }
        var buckets: [Key: [Double: Double]] = [:]
        for (sample, delta) in deltas("grpc_\(side)_handling_seconds_bucket") {
            guard let key = key(sample), let le = sample.labels["le"], let bound = PrometheusText.number(Substring(le)) else { continue }
            buckets[key, default: [:]][bound, default: 0] += delta
        }
        return calls.compactMap { key, n -> MethodRate? in
            guard n > 0 else { return nil }
            let sorted = (buckets[key] ?? [:]).sorted { $0.key < $1.key }.map { (bound: $0.key, count: $0.value) }
            return MethodRate(
                service: key.service, method: key.method, callsPerSecond: seconds > 0 ? n / seconds : 0,
                errorRatio: (failed[key] ?? 0) / n, p99: HistogramQuantile.value(0.99, buckets: sorted), calls: n
            )
        }.sorted { ($0.callsPerSecond, $1.service + $1.method) > ($1.callsPerSecond, $0.service + $0.method) }
    }
}
