import ChatMeshAPI
import MeshChanges
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// ConversationStore on sql-kit: one SQL text for SQLite and PostgreSQL, every
/// value bound, every statement filtered by shop.
public struct SQLConversationStore: ConversationStore {
    let db: any SQLStore
    /// Rung after a commit that wrote outbox rows (ConversationEvents).
    public let commitBell: CommitBell

    public init(_ db: any SQLStore, commitBell: CommitBell = CommitBell()) {
        self.db = db
        self.commitBell = commitBell
    }

    /// A transaction, then the bell: the outbox rows and changes it committed are looked at now.
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        defer { commitBell.ring() }
        return try await db.write(body)
    }

    /// Carriers of a tag: whose profile changes when it is renamed or deleted.
    static func tagCarriers(_ db: any SQLDatabase, shop: String, tagId: String) async throws -> [String] {
        try await db.raw("""
            SELECT DISTINCT c.customer_id FROM conversation_tags ct
            JOIN conversations c ON c.shop_id = ct.shop_id AND c.conversation_id = ct.conversation_id
            WHERE ct.shop_id = \(bind: shop) AND ct.tag_id = \(bind: tagId)
            """).all().map { try $0.string("customer_id") }
    }

    /// Opens the store's tables, applying any migration not applied yet.
    public static func open(_ db: any SQLStore) async throws -> SQLConversationStore {
        try await db.migrate(ConversationSchema.migrations)
        return SQLConversationStore(db)
    }

    // Column codes. Stored as numbers so the proto's names can change without a migration.
    enum EventKind: Int64 { case assignedAuto = 1, assignedManual = 2, closed = 3, reopened = 4 }
    static let defaultColor = "#9e9e9e"
    static let facebookColor = "#1877f2"
    /// Colours of the default tags, by folder: sales blue, operations orange, customer groups purple.
    static let defaultFolderColors = ["#1e88e5", "#fb8c00", "#8e24aa"]
}
