import SQLKit

extension SQLRow {
    /// A TEXT column.
    public func string(_ column: String) throws -> String { try decode(column: column, as: String.self) }
    /// A BIGINT column (every integer and 0/1 flag in the schemas).
    public func int64(_ column: String) throws -> Int64 { try decode(column: column, as: Int64.self) }
}
