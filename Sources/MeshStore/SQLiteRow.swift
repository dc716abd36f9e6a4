import CSQLite3
import Foundation
import SQLKit

/// A value as SQLite stores it (its five storage classes).
enum SQLiteValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    init(column index: Int32, of statement: OpaquePointer) {
        switch sqlite3_column_type(statement, index) {
        case SQLITE_INTEGER:
            self = .integer(sqlite3_column_int64(statement, index))
        case SQLITE_FLOAT:
            self = .real(sqlite3_column_double(statement, index))
        case SQLITE_TEXT:
            let count = Int(sqlite3_column_bytes(statement, index))
            guard count > 0, let bytes = sqlite3_column_text(statement, index) else {
                self = .text("")
                return
            }
            self = .text(String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(statement, index))
            guard count > 0, let bytes = sqlite3_column_blob(statement, index) else {
                self = .blob([])
                return
            }
            self = .blob(Array(UnsafeRawBufferPointer(start: bytes, count: count)))
        default:
            self = .null
        }
    }
}

/// The column names of one statement's rows, shared by all of them.
final class SQLiteColumns: Sendable {
    let names: [String]
    private let positions: [String: Int]

    init(names: [String]) {
        self.names = names
        var positions: [String: Int] = [:]
        // The first of two columns with one name wins, as in sqlite-nio.
        for (index, name) in names.enumerated() where positions[name] == nil { positions[name] = index }
        self.positions = positions
    }

    func position(of name: String) -> Int? { positions[name] }
}

struct SQLiteRow: SQLRow {
    let columns: SQLiteColumns
    let values: [SQLiteValue]

    var allColumns: [String] { columns.names }

    func contains(column: String) -> Bool { columns.position(of: column) != nil }

    func decodeNil(column: String) throws -> Bool { try value(column) == .null }

    func decode<D: Decodable>(column: String, as type: D.Type) throws -> D {
        let value = try self.value(column)
        do {
            if let decodable = type as? any SQLiteDecodable.Type {
                // swiftlint:disable:next force_cast
                return try decodable.init(sqliteValue: value) as! D
            }
            // Anything else was stored as JSON text, as sqlite-kit did.
            switch value {
            case .text(let text): return try JSONDecoder().decode(D.self, from: Data(text.utf8))
            case .blob(let bytes): return try JSONDecoder().decode(D.self, from: Data(bytes))
            default: throw SQLiteDecodingMismatch()
            }
        } catch is SQLiteDecodingMismatch {
            throw DecodingError.typeMismatch(D.self, .init(codingPath: [SQLCodingKey(column)], debugDescription: "column \(column) holds \(value), not \(D.self)"))
        }
    }

    private func value(_ column: String) throws -> SQLiteValue {
        guard let position = columns.position(of: column) else {
            throw DecodingError.keyNotFound(SQLCodingKey(column), .init(codingPath: [], debugDescription: "no column \(column) in \(columns.names)"))
        }
        return values[position]
    }
}

private struct SQLCodingKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

struct SQLiteDecodingMismatch: Error {}

/// Types read straight from a SQLite value, without a Decoder.
protocol SQLiteDecodable {
    init(sqliteValue: SQLiteValue) throws
}

extension String: SQLiteDecodable {
    init(sqliteValue: SQLiteValue) throws {
        switch sqliteValue {
        case .text(let text): self = text
        case .blob(let bytes): self = String(decoding: bytes, as: UTF8.self)
        default: throw SQLiteDecodingMismatch()
        }
    }
}

extension Int64: SQLiteDecodable {
    init(sqliteValue: SQLiteValue) throws {
        switch sqliteValue {
        case .integer(let value): self = value
        case .real(let value) where value.rounded() == value && abs(value) < 9.2e18: self = Int64(value)
        case .text(let text):
            guard let value = Int64(text) else { throw SQLiteDecodingMismatch() }
            self = value
        default: throw SQLiteDecodingMismatch()
        }
    }
}

extension Int: SQLiteDecodable {
    init(sqliteValue: SQLiteValue) throws {
        let value = try Int64(sqliteValue: sqliteValue)
        guard let narrowed = Int(exactly: value) else { throw SQLiteDecodingMismatch() }
        self = narrowed
    }
}

