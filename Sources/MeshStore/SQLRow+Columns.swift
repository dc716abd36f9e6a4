import Foundation
import SQLKit

extension SQLRow {
    /// A TEXT column.
    public func string(_ column: String) throws -> String { try decode(column: column, as: String.self) }

    /// A BIGINT column (every integer and 0/1 flag in the schemas), or an integer
    /// aggregate: PostgreSQL answers SUM of BIGINT as NUMERIC, which is read here as
    /// the whole number it is, so one SQL text serves both backends.
    public func int64(_ column: String) throws -> Int64 {
        do {
            return try decode(column: column, as: Int64.self)
        } catch {
            if let number = try? decode(column: column, as: Decimal.self) {
                return Int64(truncating: number as NSDecimalNumber)
            }
            if let text = try? decode(column: column, as: String.self), let number = Int64(text) {
                return number
            }
            throw error
        }
    }

    /// As `int64`, for counts kept as `Int`.
    public func int(_ column: String) throws -> Int { Int(try int64(column)) }
}
