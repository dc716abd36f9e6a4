import Foundation

/// The configuration every ChatMesh process reads from its environment
/// (ARCHITECTURE.md, Configuration), with defaults that run the whole mesh on one machine.
public struct MeshEnvironment: Sendable {
    /// The key a mesh signs its tokens with when CHATMESH_AUTH_KEY is not set: for local runs only.
    public static let developmentAuthKey = "chatmesh-local-development-key"

    /// Default ports by service name (gateway 50050 … messaging 50054): the one place they are
    /// defined; `chatmesh up`, the CLI's defaults and the port-holder advice read them from here.
    public static let defaultPorts: [String: Int] = [
        "gateway": 50050, "conversation": 50051, "order": 50052, "loyalty": 50053, "messaging": 50054,
    ]

    /// "127.0.0.1:<port>" of a service on this machine, as CHATMESH_<SERVICE>_ADDRS defaults to.
    public static func defaultAddress(of service: String) -> String {
        "127.0.0.1:\(defaultPorts[service] ?? 0)"
    }

    public var values: [String: String]

    public init(_ values: [String: String] = ProcessInfo.processInfo.environment) {
        self.values = values
    }

    /// The variable's value, nil when it is unset or empty (an empty value in a compose file means unset).
    public func value(_ name: String) -> String? {
        values[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The variable as a count above zero, nil when it is unset or not one.
    public func positiveInteger(_ name: String) -> Int? {
        values[name].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil }
    }

    public var authKey: String { value("CHATMESH_AUTH_KEY") ?? Self.developmentAuthKey }
    public var usesDevelopmentAuthKey: Bool { authKey == Self.developmentAuthKey }
    public var dataDirectory: String { values["CHATMESH_DATA_DIR"] ?? "./data" }
    public var databaseURL: String? { values["DATABASE_URL"] }
    public var logLevel: String { values["LOG_LEVEL"] ?? "info" }
    /// "host:port" where /metrics is served (Prometheus text format); unset: no metrics are kept.
    public var metricsListen: String? { value("CHATMESH_METRICS_LISTEN") }
    /// CHATMESH_EVENT_LOOPS: threads serving connections; nil means one per core.
    public var eventLoops: Int? { positiveInteger("CHATMESH_EVENT_LOOPS") }

    /// CHATMESH_WATCH_STALL_S: a watch stream (WatchChanges, WatchInbox, WatchPanel) whose reader
    /// makes no room for an update this long is cut off; it may resume. 60 s unless set.
    public var watchStallLimit: Duration {
        if case .seconds(let s) = seconds("CHATMESH_WATCH_STALL_S") { return .milliseconds(Int64(s * 1000)) }
        return .seconds(60)
    }

    /// A duration in seconds (fractions allowed) from `name`; "0", "off" or "never" is `.off`.
    public enum Setting: Equatable, Sendable {
        case unset, off
        case seconds(Double)
    }

    /// The variable `name` read as a duration setting.
    public func seconds(_ name: String) -> Setting {
        guard let raw = values[name]?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else { return .unset }
        if raw == "off" || raw == "never" { return .off }
        guard let value = Double(raw), value >= 0, value.isFinite else { return .unset }
        return value == 0 ? .off : .seconds(value)
    }

    /// CHATMESH_LISTEN, or 127.0.0.1 on the service's default port.
    public func listen(service: String) -> String {
        values["CHATMESH_LISTEN"] ?? Self.defaultAddress(of: service)
    }

    /// CHATMESH_<SERVICE>_ADDRS, or the service's default port on this machine.
    public func addresses(of service: String) -> String {
        values["CHATMESH_\(service.uppercased())_ADDRS"] ?? Self.defaultAddress(of: service)
    }

    /// Where a service's /metrics is served by default (`chatmesh up`): its gRPC port + 1000.
    public static func defaultMetricsAddress(of service: String) -> String {
        "127.0.0.1:\((defaultPorts[service] ?? 0) + 1000)"
    }

    /// CHATMESH_<SERVICE>_METRICS_ADDRS (comma-separated "host:port" of its replicas' /metrics), or the default.
    public func metricsAddresses(of service: String) -> String {
        values["CHATMESH_\(service.uppercased())_METRICS_ADDRS"] ?? Self.defaultMetricsAddress(of: service)
    }
}

/// A setting a process cannot run with, naming the variable and what it expected
/// ("CHATMESH_OUTBOX_RETRY_MS=abc: expected milliseconds, at least 1"). Every
/// executable reads its settings before it opens anything and stops on the first one.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
