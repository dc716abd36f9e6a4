import ChatMeshAPI

/// R-MSG-2: how a broadcast moves, as a table the store's guarded updates are written
/// from. A step applies to a broadcast in one of its `from` statuses and leaves any
/// other as it is (a cancel that came first wins over the runner's next step).
public enum BroadcastLifecycle {
    /// What can happen to a broadcast.
    public enum Step: Sendable, Hashable, CaseIterable {
        /// The runner begins (or, after a restart, begins again) taking the audience.
        case start
        /// Staff stop it; what was sent stays sent.
        case cancel
        /// It cannot be sent (segment or template gone, loyalty-svc unreachable too often).
        case fail
        /// Every audience member was sent to or skipped.
        case complete
    }

    /// The statuses `step` moves a broadcast from.
    public static func from(_ step: Step) -> [Broadcast.Status] {
        switch step {
        case .start, .cancel: [.scheduled, .running]
        case .fail, .complete: [.running]
        }
    }

    /// The status `step` moves a broadcast to.
    public static func to(_ step: Step) -> Broadcast.Status {
        switch step {
        case .start: .running
        case .cancel: .cancelled
        case .fail: .failed
        case .complete: .completed
        }
    }

    /// What staff's cancel does to a broadcast in `status`: true when it changes it,
    /// false when it was cancelled already (cancelling twice answers the same).
    public static func cancel(_ id: String, from status: Broadcast.Status) -> Result<Bool, MessagingError> {
        if from(.cancel).contains(status) { return .success(true) }
        if status == .cancelled { return .success(false) }
        return .failure(.broadcastNotCancellable(id, status))
    }
}
