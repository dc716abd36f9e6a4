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

/// The shop's default template per kind of message (MessageDefault): what the services
/// send when a caller names no template.
extension MessagingStore {
    /// Sets (or, with an empty `templateId`, removes) the default for `use`; the template must be the shop's.
    public func setMessageDefault(shop: String, use: MessageDefault.Use, templateId: String) async throws -> MessageDefault {
        try await db.write { db in
            guard !templateId.isEmpty else {
                try await db.raw("DELETE FROM message_defaults WHERE shop_id = \(bind: shop) AND use = \(bind: Int64(use.rawValue))").run()
                return MessageDefault(use: use)
            }
            guard let row = try await db.raw("SELECT * FROM templates WHERE shop_id = \(bind: shop) AND template_id = \(bind: templateId)").first() else {
                throw MessagingError.noTemplate(templateId)
            }
            let template = try Self.template(row)
            try await db.raw("""
                INSERT INTO message_defaults (shop_id, use, template_id) VALUES (\(bind: shop), \(bind: Int64(use.rawValue)), \(bind: templateId))
                ON CONFLICT (shop_id, use) DO UPDATE SET template_id = excluded.template_id
                """).run()
            return MessageDefault(use: use, channel: template.channel, templateId: templateId)
        }
    }

    /// The shop's defaults whose templates still exist, by use.
    public func messageDefaults(shop: String) async throws -> [MessageDefault] {
        try await db.read { db in
            try await db.raw("""
                SELECT d.use, d.template_id, t.channel FROM message_defaults d
                JOIN templates t ON t.shop_id = d.shop_id AND t.template_id = d.template_id
                WHERE d.shop_id = \(bind: shop) ORDER BY d.use
                """).all().map {
                MessageDefault(
                    use: .init(rawValue: Int32(try $0.int64("use"))), channel: .init(rawValue: Int32(try $0.int64("channel"))),
                    templateId: try $0.string("template_id")
                )
            }
        }
    }

    /// The default for `use`, or nil when the shop has none.
    public func messageDefault(shop: String, use: MessageDefault.Use) async throws -> MessageDefault? {
        try await messageDefaults(shop: shop).first { $0.use == use }
    }
}
