import Crypto
import Foundation
import Synchronization

/// Who may do what (ARCHITECTURE.md, Auth).
public enum Role: String, Sendable, Hashable, Codable, CaseIterable {
    case owner, admin, agent, service
}

/// The verified claims of a bearer token.
public struct Principal: Sendable, Hashable, Codable {
    /// The shop the token acts for; "*" only for service tokens that act for every shop
    /// (the mesh's own back-office jobs such as the event dispatcher).
    public var shopId: String
    public var staffId: String
    public var role: Role
    public var expiresAtMs: Int64

    public init(shopId: String, staffId: String, role: Role, expiresAtMs: Int64) {
        self.shopId = shopId
        self.staffId = staffId
        self.role = role
        self.expiresAtMs = expiresAtMs
    }

    enum CodingKeys: String, CodingKey {
        case shopId = "shop"
        case staffId = "staff"
        case role
        case expiresAtMs = "exp"
    }

    public static let anyShop = "*"

    /// Whether a request for `shopId` is within this token's scope.
    public func mayAct(forShop shopId: String) -> Bool {
        self.shopId == shopId || (role == .service && self.shopId == Principal.anyShop)
    }
}

/// Tokens are `cm1.<base64url(JSON claims)>.<base64url(HMAC-SHA256 of the first two parts)>`.
/// The key is shared by every service of one mesh (CHATMESH_AUTH_KEY).
public struct TokenSigner: Sendable {
    static let prefix = "cm1."
    // SymmetricKey is not Sendable; the bytes are, and a key is made per use.
    let keyBytes: [UInt8]

    public init(key: String) {
        self.keyBytes = Array(key.utf8)
    }

    /// Mints a token; for tests, scripts and `chatmesh token`.
    public func mint(shopId: String, staffId: String, role: Role, validFor seconds: Int64 = 3600, now: Date = Date()) -> String {
        let exp = Int64(now.timeIntervalSince1970 * 1000) + seconds * 1000
        return mint(Principal(shopId: shopId, staffId: staffId, role: role, expiresAtMs: exp))
    }

    /// Signs a token for `principal` as it stands.
    public func mint(_ principal: Principal) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = (try? encoder.encode(principal)) ?? Data()
        let body = TokenSigner.prefix + Base64URL.encode(json)
        let mac = HMAC<SHA256>.authenticationCode(for: Data(body.utf8), using: SymmetricKey(data: keyBytes))
        return body + "." + Base64URL.encode(Data(mac))
    }
}

/// How one service of the mesh calls another: a short-lived service token, minted per
/// call with the mesh's key, for one shop (what an outbox event or a voucher belongs to)
/// or for every shop (a feed or an audience that spans shops).
public struct ServiceTokens: Sendable {
    /// Long enough for a call and its retries, short enough that a leaked one soon is worthless.
    public static let lifetimeSeconds: Int64 = 300

    public let service: String
    let signer: TokenSigner

    public init(service: String, key: String) {
        self.service = service
        self.signer = TokenSigner(key: key)
    }

    public init(service: String, environment: MeshEnvironment) {
        self.init(service: service, key: environment.authKey)
    }

    /// A service token for one shop's calls.
    public func forShop(_ shop: String) -> String {
        signer.mint(shopId: shop, staffId: service, role: .service, validFor: Self.lifetimeSeconds)
    }

    /// A service token for calls that span shops (feeds, audiences).
    public func forEveryShop() -> String { forShop(Principal.anyShop) }

    /// `forShop` as a closure, for the outbox subscribers and clients that take one.
    public var perShop: @Sendable (String) -> String { { shop in forShop(shop) } }
}

/// Checks `authorization: Bearer …` values. Verified tokens are remembered
/// (bounded) so that a connection sending the same token on every call pays
/// for the HMAC once; expiry is checked on every use.
public final class TokenVerifier: Sendable {
    let keyBytes: [UInt8]
    private let cache = Mutex<[String: Principal]>([:])
    private let cacheLimit: Int
    private let clock: @Sendable () -> Int64

    public init(key: String, cacheLimit: Int = 4096, clock: @escaping @Sendable () -> Int64 = { WallClock.nowMs() }) {
        self.keyBytes = Array(key.utf8)
        self.cacheLimit = cacheLimit
        self.clock = clock
    }

    /// The principal of an `authorization` header value, or UNAUTHENTICATED saying why not.
    public func verify(authorization: String?) throws(RPCError) -> Principal {
        guard let authorization, !authorization.isEmpty else {
            throw .unauthenticated("missing authorization metadata (expected 'Bearer <token>')")
        }
        guard authorization.hasPrefix("Bearer ") || authorization.hasPrefix("bearer ") else {
            throw .unauthenticated("authorization must be 'Bearer <token>'")
        }
        let token = String(authorization.utf8.dropFirst(7))!
        let now = clock()
        if let known = cache.withLock({ $0[token] }) {
            guard known.expiresAtMs > now else { throw .unauthenticated("token expired") }
            return known
        }
        let principal = try decode(token)
        guard principal.expiresAtMs > now else { throw .unauthenticated("token expired") }
        cache.withLock { cache in
            if cache.count >= cacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[token] = principal
        }
        return principal
    }

    private func decode(_ token: String) throws(RPCError) -> Principal {
        guard token.hasPrefix(TokenSigner.prefix) else { throw .unauthenticated("not a ChatMesh token") }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
              let payload = Base64URL.decode(parts[1]),
              let mac = Base64URL.decode(parts[2])
        else { throw .unauthenticated("malformed token") }
        let signed = Data(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: signed, using: SymmetricKey(data: keyBytes)) else {
            throw .unauthenticated("token signature does not verify")
        }
        guard let principal = try? JSONDecoder().decode(Principal.self, from: payload) else {
            throw .unauthenticated("malformed token claims")
        }
        return principal
    }
}

enum Base64URL {
    static func encode(_ data: Data) -> String {
        data.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: Substring) -> Data? {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s)
    }
}
