import Foundation

/// Latency runs shared by the service benchmarks: calls spread over workers,
/// optionally offered at a steady rate, with percentiles per run.
public struct LatencyRun: Sendable {
    /// Calls in flight at most.
    public var concurrency: Int
    /// Calls per second to offer (0: as fast as the service answers). Latency counts from when a
    /// call was due, so a service that falls behind is charged for the wait.
    public var rate: Int

    public init(concurrency: Int, rate: Int) {
        self.concurrency = concurrency
        self.rate = rate
    }

    public static func row(_ cells: [String]) -> String {
        cells.enumerated().map { i, cell in
            let width = i == 0 ? 28 : 10
            let pad = String(repeating: " ", count: max(0, width - cell.count))
            return i == 0 ? cell + pad : pad + cell
        }.joined()
    }

    public static let header = row(["rpc", "calls", "req/s", "p50 ms", "p99 ms", "max ms"])

    public static func milliseconds(_ d: Duration) -> Double {
        Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
    }

    /// Runs `calls` calls; prints a row and returns p99 in ms.
    public func measure(_ name: String, calls: Int, _ call: @escaping @Sendable (Int) async throws -> Void) async throws -> Double {
        let started = ContinuousClock.now
        let rate = self.rate
        let concurrency = self.concurrency
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    var mine: [Double] = []
                    var i = worker
                    while i < calls {
                        var t0 = ContinuousClock.now
                        if rate > 0 {
                            let due = started + .microseconds(Int64(i) * 1_000_000 / Int64(rate))
                            if due > t0 { try await Task.sleep(until: due) }
                            t0 = due
                        }
                        try await call(i)
                        mine.append(Self.milliseconds(ContinuousClock.now - t0))
                        i += concurrency
                    }
                    return mine
                }
            }
            var all: [Double] = []
            for try await part in group { all += part }
            return all.sorted()
        }
        let seconds = Self.milliseconds(ContinuousClock.now - started) / 1000
        func pct(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        print(Self.row([
            name, "\(latencies.count)", String(format: "%.0f", Double(latencies.count) / seconds),
            String(format: "%.2f", pct(0.5)), String(format: "%.2f", pct(0.99)), String(format: "%.2f", latencies.last ?? 0),
        ]))
        return pct(0.99)
    }
}
