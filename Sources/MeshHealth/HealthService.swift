import ChatMeshAPI
import MeshRPC
import Synchronization

/// `grpc.health.v1.Health` for every ChatMesh server: Check and Watch. Needs no
/// token, so that orchestrators can probe. The overall status is under the
/// empty service name; each served service is listed by its full name. When the
/// process starts draining (SIGTERM) every status turns NOT_SERVING, each
/// watcher is told so and its stream ends, before the server's GOAWAY.
public final class HealthService: Health.Handler, DrainingService {
    private struct Watcher {
        let service: String
        let queue: RPCMessageQueue<HealthCheckResponse.ServingStatus>
    }

    private struct State {
        var statuses: [String: HealthCheckResponse.ServingStatus]
        var watchers: [UInt64: Watcher] = [:]
        var nextWatcher: UInt64 = 0
        var draining = false
    }

    private let state: Mutex<State>

    public init(services: [String] = []) {
        var initial: [String: HealthCheckResponse.ServingStatus] = ["": .serving]
        for name in services {
            initial[name] = .serving
        }
        state = Mutex(State(statuses: initial))
    }

    /// Marks one service (or, with "", the whole server) serving or not; its watchers hear of it.
    public func setStatus(_ status: HealthCheckResponse.ServingStatus, service: String = "") {
        let told = state.withLock { s -> [Watcher] in
            guard !s.draining, s.statuses[service] != status else { return [] }
            s.statuses[service] = status
            return s.watchers.values.filter { $0.service == service }
        }
        for watcher in told { watcher.queue.offer(status) }
    }

    /// Sets every service's status at once (NOT_SERVING when the process drains).
    public func setAll(_ status: HealthCheckResponse.ServingStatus) {
        let told = state.withLock { s -> [(Watcher, HealthCheckResponse.ServingStatus)] in
            guard !s.draining else { return [] }
            for key in s.statuses.keys {
                s.statuses[key] = status
            }
            return s.watchers.values.map { ($0, status) }
        }
        for (watcher, status) in told { watcher.queue.offer(status) }
    }

    public func check(_ request: HealthCheckRequest, context: ServerContext) async throws -> HealthCheckResponse {
        guard let status = state.withLock({ $0.statuses[request.service] }) else {
            throw RPCError.notFound("unknown service '\(request.service)'")
        }
        return HealthCheckResponse(status: status)
    }

    /// The status at once (SERVICE_UNKNOWN for a name not served, as the protocol says),
    /// then each change, until the caller leaves or the server drains.
    public func watch(_ request: HealthCheckRequest, responses: RPCWriter<HealthCheckResponse>, context: ServerContext) async throws {
        // Only the latest status matters: a watcher that does not read holds at most a few.
        let queue = RPCMessageQueue<HealthCheckResponse.ServingStatus>(capacity: 4)
        let (id, current, draining) = state.withLock { s -> (UInt64, HealthCheckResponse.ServingStatus, Bool) in
            s.nextWatcher &+= 1
            if !s.draining {
                s.watchers[s.nextWatcher] = Watcher(service: request.service, queue: queue)
            }
            return (s.nextWatcher, s.statuses[request.service] ?? .serviceUnknown, s.draining)
        }
        defer { _ = state.withLock { $0.watchers.removeValue(forKey: id) } }
        try await responses.write(HealthCheckResponse(status: current))
        if draining { return }
        var last = current
        while let status = try await queue.next() {
            if status != last {
                try await responses.write(HealthCheckResponse(status: status))
                last = status
            }
        }
    }

    /// Neither method needs a token: orchestrators and load balancers probe without one.
    public var routes: [RPCRoute] {
        [
            RPCRoute.unary(Health.Method.check, requiresAuth: false) { (request: HealthCheckRequest, context) in
                try await self.check(request, context: context)
            },
            RPCRoute.serverStreaming(Health.Method.watch, requiresAuth: false) { (request: HealthCheckRequest, responses: RPCWriter<HealthCheckResponse>, context) in
                try await self.watch(request, responses: responses, context: context)
            },
        ]
    }

    /// SIGTERM: every status NOT_SERVING, told to every watcher, whose streams then end
    /// (a drain waits for calls in flight, and a watch would never end by itself).
    /// Returns once the watchers have written it, or after a second.
    public func beginDraining() async {
        let watchers = state.withLock { s -> [Watcher] in
            for key in s.statuses.keys {
                s.statuses[key] = .notServing
            }
            s.draining = true
            return Array(s.watchers.values)
        }
        for watcher in watchers {
            watcher.queue.offer(.notServing)
            watcher.queue.finish()
        }
        let clock = ContinuousClock()
        let until = clock.now + .seconds(1)
        while clock.now < until, state.withLock({ !$0.watchers.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }
}
