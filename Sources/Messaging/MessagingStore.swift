import ChatMeshAPI
import Foundation
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// messaging-svc's storage. A send is two transactions around the provider
/// call: `reserve` records the message as QUEUED and holds its price on the
/// balance; `settle` records what the provider said and gives the hold back
/// when the message did not go. The provider is never called while the
/// writer is held, and a message left QUEUED by a crash is found again by
/// `queued(before:)` and delivered then.
public struct MessagingStore: Sendable {
    let db: any SQLStore

    public init(_ db: any SQLStore) {
        self.db = db
    }

    /// Opens the store's tables, applying any migration not applied yet.
    public static func open(_ db: any SQLStore) async throws -> MessagingStore {
        try await db.migrate(MessagingSchema.migrations)
        return MessagingStore(db)
    }

    enum LedgerKind: Int64 { case topUp = 1, hold = 2, release = 3 }
}
