import ArgumentParser
import Foundation
import MeshHTTPClient
import MeshPrometheus
import MeshRPC

/// `chatmesh top`: each service's calls a second, errors and p99 per method, refreshed every
/// few seconds from the services' own /metrics (what Prometheus would scrape), busiest first.
struct TopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "A live view of the services' calls/s, error ratio and p99 per method, read from their /metrics."
    )

    @Option(help: "name=host:port of the /metrics to read, comma-separated (default: the five services at CHATMESH_<SERVICE>_METRICS_ADDRS, or chatmesh up's ports).")
    var targets: String?

    @Option(help: "Only this service (gateway, conversation, order, loyalty, messaging).")
    var service: String?

    @Option(help: "Seconds between two readings.")
    var interval: Double = 2

    @Option(help: "Methods shown per service, busiest first.")
    var rows: Int = 12

    @Flag(help: "Read twice, print once, exit (for scripts).")
    var once = false

    struct Target {
        let name: String
        let address: String
    }

    func validate() throws {
        guard interval > 0, interval.isFinite else { throw ValidationError("--interval must be more than 0 seconds") }
        guard rows > 0 else { throw ValidationError("--rows must be at least 1") }
    }

    func run() async throws {
        let targets = try resolveTargets()
        let client = HTTP1Client()
        var previous = await scrape(targets, client)
        var previousAt = ContinuousClock.now
        while true {
            try await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
            let current = await scrape(targets, client)
            let now = ContinuousClock.now
            let elapsed = Double((now - previousAt).components.seconds) + Double((now - previousAt).components.attoseconds) / 1e18
            let screen = Self.render(targets, before: previous, after: current, seconds: elapsed, rows: rows)
            if once {
                print(screen, terminator: "")
                return
            }
            // Clear the screen and home the cursor, as top does.
            print("\u{1B}[2J\u{1B}[H" + "chatmesh top, every \(Self.format(interval)) s (Ctrl-C stops)\n\n" + screen, terminator: "")
            fflush(nil)
            previous = current
            previousAt = now
        }
    }

    func resolveTargets() throws -> [Target] {
        if let targets {
            return try targets.split(separator: ",").map { item in
                let parts = item.split(separator: "=", maxSplits: 1).map { String($0).trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2, !parts[0].isEmpty, parts[1].contains(":") else {
                    throw ValidationError("--targets: expected name=host:port, not \(item)")
                }
                return Target(name: parts[0], address: parts[1])
            }
        }
        let env = MeshEnvironment()
        let only = service
        let names = ["gateway", "conversation", "order", "loyalty", "messaging"].filter { name in only.map { $0 == name } ?? true }
        guard !names.isEmpty else { throw ValidationError("--service must be gateway, conversation, order, loyalty or messaging") }
        var found: [Target] = []
        for name in names {
            for address in env.metricsAddresses(of: name).split(separator: ",") {
                found.append(Target(name: name, address: address.trimmingCharacters(in: .whitespaces)))
            }
        }
        return found
    }

    /// Each target's page, or why it could not be read.
    func scrape(_ targets: [Target], _ client: HTTP1Client) async -> [Result<PrometheusText, any Error>] {
        await withTaskGroup(of: (Int, Result<PrometheusText, any Error>).self) { group in
            for (i, target) in targets.enumerated() {
                group.addTask {
                    do {
                        guard let url = URL(string: "http://\(target.address)/metrics") else {
                            return (i, .failure(ValidationError("\(target.address) is not host:port")))
                        }
                        let response = try await client.send(method: .GET, url: url, timeout: .seconds(5))
                        guard response.status == 200 else { return (i, .failure(ValidationError("HTTP \(response.status)"))) }
                        return (i, .success(try PrometheusText(String(decoding: response.body, as: UTF8.self))))
                    } catch {
                        return (i, .failure(error))
                    }
                }
            }
            var results = [Result<PrometheusText, any Error>](repeating: .failure(CancellationError()), count: targets.count)
            for await (i, result) in group { results[i] = result }
            return results
        }
    }

    static func render(_ targets: [Target], before: [Result<PrometheusText, any Error>], after: [Result<PrometheusText, any Error>], seconds: Double, rows: Int) -> String {
        var out = ""
        for (i, target) in targets.enumerated() {
            guard case .success(let now) = after[i] else {
                if case .failure(let error) = after[i] { out += "\(target.name) \(target.address): unreachable (\(error))\n\n" }
                continue
            }
            let then = (try? before[i].get()) ?? now
            let rates = MethodRate.between(then, now, seconds: seconds)
            let calls = rates.reduce(0) { $0 + $1.calls }
            let failed = rates.reduce(0) { $0 + $1.calls * $1.errorRatio }
            out += "\(target.name) \(target.address): \(format(calls / max(seconds, 1e-9))) calls/s, \(percent(calls > 0 ? failed / calls : 0)) errors"
            out += ", \(format(now.sum("chatmesh_http2_connections"))) connections, \(format(now.sum("chatmesh_http2_streams"))) streams\n"
            guard !rates.isEmpty else {
                out += "  (no calls)\n\n"
                continue
            }
            out += "  " + pad("METHOD", 58) + lpad("CALLS/S", 10) + lpad("ERRORS", 9) + lpad("P99", 10) + "\n"
            for rate in rates.prefix(rows) {
                out += "  " + pad(rate.service + "/" + rate.method, 58) + lpad(format(rate.callsPerSecond), 10)
                out += lpad(percent(rate.errorRatio), 9) + lpad(rate.p99.map(duration) ?? "-", 10) + "\n"
            }
            if rates.count > rows { out += "  … \(rates.count - rows) more\n" }
            out += "\n"
        }
        return out
    }

    static func format(_ value: Double) -> String {
        value >= 100 || value == value.rounded() ? String(format: "%.0f", value) : String(format: "%.1f", value)
    }

    static func percent(_ ratio: Double) -> String { String(format: "%.1f %%", ratio * 100) }

    static func duration(_ seconds: Double) -> String {
        seconds >= 1 ? String(format: "%.2f s", seconds) : seconds >= 0.001 ? String(format: "%.1f ms", seconds * 1000) : String(format: "%.0f µs", seconds * 1e6)
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? String(text.prefix(width - 1)) + " " : text + String(repeating: " ", count: width - text.count)
    }

    static func lpad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
    }
}
