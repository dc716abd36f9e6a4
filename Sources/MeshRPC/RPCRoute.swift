import NIOCore

/// A service a server serves: the generated `Handler` protocols give every
/// implementation its routes, one per RPC.
public protocol RPCService: Sendable {
    var routes: [RPCRoute] { get }
}

/// One served method: how to turn a request message into a framed response.
/// The transport finds the route by path, authenticates, then runs it.
public struct RPCRoute: Sendable {
    /// How many messages go each way. On the wire every kind is the same HTTP/2 stream;
    /// the kind says which side may send more than one.
    public enum Kind: String, Sendable {
        case unary, clientStreaming, serverStreaming, bidirectionalStreaming
    }

    public let method: MethodDescriptor
    public let kind: Kind
    /// False only for methods anyone may call (the health check).
    public let requiresAuth: Bool
    /// Unary routes: decodes the request, checks it, calls the handler and encodes the
    /// answer behind its gRPC length prefix. Throws `RPCError` for every
    /// failure it can name; anything else is the handler's bug (INTERNAL).
    public let run: @Sendable (ByteBuffer, ServerContext) async throws -> ByteBuffer
    /// Streaming routes: reads requests and writes responses until the call is done.
    public let stream: (@Sendable (RPCServerStream, ServerContext) async throws -> Void)?

    public init(method: MethodDescriptor, requiresAuth: Bool, run: @escaping @Sendable (ByteBuffer, ServerContext) async throws -> ByteBuffer) {
        self.method = method
        self.kind = .unary
        self.requiresAuth = requiresAuth
        self.run = run
        self.stream = nil
    }

    public init(method: MethodDescriptor, kind: Kind, requiresAuth: Bool, stream: @escaping @Sendable (RPCServerStream, ServerContext) async throws -> Void) {
        self.method = method
        self.kind = kind
        self.requiresAuth = requiresAuth
        self.stream = stream
        self.run = { _, _ in throw RPCError.internal("\(method.path) is a streaming method") }
    }

    /// Unary on the streaming path: for a handler that sets response metadata as it
    /// goes or must see the call's messages as they come (tests, the interop service).
    public static func unaryAsStream<Request: RPCMessage, Response: RPCMessage>(
        _ method: MethodDescriptor,
        requiresAuth: Bool = true,
        _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) -> RPCRoute {
        RPCRoute(method: method, kind: .unary, requiresAuth: requiresAuth) { stream, context in
            if requiresAuth { try checkAccess(method, context.principal) }
            let request = try await single(stream.requests, Request.self, method)
            let response = try await ServerContext.$current.withValue(context) { try await handler(request, context) }
            try await RPCWriter<Response>.encoding(stream.responses).write(response)
        }
    }

    /// One request, many responses.
    public static func serverStreaming<Request: RPCMessage, Response: RPCMessage>(
        _ method: MethodDescriptor,
        requiresAuth: Bool = true,
        _ handler: @escaping @Sendable (Request, RPCWriter<Response>, ServerContext) async throws -> Void
    ) -> RPCRoute {
        RPCRoute(method: method, kind: .serverStreaming, requiresAuth: requiresAuth) { stream, context in
            if requiresAuth { try checkAccess(method, context.principal) }
            let request = try await single(stream.requests, Request.self, method)
            try await ServerContext.$current.withValue(context) {
                try await handler(request, .encoding(stream.responses), context)
            }
        }
    }

    /// One request, many responses; a request with a `shop_id` is checked against the token first.
    public static func serverStreaming<Request: RPCMessage & ShopScoped, Response: RPCMessage>(
        _ method: MethodDescriptor,
        requiresAuth: Bool = true,
        _ handler: @escaping @Sendable (Request, RPCWriter<Response>, ServerContext) async throws -> Void
    ) -> RPCRoute {
        RPCRoute(method: method, kind: .serverStreaming, requiresAuth: requiresAuth) { stream, context in
            let request = try await single(stream.requests, Request.self, method)
            if requiresAuth {
                try checkShopScope(request.shopId, context.principal)
                try checkAccess(method, context.principal)
            }
            try await ServerContext.$current.withValue(context) {
                try await handler(request, .encoding(stream.responses), context)
            }
        }
    }

