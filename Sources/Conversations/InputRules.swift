import ChatMeshAPI
import Foundation
import MeshRPC
import VietnamCommerce

/// The checks every RPC makes on its input before anything is read or
/// written: each failure is INVALID_ARGUMENT naming the field.
public enum InputRules {
    public static let maxIdLength = FieldCheck.maxIdLength
    public static let maxMessageTextLength = 20_000
    public static let maxNoteLength = 5_000
    public static let maxNameLength = 200
    public static let maxAddressLength = 500
    public static let defaultPageSize = 20
    public static let maxPageSize = 200

    /// An id the caller names (page, staff, customer, …): present, printable, not absurdly long.
    public static func id(_ value: String, _ field: String) throws(RPCError) -> String {
        try FieldCheck.id(value, field)
    }

    public static func optionalId(_ value: String, _ field: String) throws(RPCError) {
        try FieldCheck.optionalId(value, field)
    }

    /// Free text (a name, a note): trimmed, at most `max` characters, no control characters but newlines and tabs.
    public static func text(_ value: String, _ field: String, max: Int, required: Bool) throws(RPCError) -> String {
        try FieldCheck.text(value, field, max: max, required: required)
    }

    /// R-TAG-1: a colour as "#rgb" or "#rrggbb"; empty gives the default grey. Stored lower case.
    public static func color(_ value: String, _ field: String = "color", default fallback: String = "#9e9e9e") throws(RPCError) -> String {
        if value.isEmpty { return fallback }
        let hex = value.utf8.dropFirst()
        guard value.utf8.first == UInt8(ascii: "#"), hex.count == 3 || hex.count == 6,
              hex.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) || ($0 >= 0x41 && $0 <= 0x46) }) else {
            throw .invalidArgument("\(field) must be a colour like #e53935, not \"\(value)\"")
        }
        return value.lowercased()
    }

    /// A calendar date "YYYY-MM-DD" that exists (no 2023-02-29).
    public static func isDate(_ value: String) -> Bool {
        guard let date = VietnamTime.parseDate(value) else { return false }
        return date.year >= 1900
    }

    /// R-CONV-4: a birthday is a real date, not in the future (Vietnam time).
    public static func birthday(_ value: String, nowMs: Int64) throws(RPCError) -> String {
        if value.isEmpty { return value }
        guard isDate(value) else { throw .invalidArgument("birthday must be a date as YYYY-MM-DD, not \"\(value)\"") }
        if value > VietnamTime.dateString(atMs: nowMs) { throw .invalidArgument("birthday \(value) is in the future") }
        return value
    }

    public static func pageSize(_ value: Int32, _ field: String = "page_size") throws(RPCError) -> Int {
        try FieldCheck.pageSize(value, default: defaultPageSize, max: maxPageSize, field: field)
    }

    /// A page token of an id-ordered list: exactly what a previous page returned.
    public static func idToken(_ value: String, _ field: String = "page_token") throws(RPCError) -> String? {
        if value.isEmpty { return nil }
        guard PageToken.isID(value) else { throw .invalidArgument("\(field) is not a token this service returned") }
        return value
    }

    public static func time(_ value: Int64, _ field: String) throws(RPCError) -> Int64 {
        try FieldCheck.time(value, field)
    }
}

/// R-CONV-6: what a custom field and its values may be.
public enum CustomFieldRules {
    public static let maxOptions = 100
    public static let maxValueLength = 1_000

    /// Why a field definition is refused, naming the field of the request; nil when it is fine.
    public static func check(_ field: CustomField) -> String? {
        let key = field.key.utf8
        guard let first = key.first, first >= 0x61 && first <= 0x7A, key.count <= 40,
              key.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }) else {
            return "key must be 1 to 40 of a-z, 0-9 and _, starting with a letter, not \"\(field.key)\""
        }
        switch field.type {
        case .text, .number, .date:
            if !field.options.isEmpty { return "options are only for SELECT fields" }
        case .select:
            if field.options.isEmpty { return "options: a SELECT field needs at least one option" }
            if field.options.count > maxOptions { return "options: more than \(maxOptions)" }
            if field.options.contains(where: { $0.trimmingCharacters(in: .whitespaces).isEmpty || $0.contains("\n") || $0.count > 200 }) {
                return "options must be non-empty single lines of at most 200 characters"
            }
            if Set(field.options).count != field.options.count { return "options must not repeat" }
        default:
            return "type must be TEXT, NUMBER, DATE or SELECT"
        }
        return nil
    }

    /// Why `value` does not fit `field`; nil when it does.
    public static func check(value: String, for field: CustomField) -> String? {
        if value.count > maxValueLength { return "longer than \(maxValueLength) characters" }
        switch field.type {
        case .number:
            guard let number = Double(value.trimmingCharacters(in: .whitespaces)), number.isFinite else {
                return "field \(field.key) takes a number, not \"\(value)\""
            }
        case .date:
            if !InputRules.isDate(value) { return "field \(field.key) takes a date as YYYY-MM-DD, not \"\(value)\"" }
        case .select:
            if !field.options.contains(value) { return "field \(field.key) takes one of \(field.options.joined(separator: ", ")), not \"\(value)\"" }
        default:
            break
        }
        return nil
    }
}
