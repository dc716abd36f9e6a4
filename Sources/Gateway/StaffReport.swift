import ChatMeshAPI
import MeshRPC

/// R-REP-1..2, R-PANEL-3: per staff member, conversation-svc's figures beside
/// order-svc's, and closing efficiency = orders ÷ customers replied. A side whose
/// service cannot answer is listed as unavailable; the other side is still shown.
public enum StaffReport {
    /// R-REP-1..2: one row per staff member joining their conversation figures and their sales; a missing side (its service down) leaves its columns empty.
    public static func rows(conversation: [StaffConversationStats]?, sales: [StaffSalesStats]?) -> [StaffReportRow] {
        var rows: [String: StaffReportRow] = [:]
        for c in conversation ?? [] {
            var row = rows[c.staffId] ?? StaffReportRow(staffId: c.staffId)
            row.avgResponseMs = c.avgResponseMs
            row.assigned = c.assignedAuto + c.assignedManual
            row.closed = c.closed
            row.commentsReplied = c.commentsReplied
            row.messagesReplied = c.messagesReplied
            row.customersReplied = c.customersReplied
            rows[c.staffId] = row
        }
        for s in sales ?? [] {
            var row = rows[s.staffId] ?? StaffReportRow(staffId: s.staffId)
            row.orders = s.orders
            row.products = s.products
            row.revenueVnd = s.revenueVnd
            rows[s.staffId] = row
        }
        return rows.values.map { row in
            var row = row
            row.closingEfficiency = row.customersReplied > 0 ? Double(row.orders) / Double(row.customersReplied) : 0
            return row
        }.sorted { ($1.revenueVnd, $0.staffId) < ($0.revenueVnd, $1.staffId) }
    }
}
