import NIOConcurrencyHelpers

/// Resources lent out one task at a time, in arrival order, made when first needed up to a capacity.
///
/// A SQLite connection runs one statement at a time and holds one transaction: a task owns a
/// connection for the whole of its body, or two tasks' statements would interleave on it.
final class AsyncPool<Resource: Sendable>: Sendable {
    private struct State {
        var idle: [Resource] = []
        var made: [Resource] = []
        var making = 0
        var waiters: [CheckedContinuation<Resource, Never>] = []
        var waitersHead = 0
    }

    private let state = NIOLockedValueBox(State())
    private let capacity: Int
    private let make: @Sendable () throws -> Resource

    init(capacity: Int, make: @escaping @Sendable () throws -> Resource) {
        precondition(capacity > 0, "a pool needs room for one resource")
        self.capacity = capacity
        self.make = make
    }

    /// Every resource made so far (to close them).
    var all: [Resource] { state.withLockedValue { $0.made } }

    func withResource<T: Sendable>(_ body: (Resource) async throws -> T) async throws -> T {
        let resource = try await take()
        defer { give(resource) }
        return try await body(resource)
    }

    private enum Taken {
        case ready(Resource)
        case makeOne
        case wait
    }

    private func take() async throws -> Resource {
        let taken: Taken = state.withLockedValue { state in
            if let resource = state.idle.popLast() { return .ready(resource) }
            if state.made.count + state.making < capacity {
                state.making += 1
                return .makeOne
            }
            return .wait
        }
        switch taken {
        case .ready(let resource):
            return resource
        case .makeOne:
            do {
                let resource = try make()
                state.withLockedValue { state in
                    state.making -= 1
                    state.made.append(resource)
                }
                return resource
            } catch {
                state.withLockedValue { $0.making -= 1 }
                throw error
            }
        case .wait:
            return await withCheckedContinuation { continuation in
                let ready: Resource? = state.withLockedValue { state in
                    if let resource = state.idle.popLast() { return resource }
                    state.waiters.append(continuation)
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
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
