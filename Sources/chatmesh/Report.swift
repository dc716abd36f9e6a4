import ArgumentParser
import ChatMeshAPI
import Foundation
import MeshHTTP2
import MeshRPC
import VietnamCommerce

/// `chatmesh report`: the staff report (R-REP-1..2) for whole Vietnam days.
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Print the staff report of a page for a range of days (Vietnam time, both ends included)."
    )

    @Option(help: "The shop.")
    var shop: String = "demo-shop"

    @Option(help: "The page.")
    var page: String = "demo-page"

    @Option(help: "First day, YYYY-MM-DD (default: 30 days ago).")
    var from: String?

    @Option(help: "Last day, YYYY-MM-DD (default: today).")
    var to: String?

    @Option(help: "gateway address (default: CHATMESH_GATEWAY_ADDRS or \(MeshEnvironment.defaultAddress(of: "gateway"))).")
    var gateway: String?

    func run() async throws {
        let today = VietnamTime.dayNumber(atMs: WallClock.nowMs())
        func day(_ text: String?, _ fallback: Int64, _ flag: String) throws -> Int64 {
            guard let text else { return fallback }
            guard let d = VietnamTime.parseDate(text) else { throw ValidationError("\(flag) must be a date as YYYY-MM-DD, not \(text)") }
            return VietnamTime.daysFromCivil(year: d.year, month: d.month, day: d.day)
        }
        let first = try day(from, today - 29, "--from")
        let last = try day(to, today, "--to")
        if last < first { throw ValidationError("--to is before --from") }
        let env = MeshEnvironment()
        let token = TokenSigner(key: env.authKey).mint(shopId: shop, staffId: "cli", role: .owner, validFor: 300)
        let channel = try HTTP2Channel(addresses: gateway ?? env.addresses(of: "gateway"))
        let client = PanelService.Client(channel: channel, defaultOptions: .bearer(token, timeout: .seconds(30)))
        let answer = await rpcResult { () throws(RPCError) in
            try await client.getStaffReport(GetStaffReportRequest(
                shopId: shop, pageId: page, fromMs: first * VietnamTime.dayMs - VietnamTime.offsetMs, toMs: (last + 1) * VietnamTime.dayMs - VietnamTime.offsetMs
            ))
        }
        await channel.close()
        let report = try PanelCommand.answer(answer)
        let printer = Printer()
        let noon = VietnamTime.dayMs / 2 - VietnamTime.offsetMs
        print(printer.heading("Báo cáo nhân viên \(VietnamTime.displayDate(atMs: first * VietnamTime.dayMs + noon)) – \(VietnamTime.displayDate(atMs: last * VietnamTime.dayMs + noon))"))
        let header = ["nhân viên", "phản hồi TB", "được giao", "đã đóng", "bình luận", "tin nhắn", "khách", "đơn", "sản phẩm", "chốt đơn", "doanh thu"]
        let rows = report.rows.map { r in
            [r.staffId, Self.duration(r.avgResponseMs), "\(r.assigned)", "\(r.closed)", "\(r.commentsReplied)", "\(r.messagesReplied)", "\(r.customersReplied)",
             "\(r.orders)", "\(r.products)", String(format: "%.2f", r.closingEfficiency), Printer.vnd(r.revenueVnd)]
        }
        print(rows.isEmpty ? "  no staff activity in this range" : Printer.table([header] + rows, rightAligned: Set(1..<header.count)))
        for section in report.unavailableSections { print(printer.warn("⚠ \(section.section) không tải được: \(section.code) \(section.reason)")) }
    }

    static func duration(_ ms: Int64) -> String {
        guard ms > 0 else { return "-" }
        let seconds = ms / 1000
        return seconds >= 60 ? "\(seconds / 60)m\(String(format: "%02d", seconds % 60))s" : "\(seconds)s"
    }
}