    /// Many requests, one response.
    public static func clientStreaming<Request: RPCMessage, Response: RPCMessage>(
        _ method: MethodDescriptor,
        requiresAuth: Bool = true,
        _ handler: @escaping @Sendable (RPCMessageStream<Request>, ServerContext) async throws -> Response
    ) -> RPCRoute {
        RPCRoute(method: method, kind: .clientStreaming, requiresAuth: requiresAuth) { stream, context in
            if requiresAuth { try checkAccess(method, context.principal) }
            let requests = stream.requests.decoded(as: Request.self, undecodable: .internal)
            let response = try await ServerContext.$current.withValue(context) { try await handler(requests, context) }
            try await RPCWriter<Response>.encoding(stream.responses).write(response)
        }
    }

    /// Many requests, many responses, in any order.
    public static func bidirectionalStreaming<Request: RPCMessage, Response: RPCMessage>(
        _ method: MethodDescriptor,
        requiresAuth: Bool = true,
        _ handler: @escaping @Sendable (RPCMessageStream<Request>, RPCWriter<Response>, ServerContext) async throws -> Void
    ) -> RPCRoute {
        RPCRoute(method: method, kind: .bidirectionalStreaming, requiresAuth: requiresAuth) { stream, context in
            if requiresAuth { try checkAccess(method, context.principal) }
            let requests = stream.requests.decoded(as: Request.self, undecodable: .internal)
            try await ServerContext.$current.withValue(context) {
                try await handler(requests, .encoding(stream.responses), context)
            }
        }
    }

    /// The one request of a unary or server-streaming call: none, or a second, is INTERNAL
    /// (as grpc C++ answers); bytes that are not the message are INTERNAL too.
    static func single<Request: RPCMessage>(_ requests: RPCMessageStream<ByteBuffer>, _ type: Request.Type, _ method: MethodDescriptor) async throws(RPCError) -> Request {
        guard let bytes = try await requests.next() else {
            throw .internal("no request message for \(method.path)")
        }
        if try await requests.next() != nil {
            throw .internal("more than one request message for \(method.path)")
        }
        return try decodeRequest(Request.self, bytes)
    }

    /// A unary route; `requiresAuth` false serves callers without a token (health, reflection).
    public static func unary<Request: RPCMessage, Response: RPCMessage>(
        _ method: MethodDescriptor,
        requiresAuth: Bool = true,
        _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) -> RPCRoute {
        let check: @Sendable (Request, ServerContext) throws(RPCError) -> Void = { (_, context) throws(RPCError) in
            try checkAccess(method, context.principal)
        }
        return make(method, requiresAuth, check: requiresAuth && method.access != .staff ? check : nil, handler)
    }

    /// Requests with a `shop_id` are checked against the token's shop before the handler runs.
    public static func unary<Request: RPCMessage & ShopScoped, Response: RPCMessage>(
        _ method: MethodDescriptor,
        requiresAuth: Bool = true,
        _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) -> RPCRoute {
        let check: @Sendable (Request, ServerContext) throws(RPCError) -> Void = { (request, context) throws(RPCError) in
            try checkShopScope(request.shopId, context.principal)
            try checkAccess(method, context.principal)
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

    /// PERMISSION_DENIED when the token's role is not among those the RPC's proto admits.
    static func checkAccess(_ method: MethodDescriptor, _ principal: Principal?) throws(RPCError) {
        guard let principal, !method.access.admits(principal.role) else { return }
        switch method.access {
        case .staff: return
        case .managers: throw .permissionDenied("\(method.method) is for the shop's owner or admins, not agents")
        case .services: throw .permissionDenied("\(method.method) is the mesh's own: it needs a service token")
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

/// A service whose calls can outlive a drain (watch streams): told when the server starts
/// draining, before its GOAWAY, so that it can tell its watchers and end their streams.
public protocol DrainingService: RPCService {
    func beginDraining() async
}

/// The routes of every service a server serves, by path, and how calls are authenticated.
public final class RPCRouter: Sendable {
    private let routes: [String: RPCRoute]
    public let verifier: TokenVerifier
    /// Services to tell when the server drains.
    public let drainingServices: [any DrainingService]

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
        self.drainingServices = services.compactMap { $0 as? any DrainingService }
    }

    /// The route serving `path`, if any.
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
