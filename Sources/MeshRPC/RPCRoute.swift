import NIOCore

/// A service a server serves: the generated `Handler` protocols give every
/// implementation its routes, one per RPC.
public protocol RPCService: Sendable {
    var routes: [RPCRoute] { get }
}

/// One served method: how to turn a request message into a framed response.
/// The transport finds the route by path, authenticates, then runs it.
public struct RPCRoute: Sendable {
    public let method: MethodDescriptor
    /// False only for methods anyone may call (the health check).
    public let requiresAuth: Bool
    /// Decodes the request, checks it, calls the handler and encodes the
    /// answer behind its gRPC length prefix. Throws `RPCError` for every
    /// failure it can name; anything else is the handler's bug (INTERNAL).
    public let run: @Sendable (ByteBuffer, ServerContext) async throws -> ByteBuffer

    public init(method: MethodDescriptor, requiresAuth: Bool, run: @escaping @Sendable (ByteBuffer, ServerContext) async throws -> ByteBuffer) {
        self.method = method
        self.requiresAuth = requiresAuth
        self.run = run
    }

    public static func unary<Request: RPCMessage, Response: RPCMessage>(
        _ method: MethodDescriptor,
        requiresAuth: Bool = true,
        _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) -> RPCRoute {
        make(method, requiresAuth, check: nil, handler)
    }

    /// Requests with a `shop_id` are checked against the token's shop before the handler runs.
    public static func unary<Request: RPCMessage & ShopScoped, Response: RPCMessage>(
        _ method: MethodDescriptor,
        requiresAuth: Bool = true,
        _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) -> RPCRoute {
        let check: @Sendable (Request, ServerContext) throws(RPCError) -> Void = { (request, context) throws(RPCError) in
            try checkShopScope(request.shopId, context.principal)
        }
        return make(method, requiresAuth, check: requiresAuth ? check : nil, handler)
    }

    private static func make<Request: RPCMessage, Response: RPCMessage>(
        _ method: MethodDescriptor,
        _ requiresAuth: Bool,
        check: (@Sendable (Request, ServerContext) throws(RPCError) -> Void)?,
        _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) -> RPCRoute {
        RPCRoute(method: method, requiresAuth: requiresAuth) { body, context in
            let request = try decodeRequest(Request.self, body)
            try check?(request, context)
            return try await invoke(handler, request, context)
        }
    }

    static func decodeRequest<Request: RPCMessage>(_ type: Request.Type, _ body: ByteBuffer) throws(RPCError) -> Request {
        do {
            return try Request(protobuf: body)
        } catch {
            throw RPCError(error, failedTo: "decode \(Request.protoName)")
        }
    }

    static func checkShopScope(_ shopId: String, _ principal: Principal?) throws(RPCError) {
        if shopId.isEmpty {
            throw .invalidArgument("shop_id is required")
        }
        guard let principal else {
            throw .unauthenticated("missing authorization metadata")
        }
        if !principal.mayAct(forShop: shopId) {
            throw .permissionDenied("shop_id '\(shopId)' is not the shop of this token")
        }
    }

    static func invoke<Request: RPCMessage, Response: RPCMessage>(
        _ handler: @Sendable (Request, ServerContext) async throws -> Response,
        _ request: Request,
        _ context: ServerContext
    ) async throws -> ByteBuffer {
        let response = try await ServerContext.$current.withValue(context) {
            try await handler(request, context)
        }
        do {
            return try GRPCFraming.frame(response)
        } catch {
            throw RPCError.internal("the response could not be encoded: \(error)")
        }
    }
}

/// The routes of every service a server serves, by path, and how calls are authenticated.
public final class RPCRouter: Sendable {
    private let routes: [String: RPCRoute]
    public let verifier: TokenVerifier

    public init(services: [any RPCService], verifier: TokenVerifier) {
        var routes: [String: RPCRoute] = [:]
        for service in services {
            for route in service.routes {
                precondition(routes[route.method.path] == nil, "\(route.method.path) is served twice")
                routes[route.method.path] = route
            }
        }
        self.routes = routes
        self.verifier = verifier
    }

    public func route(path: String) -> RPCRoute? {
        routes[path]
    }

    public var paths: [String] { routes.keys.sorted() }

    /// nil for a route that needs no token; UNAUTHENTICATED when one is needed and not valid.
    public func authenticate(_ route: RPCRoute, authorization: String?) throws(RPCError) -> Principal? {
        guard route.requiresAuth else { return nil }
        return try verifier.verify(authorization: authorization)
    }
}
