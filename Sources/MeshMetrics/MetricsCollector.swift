/// Work done just before `/metrics` is read: metrics that are a state rather than a count
/// (an outbox's backlog, a WAL's size) are read then, once per scrape, instead of being kept
/// up to date on every change.
public struct MetricsCollector: Sendable {
    public let name: String
    public let collect: @Sendable () async throws -> Void

    public init(name: String, collect: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.collect = collect
    }
}
