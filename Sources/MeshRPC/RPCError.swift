/// A gRPC status as data: what every failed call answers, on the wire as
/// `grpc-status` and a percent-encoded `grpc-message`.
///
/// Two statuses are equal when their code, message and metadata are: the `cause`
/// is for logs and debugging, never sent and never compared.
public struct RPCError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
    public enum Code: Int, Sendable, Hashable, CaseIterable {
        case ok = 0
        case cancelled = 1
        case unknown = 2
        case invalidArgument = 3
        case deadlineExceeded = 4
        case notFound = 5
        case alreadyExists = 6
        case permissionDenied = 7
        case resourceExhausted = 8
        case failedPrecondition = 9
        case aborted = 10
        case outOfRange = 11
        case unimplemented = 12
        case `internal` = 13
        case unavailable = 14
        case dataLoss = 15
        case unauthenticated = 16

        /// The name gRPC gives the code, e.g. "DEADLINE_EXCEEDED".
        public var name: String {
            switch self {
            case .ok: "OK"
            case .cancelled: "CANCELLED"
            case .unknown: "UNKNOWN"
            case .invalidArgument: "INVALID_ARGUMENT"
            case .deadlineExceeded: "DEADLINE_EXCEEDED"
            case .notFound: "NOT_FOUND"
            case .alreadyExists: "ALREADY_EXISTS"
            case .permissionDenied: "PERMISSION_DENIED"
            case .resourceExhausted: "RESOURCE_EXHAUSTED"
            case .failedPrecondition: "FAILED_PRECONDITION"
            case .aborted: "ABORTED"
            case .outOfRange: "OUT_OF_RANGE"
            case .unimplemented: "UNIMPLEMENTED"
            case .internal: "INTERNAL"
            case .unavailable: "UNAVAILABLE"
            case .dataLoss: "DATA_LOSS"
            case .unauthenticated: "UNAUTHENTICATED"
            }
        }

        /// Codes outside 0...16 are UNKNOWN, as the gRPC spec says.
        public init(wireValue: Int) {
            self = Code(rawValue: wireValue) ?? .unknown
        }
    }

    public var code: Code
    public var message: String
    /// Trailing metadata to send with (or received with) the status.
    public var metadata: Metadata
    /// The error this status stands for, when it was made from one (a handler's
    /// failure, a store's refusal); kept so that a log can say what really happened.
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, metadata: Metadata = Metadata(), cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.metadata = metadata
        self.cause = cause
    }

    /// The status a server answers for whatever a handler threw: an `RPCError` as
    /// it is, a domain error through its service's `RPCErrorConvertible` mapping,
    /// a cancelled task as CANCELLED, and anything else as INTERNAL, whose cause is
    /// kept for the log and never sent (it may say more than a peer should read).
    public init(answering error: any Error) {
        switch error {
        case let error as RPCError:
            self = error
        case let error as any RPCErrorConvertible:
            self = error.rpcError
            if cause == nil { cause = error }
        case is CancellationError:
            self.init(.cancelled, "call cancelled", cause: error)
        default:
            self.init(.internal, "internal error", cause: error)
        }
    }

    /// True for an INTERNAL status made from an error no service mapped: a defect to log.
    public var isUnmappedFailure: Bool { code == .internal && cause != nil && !(cause is any RPCErrorConvertible) }

    public var description: String { "\(code.name): \(message)" }

    public static func == (a: RPCError, b: RPCError) -> Bool {
        a.code == b.code && a.message == b.message && a.metadata == b.metadata
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
        hasher.combine(metadata)
    }

    // Shorthands for the codes services use most; each names what was wrong.
    public static func invalidArgument(_ message: String) -> RPCError { RPCError(.invalidArgument, message) }
    public static func notFound(_ message: String) -> RPCError { RPCError(.notFound, message) }
    public static func alreadyExists(_ message: String) -> RPCError { RPCError(.alreadyExists, message) }
    public static func failedPrecondition(_ message: String) -> RPCError { RPCError(.failedPrecondition, message) }
    public static func permissionDenied(_ message: String) -> RPCError { RPCError(.permissionDenied, message) }
    public static func unauthenticated(_ message: String) -> RPCError { RPCError(.unauthenticated, message) }
    public static func resourceExhausted(_ message: String) -> RPCError { RPCError(.resourceExhausted, message) }
    public static func unavailable(_ message: String) -> RPCError { RPCError(.unavailable, message) }
    public static func deadlineExceeded(_ message: String) -> RPCError { RPCError(.deadlineExceeded, message) }
    public static func unimplemented(_ message: String) -> RPCError { RPCError(.unimplemented, message) }
    public static func `internal`(_ message: String) -> RPCError { RPCError(.internal, message) }
    public static func cancelled(_ message: String) -> RPCError { RPCError(.cancelled, message) }
}

/// A domain error that knows the gRPC status it is answered with. A service's
/// stores and rules throw their own errors (`OrderError`, …); the service says in
/// one place how each is answered, and the runtime asks it (`RPCError(answering:)`).
public protocol RPCErrorConvertible: Error {
    var rpcError: RPCError { get }
}

/// Percent-encoding of `grpc-message` (gRPC over HTTP/2 spec): bytes outside
/// 0x20...0x7E and '%' itself are sent as %XX of their UTF-8 encoding.
public enum StatusMessageEncoding {
    /// `message` as `grpc-message` carries it.
    public static func encode(_ message: String) -> String {
        var needs = false
        for b in message.utf8 where b < 0x20 || b > 0x7E || b == 0x25 {
            needs = true
            break
        }
        if !needs { return message }
        let hex: [UInt8] = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(message.utf8.count * 2)
        for b in message.utf8 {
            if b < 0x20 || b > 0x7E || b == 0x25 {
                out.append(0x25)
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0x0F)])
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Lenient as the spec asks: a malformed escape is kept as it stands.
    public static func decode(_ encoded: String) -> String {
        guard encoded.utf8.contains(0x25) else { return encoded }
        let bytes = Array(encoded.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        func hexValue(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x41...0x46: c - 0x41 + 10
            case 0x61...0x66: c - 0x61 + 10
            default: nil
            }
        }
        while i < bytes.count {
            if bytes[i] == 0x25, i + 2 < bytes.count, let h = hexValue(bytes[i + 1]), let l = hexValue(bytes[i + 2]) {
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
