import NIOConcurrencyHelpers

/// A fixed set of resources lent out one task at a time, in arrival order.
///
/// SQLite allows one writer and, in WAL mode, many readers, but a connection
/// holds one transaction: a task must own a connection for the whole of its
/// transaction, or two tasks' statements would interleave inside it.
final class AsyncPool<Resource: Sendable>: Sendable {
    private struct State {
        var idle: [Resource]
        var waiters: [CheckedContinuation<Resource, Never>] = []
        var waitersHead = 0
    }

    private let state: NIOLockedValueBox<State>
    let all: [Resource]

    init(_ resources: [Resource]) {
        precondition(!resources.isEmpty, "a pool needs at least one resource")
        self.all = resources
        self.state = NIOLockedValueBox(State(idle: resources))
    }

    func withResource<T: Sendable>(_ body: (Resource) async throws -> T) async throws -> T {
        let resource = await take()
        defer { give(resource) }
        return try await body(resource)
    }

    private func take() async -> Resource {
        if let resource = state.withLockedValue({ $0.idle.popLast() }) {
            return resource
        }
        return await withCheckedContinuation { continuation in
            let ready: Resource? = state.withLockedValue { state in
                if let resource = state.idle.popLast() { return resource }
                state.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    private func give(_ resource: Resource) {
        let waiter: CheckedContinuation<Resource, Never>? = state.withLockedValue { state in
            guard state.waitersHead < state.waiters.count else {
                state.idle.append(resource)
                return nil
            }
            let next = state.waiters[state.waitersHead]
            state.waitersHead += 1
            if state.waitersHead == state.waiters.count {
                state.waiters.removeAll(keepingCapacity: true)
                state.waitersHead = 0
            }
            return next
        }
        waiter?.resume(returning: resource)
    }
}
