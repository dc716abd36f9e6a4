import ChatMeshAPI
import Crypto
import Foundation
import VietnamCommerce

/// R-SEG-3: a segment as a Facebook custom audience, in plain rules: who is matched by
/// what (phones as 84…, e-mails trimmed and lower-cased, each SHA-256 hashed here, before
/// anything leaves the service), and how the segment as it is now and the audience as it
/// was sent are walked side by side to find who joined and who left.
public enum AudienceRules {
    /// Facebook takes at most 10,000 rows per request.
    public static let maxBatch = 10_000

    /// One member as the audience holds them: hex SHA-256 of the phone and of the e-mail
    /// address, "" for the one that is missing (the schema is `["PHONE", "EMAIL"]`).
    public struct Identity: Sendable, Hashable {
        public var phoneHash: String
        public var emailHash: String

        public init(phoneHash: String, emailHash: String) {
            self.phoneHash = phoneHash
            self.emailHash = emailHash
        }

        /// nil when the member has neither a phone nor an e-mail address: nothing to match them by.
        public init?(phone: String, email: String) {
            let phone = VietnamPhone.normalize(phone).map { "84" + $0.dropFirst() }
            let email = EmailAddress.normalize(email)
            if phone == nil && email == nil { return nil }
            self.init(phoneHash: phone.map(AudienceRules.sha256) ?? "", emailHash: email.map(AudienceRules.sha256) ?? "")
        }
    }

    /// Lower-case hex of the digest; a whole segment is hashed on every run, so no formatter per byte.
    static func sha256(_ text: String) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var hex = [UInt8]()
        hex.reserveCapacity(64)
        for byte in SHA256.hash(data: Array(text.utf8)) {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: hex, as: UTF8.self)
    }

    /// A member on one side of the walk, in customer id order.
    public struct Member: Sendable, Hashable {
        public var customerId: String
        /// nil for a segment member with nothing to match them by (skipped).
        public var identity: Identity?

        public init(customerId: String, identity: Identity?) {
            self.customerId = customerId
            self.identity = identity
        }
    }

    /// What the audience must be told about one customer.
    public enum Change: Sendable, Hashable {
        case add(customerId: String, Identity)
        case remove(customerId: String, Identity)
    }

    /// One step of the walk over the segment now (`current`) and the audience as sent
    /// (`sent`), both in customer id order; nil: that side is done.
    public struct Step: Sendable, Hashable {
        public var changes: [Change] = []
        public var takesCurrent = false
        public var takesSent = false
        /// The current member has nothing to match them by.
        public var skipped = false
    }

    public static func step(current: Member?, sent: Member?) -> Step {
        var step = Step()
        switch (current, sent) {
        case (nil, nil):
            break
        case (let member?, nil):
            step.takesCurrent = true
            add(member, to: &step)
        case (nil, let gone?):
            step.takesSent = true
            if let identity = gone.identity { step.changes.append(.remove(customerId: gone.customerId, identity)) }
        case (let member?, let gone?) where member.customerId < gone.customerId:
            step.takesCurrent = true
            add(member, to: &step)
        case (let member?, let gone?) where member.customerId > gone.customerId:
            step.takesSent = true
            if let identity = gone.identity { step.changes.append(.remove(customerId: gone.customerId, identity)) }
        case (let member?, let held?):
            // The same customer: unchanged, or sent again with their new phone / e-mail.
            step.takesCurrent = true
            step.takesSent = true
            if member.identity == held.identity { break }
            if let old = held.identity { step.changes.append(.remove(customerId: held.customerId, old)) }
            add(member, to: &step)
        }
        return step
    }

    static func add(_ member: Member, to step: inout Step) {
        if let identity = member.identity {
            step.changes.append(.add(customerId: member.customerId, identity))
        } else {
            step.skipped = true
        }
    }
}

/// One request's worth of an audience change: a session's numbered batch (Facebook's
/// multi-batch upload), the last one flagged.
public struct AudienceBatch: Sendable, Hashable {
    public enum Kind: Sendable, Hashable { case add, remove }
    public var kind: Kind
    public var rows: [AudienceRules.Identity]
    public var sessionId: Int64
    /// From 1.
    public var sequence: Int
    public var last: Bool
    public var estimatedTotal: Int
}

/// Why a platform call did not succeed, in words a shop's staff understand.
public enum AudiencePlatformError: Error, Sendable, Hashable {
    /// For good until someone acts (token expired, permission missing, account wrong).
    case refused(String)
    /// Not this time (rate limit, outage): the run is tried again after `retryAfterMs`.
    case temporary(String, retryAfterMs: Int64)

    public var reason: String {
        switch self {
        case .refused(let reason), .temporary(let reason, _): reason
        }
    }
}

/// The ads platform a segment is synced to (R-SEG-3).
public protocol AudiencePlatform: Sendable {
    /// Makes a custom audience in the ad account; answers its id.
    func createAudience(adAccountId: String, name: String, token: String) async throws(AudiencePlatformError) -> String
    func send(_ batch: AudienceBatch, audienceId: String, token: String) async throws(AudiencePlatformError)
}

/// Takes everything and keeps nothing: the local demo's ads platform.
public struct SandboxAudiencePlatform: AudiencePlatform {
    public init() {}

    public func createAudience(adAccountId: String, name: String, token: String) async throws(AudiencePlatformError) -> String {
        "sandbox-audience-" + String(UInt64.random(in: 1...UInt64.max), radix: 36)
    }

    public func send(_ batch: AudienceBatch, audienceId: String, token: String) async throws(AudiencePlatformError) {}
}

/// The ad account's token at rest (R-SEG-3): AES-GCM under a key derived (HKDF-SHA256) from
/// CHATMESH_AUTH_KEY, the shop id authenticated with it, so a sealed token copied to another
/// shop's row does not open. Changing the auth key means linking the ad account again.
public struct AdTokenSealer: Sendable {
    /// The derived key's bytes (SymmetricKey itself is not Sendable).
    let keyBytes: [UInt8]

    public init(authKey: String) {
        let key = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: Data(authKey.utf8)), salt: Data("chatmesh ad-account tokens".utf8), info: Data(), outputByteCount: 32
        )
        keyBytes = key.withUnsafeBytes { Array($0) }
    }

    var key: SymmetricKey { SymmetricKey(data: keyBytes) }

    public func seal(_ token: String, shop: String) throws -> String {
        try AES.GCM.seal(Data(token.utf8), using: key, authenticating: Data(shop.utf8)).combined!.base64EncodedString()
    }

    /// nil when it does not open (another key, another shop, altered).
    public func open(_ sealed: String, shop: String) -> String? {
        guard let data = Data(base64Encoded: sealed), let box = try? AES.GCM.SealedBox(combined: data),
              let plain = try? AES.GCM.open(box, using: key, authenticating: Data(shop.utf8)) else { return nil }
        return String(decoding: plain, as: UTF8.self)
    }
}
