import Foundation

/// How messaging-svc's replicas share its background work on one database. A running
/// broadcast belongs to the runner holding its lease, and a scenario step being sent to
/// the sender that claimed it, each until `durationMs` after the holder last renewed.
/// A holder renews a broadcast's lease in every write it makes for it, and every third of
/// the duration while it delivers; a replica that dies stops renewing, and another takes
/// the broadcast over once the lease has run out. Every write a runner makes for a
/// broadcast first checks that it still holds the lease (MessagingStore.holdLease), so a
/// runner that stalled past its lease changes nothing once another took over.
public struct RunnerLease: Sendable, Hashable {
    /// Who holds it: unique among the replicas (host name and listening address in a service).
    public var holder: String
    public var durationMs: Int64

    public init(holder: String, durationMs: Int64 = RunnerLease.defaultDurationMs) {
        self.holder = holder
        self.durationMs = durationMs
    }

    /// A holder name no other process uses, for runners that have no address of their own (tests, tools).
    public static func uniqueHolder() -> String {
        "\(ProcessInfo.processInfo.hostName)/\(ProcessInfo.processInfo.processIdentifier)/\(UUID().uuidString.prefix(8))"
    }

    /// CHATMESH_MESSAGING_LEASE_S: long enough that a slow provider call does not lose a lease
    /// still renewed every third of it, short enough that a dead replica's broadcast stalls briefly.
    public static let defaultDurationMs: Int64 = 15_000
}