extension Int32: SQLiteDecodable {
    init(sqliteValue: SQLiteValue) throws {
        guard let narrowed = Int32(exactly: try Int64(sqliteValue: sqliteValue)) else { throw SQLiteDecodingMismatch() }
        self = narrowed
    }
}

extension Double: SQLiteDecodable {
    init(sqliteValue: SQLiteValue) throws {
        switch sqliteValue {
        case .integer(let value): self = Double(value)
        case .real(let value): self = value
        case .text(let text):
            guard let value = Double(text) else { throw SQLiteDecodingMismatch() }
            self = value
        default: throw SQLiteDecodingMismatch()
        }
    }
}

extension Bool: SQLiteDecodable {
    init(sqliteValue: SQLiteValue) throws {
        switch sqliteValue {
        case .integer(let value): self = value != 0
        default: throw SQLiteDecodingMismatch()
        }
    }
}

extension Decimal: SQLiteDecodable {
    init(sqliteValue: SQLiteValue) throws {
        switch sqliteValue {
        case .integer(let value): self = Decimal(value)
        case .real(let value): self = Decimal(value)
        case .text(let text):
            guard let value = Decimal(string: text) else { throw SQLiteDecodingMismatch() }
            self = value
        default: throw SQLiteDecodingMismatch()
        }
    }
}

extension Array: SQLiteDecodable where Element == UInt8 {
    init(sqliteValue: SQLiteValue) throws {
        switch sqliteValue {
        case .blob(let bytes): self = bytes
        case .text(let text): self = Array(text.utf8)
        default: throw SQLiteDecodingMismatch()
        }
    }
}

extension Data: SQLiteDecodable {
    init(sqliteValue: SQLiteValue) throws {
        self = Data(try [UInt8](sqliteValue: sqliteValue))
    }
}

extension Optional: SQLiteDecodable where Wrapped: SQLiteDecodable {
    init(sqliteValue: SQLiteValue) throws {
        self = sqliteValue == .null ? nil : try Wrapped(sqliteValue: sqliteValue)
    }
}

/// Binds one sql-kit bind value to a statement parameter.
enum SQLiteBinding {
    static func bind(_ value: any Encodable & Sendable, to statement: OpaquePointer, at index: Int32) throws -> Int32 {
        if let bindable = value as? any SQLiteBindable {
            return bindable.bind(to: statement, at: index)
        }
        // Codable values (arrays, structs) are stored as JSON text, as sqlite-kit did.
        let json = try JSONEncoder().encode(AnyEncodable(value))
        return String(decoding: json, as: UTF8.self).bind(to: statement, at: index)
    }
}

private struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ value: any Encodable) { self.value = value }
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}

protocol SQLiteBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32
}

extension String: SQLiteBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 {
        var text = self
        return text.withUTF8 { bytes in
            // An empty buffer may have no address, which SQLite would bind as NULL.
            guard let base = bytes.baseAddress, !bytes.isEmpty else { return sqlite3_bind_text(statement, index, "", 0, nil) }
            return base.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                sqlite3_bind_text(statement, index, $0, Int32(bytes.count), chatmesh_sqlite_transient())
            }
        }
    }
}

extension Substring: SQLiteBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 { String(self).bind(to: statement, at: index) }
}

extension Int64: SQLiteBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 { sqlite3_bind_int64(statement, index, self) }
}

extension Int: SQLiteBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 { sqlite3_bind_int64(statement, index, Int64(self)) }
}

extension Int32: SQLiteBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 { sqlite3_bind_int64(statement, index, Int64(self)) }
}

extension UInt32: SQLiteBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 { sqlite3_bind_int64(statement, index, Int64(self)) }
}

extension Double: SQLiteBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 { sqlite3_bind_double(statement, index, self) }
}

extension Bool: SQLiteBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 { sqlite3_bind_int64(statement, index, self ? 1 : 0) }
}

extension Array: SQLiteBindable where Element == UInt8 {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 {
        withUnsafeBytes { bytes in
            sqlite3_bind_blob(statement, index, bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(bytes.count), chatmesh_sqlite_transient())
        }
    }
}

extension Data: SQLiteBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 { [UInt8](self).bind(to: statement, at: index) }
}

extension Optional: SQLiteBindable where Wrapped: SQLiteBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 {
        switch self {
        case .some(let value): return value.bind(to: statement, at: index)
        case .none: return sqlite3_bind_null(statement, index)
        }
    }
}
