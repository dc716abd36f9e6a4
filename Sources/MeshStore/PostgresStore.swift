import Foundation
import Logging
import MeshRPC
import NIOPosix
import NIOSSL
import PostgresKit
import SQLKit
import Synchronization

/// PostgreSQL, for several replicas of a service sharing one store (DATABASE_URL=postgres://…).
///
/// Writes to one service's database take turns, as under SQLite's single writer, but
/// across every replica: each transaction first takes a transaction-scoped advisory
/// lock. A read-check-write (stock, the 50-tag limit, an idempotency key, an outbox
/// row) therefore cannot race between replicas, and nothing needs retrying for a
/// conflict. Optimistic SERIALIZABLE transactions were tried first: a hot row (a
/// shop's balance, a variant's stock) made them fail and retry over and over under
/// load. Reads run statement by statement on pooled connections, beside the writer.
/// Every statement runs prepared, once per connection (`PostgresStatementDatabase`).
///
/// Each event loop of the process has a pool of its own whose connections live on that loop: a handler
/// (which runs on its connection's loop) reads and writes without a thread hop per statement. Callers
/// off every loop take the pools in turn.
public final class PostgresStore: SQLStore {
    public var kind: SQLStoreKind { .postgres }

    private let clients: [PostgresClient]
    private let clientByLoop: [ObjectIdentifier: PostgresClient]
    private let nextClient = Atomic<Int>(0)
    private let runTasks: [Task<Void, Never>]
    private let logger: Logger
    /// The prepared statements' names, shared by the pool's connections.
    public let statementNames = PostgresStatementNames()
    /// Attempts of one write before a deadlock or serialization failure (neither expected
    /// with the writer's lock, but PostgreSQL may still report one) is the caller's.
    static let maxAttempts = 5
    /// The advisory lock every write takes ("CHATMESH" in ASCII, so it is recognisable in pg_locks).
    static let writerLock: Int64 = 0x4348_4154_4D45_5348

    private init(configuration: PostgresClient.Configuration, maxConnections: Int, logger: Logger) {
        let loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator())
        var configuration = configuration
        // The connections split between the loops, at least one each.
        configuration.options.maximumConnections = max(1, maxConnections / loops.count)
        var clients: [PostgresClient] = []
        var byLoop: [ObjectIdentifier: PostgresClient] = [:]
        for loop in loops {
            let client = PostgresClient(configuration: configuration, eventLoopGroup: loop, backgroundLogger: logger)
            clients.append(client)
            byLoop[ObjectIdentifier(loop)] = client
        }
        self.clients = clients
        clientByLoop = byLoop
        self.logger = logger
        runTasks = clients.map { client in Task { await client.run() } }
    }

    /// The pool of the caller's event loop, or (off every loop) each in turn.
    private var client: PostgresClient {
        if let loop = MultiThreadedEventLoopGroup.currentEventLoop, let client = clientByLoop[ObjectIdentifier(loop)] {
            return client
        }
        return clients[nextClient.wrappingAdd(1, ordering: .relaxed).oldValue % clients.count]
    }

    /// - Parameter url: `postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require]`
    ///   (sslmode: `prefer` by default).
    public static func open(url: String, maxConnections: Int = 20, logger: Logger) async throws -> PostgresStore {
        let configuration = try configuration(url: url, maxConnections: maxConnections)
        let store = PostgresStore(configuration: configuration, maxConnections: maxConnections, logger: logger)
        do {
            // Fails here, naming the server, rather than on the first call.
            try await store.clients[0].withConnection { connection in
                _ = try await connection.sql().raw("SELECT 1").all()
            }
        } catch {
            try? await store.close()
            throw ConfigurationError("DATABASE_URL: cannot reach PostgreSQL at \(configuration.host ?? "?"):\(configuration.port ?? 5432): \(String(reflecting: error))")
        }
        return store
    }

    static func configuration(url: String, maxConnections: Int) throws -> PostgresClient.Configuration {
        guard let parts = URLComponents(string: url), ["postgres", "postgresql"].contains(parts.scheme ?? ""),
              let host = parts.host, !host.isEmpty, let user = parts.user, !user.isEmpty else {
            throw ConfigurationError("DATABASE_URL must look like postgres://user[:password]@host[:port]/database, not \(url)")
        }
        let database = String(parts.path.drop { $0 == "/" })
        let sslmode = parts.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
        let tls: PostgresClient.Configuration.TLS
        switch sslmode {
        case "disable": tls = .disable
        case "prefer", "allow": tls = .prefer(.makeClientConfiguration())
        case "require", "verify-ca", "verify-full": tls = .require(.makeClientConfiguration())
        default: throw ConfigurationError("DATABASE_URL: sslmode must be disable, prefer or require, not \(sslmode)")
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: parts.port ?? 5432, username: user.removingPercentEncoding ?? user,
            password: parts.password?.removingPercentEncoding, database: database.isEmpty ? nil : database, tls: tls
        )
        configuration.options.maximumConnections = maxConnections
        return configuration
    }

    public func read<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await client.withConnection { connection in
            try await body(PostgresStatementDatabase(connection: connection, names: statementNames, inTransaction: false, logger: logger))
        }
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        // Its own task, which the caller's cancellation does not reach: a transaction cut
        // short would go back to the pool still open.
        try await Task {
            var attempt = 1
            while true {
                do {
                    return try await self.transaction(body)
                } catch let error as PSQLError where attempt < Self.maxAttempts && Self.mayRetry(error) {
                    attempt += 1
                    // Apart a little, so the two that collided do not collide again.
                    try? await Task.sleep(for: .microseconds(Int.random(in: 100...(2_000 * attempt))))
                } catch is PostgresStatementRefused where attempt < Self.maxAttempts {
                    // Its statement runs unnamed from now on.
                    attempt += 1
                }
            }
        }.value
    }

    private func transaction<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await client.withConnection { connection in
            try await runTransaction(
                on: PostgresStatementDatabase(connection: connection, names: statementNames, inTransaction: true, logger: logger), begin: ["BEGIN", "SELECT pg_advisory_xact_lock(\(literal: Self.writerLock))"],
                logger: logger, body
            )
        }
    }

    /// A serialization failure or a deadlock: the transaction did nothing and may run again.
    static func mayRetry(_ error: PSQLError) -> Bool {
        guard let state = error.serverInfo?[.sqlState] else { return false }
        return state == "40001" || state == "40P01"
    }

    public func close() async throws {
        for task in runTasks { task.cancel() }
        for task in runTasks { await task.value }
    }
}
