import Foundation

/// The checks every service makes on request fields before anything is read
/// or written; each failure is INVALID_ARGUMENT naming the field.
public enum FieldCheck {
    public static let maxIdLength = 128

    /// An id the caller names (shop's customer, order, cart, …): present, no spaces or control characters, at most 128 bytes.
    public static func id(_ value: String, _ field: String) throws(RPCError) -> String {
        if value.isEmpty { throw .invalidArgument("\(field) is required") }
        return try optionalId(value, field)
    }

    /// As `id`, but may be empty.
    @discardableResult
    public static func optionalId(_ value: String, _ field: String) throws(RPCError) -> String {
        if value.utf8.count > maxIdLength { throw .invalidArgument("\(field) is longer than \(maxIdLength) bytes") }
        if value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0 == " " }) {
            throw .invalidArgument("\(field) contains spaces or control characters")
        }
        return value
    }

    /// Free text (a name, a reason): trimmed, at most `max` characters, no control characters but newlines and tabs.
    public static func text(_ value: String, _ field: String, max: Int, required: Bool = true) throws(RPCError) -> String {
        let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
        if required && trimmed.isEmpty { throw .invalidArgument("\(field) is required") }
        if trimmed.count > max { throw .invalidArgument("\(field) is longer than \(max) characters") }
        if trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .control && $0 != "\n" && $0 != "\t" && $0 != "\r" }) {
            throw .invalidArgument("\(field) contains control characters")
        }
        return trimmed
    }

    /// A time in milliseconds since 1970 (0 allowed: "not given").
    public static func time(_ value: Int64, _ field: String) throws(RPCError) -> Int64 {
        if value < 0 { throw .invalidArgument("\(field) must not be negative") }
        // Past year 9999 is a unit mistake (µs or ns sent as ms).
        if value > 253_402_300_799_999 { throw .invalidArgument("\(field) is not a time in milliseconds") }
        return value
    }

    /// 0 asks for the list's default size; more than `max` gets `max`.
    public static func pageSize(_ value: Int32, default fallback: Int, max: Int, field: String = "page_size") throws(RPCError) -> Int {
        if value < 0 { throw .invalidArgument("\(field) must not be negative") }
        return value == 0 ? fallback : min(Int(value), max)
    }
}

/// A call's answer or status as a value: a typed-throwing call caught with plain
/// `do`/`catch` loses its type, and a `Result` keeps it.
public func rpcResult<T>(_ call: () async throws(RPCError) -> T) async -> Result<T, RPCError> {
    do {
        return .success(try await call())
    } catch {
        return .failure(error)
    }
}

/// Paging for the short lists a service keeps whole (tiers, templates, warehouses…): every
/// List RPC pages (API.md), and these page by position in their fixed order. A token is the
/// position to go on from; a list that changed between pages may repeat or skip an item,
/// never fail.
public enum ListPage {
    /// The page `token` asks for and the token of the next one ("" on the last page).
    public static func of<T>(
        _ items: [T], size: Int32, token: String, default fallback: Int = 100, max: Int = 500
    ) throws(RPCError) -> (items: [T], next: String) {
        let limit = try FieldCheck.pageSize(size, default: fallback, max: max)
        var start = 0
        if !token.isEmpty {
            guard token.utf8.count <= 9, let offset = Int(token), offset >= 0 else {
                throw .invalidArgument("page_token is not a token an earlier page gave")
            }
            start = min(offset, items.count)
        }
        let end = min(start + limit, items.count)
        return (Array(items[start..<end]), end < items.count ? String(end) : "")
    }
}
