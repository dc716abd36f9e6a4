/// One RPC: `/package.Service/Method` on the wire.
public struct MethodDescriptor: Sendable, Hashable, CustomStringConvertible {
    /// Which tokens of a shop may call an RPC, declared in its proto comment (`Access: managers`,
    /// `Access: services`; none is `staff`) and enforced by the route before the handler runs,
    /// so that a handler cannot forget it and the authorization matrix test reads the same line.
    public enum Access: String, Sendable, Hashable {
        /// Every token of the shop: owner, admin, agent and the mesh's services.
        case staff
        /// The shop's owner and admins, and the mesh's services; not agents.
        case managers
        /// The mesh's own services only (events one service delivers to another).
        case services

        /// Whether a token with `role` may call.
        public func admits(_ role: Role) -> Bool {
            switch self {
            case .staff: true
            case .managers: role != .agent
            case .services: role == .service
            }
        }
    }

    public let service: String
    public let method: String
    public let path: String
    public let access: Access

    public init(service: String, method: String, access: Access = .staff) {
        self.service = service
        self.method = method
        self.path = "/\(service)/\(method)"
        self.access = access
    }

    public var description: String { path }
}
