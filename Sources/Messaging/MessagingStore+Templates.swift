import ChatMeshAPI
import Foundation
import MeshRPC
import MeshStore
import SQLKit
import VietnamCommerce

/// Message templates (R-MSG-1).
extension MessagingStore {
    // MARK: Templates

    /// Saves a template (R-MSG-1).
    public func createTemplate(shop: String, _ template: Template, nowMs: Int64) async throws -> Template {
        try await db.write { db in
            var created = template
            created.templateId = SortableID.make("tpl_", nowMs: nowMs)
            created.enabled = true
            try await db.raw("""
                INSERT INTO templates (shop_id, template_id, channel, name, body, purpose, enabled, provider_template_id, placeholders, created_at_ms)
                VALUES (\(bind: shop), \(bind: created.templateId), \(bind: Int64(created.channel.rawValue)), \(bind: created.name), \(bind: created.body),
                        \(bind: Int64(created.purpose.rawValue)), \(bind: 1 as Int64), \(bind: created.providerTemplateId),
                        \(bind: created.placeholders.joined(separator: "\n")), \(bind: nowMs))
                """).run()
            return created
        }
    }

    /// The shop's templates, on one channel or all.
    public func templates(shop: String, channel: Template.Channel?) async throws -> [Template] {
        try await db.read { db in
            var sql: SQLQueryString = "SELECT * FROM templates WHERE shop_id = \(bind: shop)"
            if let channel { sql += " AND channel = \(bind: Int64(channel.rawValue))" }
            sql += " ORDER BY template_id"
            return try await db.raw(sql).all().map(Self.template)
        }
    }

    /// A template by id; `noTemplate` when the shop has none.
    public func template(shop: String, id: String) async throws -> Template {
        try await db.read { db in
            guard let row = try await db.raw("SELECT * FROM templates WHERE shop_id = \(bind: shop) AND template_id = \(bind: id)").first() else {
                throw MessagingError.noTemplate(id)
            }
            return try Self.template(row)
        }
    }

    static func template(_ row: any SQLRow) throws -> Template {
        let placeholders = try row.string("placeholders")
        return Template(
            templateId: try row.string("template_id"),
            channel: .init(rawValue: Int32(try row.int64("channel"))),
            name: try row.string("name"), body: try row.string("body"),
            purpose: .init(rawValue: Int32(try row.int64("purpose"))),
            enabled: try row.int64("enabled") != 0,
            providerTemplateId: try row.string("provider_template_id"),
            placeholders: placeholders.isEmpty ? [] : placeholders.split(separator: "\n").map(String.init)
        )
    }
}
