import ChatMeshAPI
import MeshRPC
import Synchronization

/// `grpc.health.v1.Health/Check` for every ChatMesh server. Needs no token, so
/// that orchestrators can probe. The overall status is under the empty service
/// name; each served service is listed by its full name.
public final class HealthService: Health.Handler {
    private let statuses: Mutex<[String: HealthCheckResponse.ServingStatus]>

    public init(services: [String] = []) {
        var initial: [String: HealthCheckResponse.ServingStatus] = ["": .serving]
        for name in services {
            initial[name] = .serving
        }
        statuses = Mutex(initial)
    }

    /// Marks one service (or, with "", the whole server) serving or not; a draining server reports NOT_SERVING.
    public func setStatus(_ status: HealthCheckResponse.ServingStatus, service: String = "") {
        statuses.withLock { $0[service] = status }
    }

    public func setAll(_ status: HealthCheckResponse.ServingStatus) {
        statuses.withLock { all in
            for key in all.keys {
                all[key] = status
            }
        }
    }

    public func check(_ request: HealthCheckRequest, context: ServerContext) async throws -> HealthCheckResponse {
        guard let status = statuses.withLock({ $0[request.service] }) else {
            throw RPCError.notFound("unknown service '\(request.service)'")
        }
        return HealthCheckResponse(status: status)
    }

    public var routes: [RPCRoute] {
        [
            RPCRoute.unary(Health.Method.check, requiresAuth: false) { (request: HealthCheckRequest, context) in
                try await self.check(request, context: context)
            },
        ]
    }
}
