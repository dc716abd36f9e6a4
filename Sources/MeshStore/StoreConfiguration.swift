import Foundation
import MeshMetrics
import MeshRPC
import Logging

/// Where a service keeps its data (ARCHITECTURE.md, Storage): `DATABASE_URL`
/// when set, otherwise `<CHATMESH_DATA_DIR>/<service>.sqlite`.
public enum StoreLocation: Sendable, Hashable {
    case sqlite(path: String)
    case postgres(url: String)

    /// - Parameters:
    ///   - databaseURL: `sqlite:<path>`, `sqlite::memory:`, or `postgres://…`.
    public static func resolve(service: String, databaseURL: String?, dataDirectory: String) throws -> StoreLocation {
        guard let url = databaseURL?.trimmingCharacters(in: .whitespaces), !url.isEmpty else {
            return .sqlite(path: (dataDirectory as NSString).appendingPathComponent("\(service).sqlite"))
        }
        if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            return .postgres(url: url)
        }
        if url.hasPrefix("sqlite:") {
            let path = String(url.dropFirst("sqlite:".count)).replacingOccurrences(of: "//", with: "", options: .anchored)
            guard !path.isEmpty else { throw ConfigurationError("DATABASE_URL \(url) names no file") }
            return .sqlite(path: path)
        }
        throw ConfigurationError("DATABASE_URL must start with sqlite: or postgres://, not \(url)")
    }

    /// - Parameter synchronous: CHATMESH_SQLITE_SYNCHRONOUS: `normal` (the default) or `full` (see `SQLiteStore.Synchronous`).
    /// With the process's metrics on, the store is a `MeteredStore` around the engine.
    public func open(logger: Logger, synchronous: String? = ProcessInfo.processInfo.environment["CHATMESH_SQLITE_SYNCHRONOUS"]) async throws -> any SQLStore {
        let store = try await openEngine(logger: logger, synchronous: synchronous)
        return ProcessMetrics.isEnabled ? MeteredStore(store) : store
    }

    private func openEngine(logger: Logger, synchronous: String?) async throws -> any SQLStore {
        switch self {
        case .sqlite(let path):
            var mode = SQLiteStore.Synchronous.normal
            if let synchronous, !synchronous.isEmpty {
                guard let chosen = SQLiteStore.Synchronous(rawValue: synchronous.uppercased()) else {
                    throw ConfigurationError("CHATMESH_SQLITE_SYNCHRONOUS must be full or normal, not \(synchronous)")
                }
                mode = chosen
            }
            return try await SQLiteStore.open(path: path, synchronous: mode, logger: logger)
        case .postgres(let url):
            return try await PostgresStore.open(url: url, logger: logger)
        }
    }
}
