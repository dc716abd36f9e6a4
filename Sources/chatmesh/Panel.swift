import ArgumentParser
import ChatMeshAPI
import Foundation
import MeshHTTP2
import MeshRPC
import VietnamCommerce

/// Terminal output for people: sections, aligned columns, money in đồng, colour
/// only on a terminal (and never with NO_COLOR).
struct Printer {
    let colour: Bool

    init() {
        colour = isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
    }

    func heading(_ text: String) -> String { colour ? "\u{1B}[1;36m\(text)\u{1B}[0m" : text }
    func dim(_ text: String) -> String { colour ? "\u{1B}[2m\(text)\u{1B}[0m" : text }
    func warn(_ text: String) -> String { colour ? "\u{1B}[33m\(text)\u{1B}[0m" : text }

    static func vnd(_ amount: Int64) -> String { VietnameseMoney.format(amount) }

    static func date(_ ms: Int64) -> String {
        guard ms > 0 else { return "-" }
        let minutes = (ms + VietnamTime.offsetMs - VietnamTime.dayNumber(atMs: ms) * VietnamTime.dayMs) / 60_000
        return VietnamTime.displayDate(atMs: ms) + String(format: " %02d:%02d", minutes / 60, minutes % 60)
    }

    /// Rows of cells with each column as wide as its widest cell (the last one left ragged).
    static func table(_ rows: [[String]], indent: String = "  ", rightAligned: Set<Int> = []) -> String {
        guard let columns = rows.map(\.count).max() else { return "" }
        let widths = (0..<columns).map { c in rows.map { c < $0.count ? $0[c].count : 0 }.max() ?? 0 }
        return rows.map { row in
            indent + row.enumerated().map { c, cell in
                let pad = String(repeating: " ", count: max(0, widths[c] - cell.count))
                if c == row.count - 1 && !rightAligned.contains(c) { return cell }
                return rightAligned.contains(c) ? pad + cell : cell + pad
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

/// `chatmesh panel`: the chat tool panel of one conversation, as the gateway composes it.
struct PanelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "panel",
        abstract: "Print the chat tool panel of a conversation (or of the customer with a phone number)."
    )

    @Option(help: "The shop.")
    var shop: String = "demo-shop"

    @Option(help: "The page (used with --customer-phone).")
    var page: String = "demo-page"

    @Option(help: "The conversation.")
    var conversation: String?

    @Option(help: "Find the conversation by the customer's phone number.")
    var customerPhone: String?

    @Flag(help: "Print JSON for scripts.")
    var json = false

    @Flag(help: "Stay and redraw the panel as changes arrive (WatchPanel); resumes when the mesh comes back. With --json, one line per update.")
    var watch = false

    @Option(help: "gateway address (default: CHATMESH_GATEWAY_ADDRS or \(MeshEnvironment.defaultAddress(of: "gateway"))).")
    var gateway: String?

    @Option(help: "conversation-svc address for --customer-phone (default: CHATMESH_CONVERSATION_ADDRS or \(MeshEnvironment.defaultAddress(of: "conversation"))).")
    var conversationService: String?

    func validate() throws {
        if (conversation == nil) == (customerPhone == nil) { throw ValidationError("give one of --conversation and --customer-phone") }
    }

    func run() async throws {
        let env = MeshEnvironment()
        let token = TokenSigner(key: env.authKey).mint(shopId: shop, staffId: "cli", role: .agent, validFor: 300)
        var conversationId = conversation ?? ""
        if let phone = customerPhone {
            guard let normalized = VietnamPhone.normalize(phone) else { throw ValidationError("--customer-phone: \(phone) is not a Vietnamese mobile number") }
            let channel = try HTTP2Channel(addresses: conversationService ?? env.addresses(of: "conversation"))
            let client = ConversationService.Client(channel: channel, defaultOptions: .bearer(token, timeout: .seconds(5)))
            let found = await rpcResult { () throws(RPCError) in
                try await client.listConversations(ListConversationsRequest(shopId: shop, pageId: page, query: normalized, pageSize: 1))
            }
            await channel.close()
            guard let first = try Self.answer(found).conversations.first else { throw ValidationError("no conversation of \(normalized) on page \(page)") }
            conversationId = first.conversationId
        }
        let channel = try HTTP2Channel(addresses: gateway ?? env.addresses(of: "gateway"))
        if watch {
            try await PanelWatcher(shop: shop, conversationId: conversationId, json: json, signer: TokenSigner(key: env.authKey)).run(channel)
            await channel.close()
            return
        }
        let client = PanelService.Client(channel: channel, defaultOptions: .bearer(token, timeout: .seconds(5)))
        let answer = await rpcResult { () throws(RPCError) in
            try await client.getPanel(GetPanelRequest(shopId: shop, conversationId: conversationId))
        }
        await channel.close()
        let panel = try Self.answer(answer)
        print(json ? PanelJSON.text(panel) : PanelText(printer: Printer()).text(panel))
    }

    static func answer<T>(_ result: Result<T, RPCError>) throws -> T {
        switch result {
        case .success(let value): return value
        case .failure(let error): throw ValidationError("\(error.code.name): \(error.message)")
        }
    }
}

/// `chatmesh panel --watch`: the panel kept current from WatchPanel. Each update's
/// sections replace the shown ones; when the stream ends (the gateway restarts, the
/// token expires) it comes back with the last resume token, so nothing is missed.
struct PanelWatcher {
    let shop: String
    let conversationId: String
    let json: Bool
    let signer: TokenSigner

    func run(_ channel: HTTP2Channel) async throws {
        var shown = Panel()
        var token = ""
        var backoff = Duration.milliseconds(200)
        let printer = Printer()
        while true {
            let credentials = signer.mint(shopId: shop, staffId: "cli", role: .agent, validFor: 3600)
            let client = PanelService.Client(channel: channel, defaultOptions: .bearer(credentials))
            do {
                try await client.watchPanel(WatchPanelRequest(shopId: shop, conversationId: conversationId, resumeToken: token)) { updates in
                    for try await update in updates {
                        shown = Self.apply(update, to: shown)
                        token = update.resumeToken
                        backoff = .milliseconds(200)
                        // Redrawn in place on a terminal; one panel after another when piped. Written
                        // unbuffered, so whoever reads the pipe sees each update as it comes.
                        let text = json
                            ? PanelJSON.text(shown, pretty: false)
                            : (printer.colour ? "\u{1B}[2J\u{1B}[H" : "\n") + PanelText(printer: printer).text(shown)
                        FileHandle.standardOutput.write(Data((text + "\n").utf8))
                    }
                }
            } catch let error as RPCError where [.invalidArgument, .notFound, .permissionDenied].contains(error.code) {
                throw ValidationError("\(error.code.name): \(error.message)")
            } catch {
                FileHandle.standardError.write(Data("watch interrupted (\(error)); resuming\n".utf8))
            }
            try await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    /// The shown panel with the update's sections in place (R-PANEL-4: the first update has them all).
    static func apply(_ update: PanelUpdate, to shown: Panel) -> Panel {
        var panel = shown
        let new = update.panel ?? Panel()
        for section in update.changedSections {
            switch section {
            case "conversation": panel.conversation = new.conversation
            case "customer": panel.customer = new.customer
            case "tags": panel.tags = new.tags
            case "carts": panel.carts = new.carts
            case "order_summary": panel.orderSummary = new.orderSummary
            case "notes": panel.notes = new.notes
            case "referral": panel.referral = new.referral
            case "custom_fields": panel.customFields = new.customFields
            case "activity": panel.activity = new.activity
            case "member": panel.member = new.member
            case "messages": panel.messages = new.messages
            default: break
            }
        }
        panel.unavailableSections = update.unavailableSections
        return panel
    }
}

/// The panel as a person reads it.
struct PanelText {
    let printer: Printer

    func text(_ panel: Panel) -> String {
        var out: [String] = []
        let customer = panel.customer ?? Customer()
        let conversation = panel.conversation ?? Conversation()
        out.append(printer.heading("Khách hàng") + "  " + (customer.name.isEmpty ? conversation.customerName : customer.name))
        out.append(Printer.table([
            ["Điện thoại", customer.phone.isEmpty ? "-" : customer.phone + (customer.phoneCaptured ? printer.dim(" (tự nhận)") : "")],
            ["Địa chỉ", customer.address.isEmpty ? "-" : customer.address],
            ["Sinh nhật", customer.birthday.isEmpty ? "-" : customer.birthday],
            ["E-mail", customer.email.isEmpty ? "-" : customer.email + (customer.emailCaptured ? printer.dim(" (tự nhận)") : "")],
            ["Hội thoại", "\(conversation.conversationId)  \(conversation.status.protoName)  \(conversation.assignedStaffId.isEmpty ? "chưa giao" : conversation.assignedStaffId)"],
        ] + (panel.referral.map { $0.sourceLink.isEmpty && $0.campaign.isEmpty ? [] : [["Nguồn", [$0.channel, $0.campaign, $0.sourceLink].filter { !$0.isEmpty }.joined(separator: " · ")]] } ?? [])))
        if let member = panel.member {
            out.append(printer.heading("Thành viên"))
            out.append(Printer.table([
                ["Hạng", member.tierName.isEmpty ? "-" : member.tierName],
                ["Điểm", "\(member.points)" + (member.expiring.first.map { "  (\($0.points) hết hạn \(Printer.date($0.expiresAtMs))" + ")" } ?? "")],
                ["Đơn / chi tiêu", "\(member.orderCount) đơn, \(Printer.vnd(member.totalSpentVnd))"],
                ["Thành viên từ", Printer.date(member.memberSinceMs)],
            ]))
        }
        if let tags = panel.tags {
            out.append(printer.heading("Thẻ") + "  " + (tags.attached.isEmpty ? "-" : tags.attached.map(\.name).joined(separator: ", ")))
            if !tags.available.isEmpty { out.append("  " + printer.dim("còn: " + tags.available.map(\.name).joined(separator: ", "))) }
        }
        if !panel.carts.isEmpty {
            out.append(printer.heading("Giỏ hàng"))
            for cart in panel.carts {
                out.append("  \(cart.campaignName.isEmpty ? cart.cartId : cart.campaignName)  \(Printer.vnd(cart.totalVnd))" + (cart.updatedByStaffId.isEmpty ? "" : printer.dim("  sửa bởi \(cart.updatedByStaffId)")))
                out.append(Printer.table(cart.items.map { ["\($0.quantity) ×", $0.variantId, Printer.vnd($0.priceVnd)] }, indent: "    ", rightAligned: [0, 2]))
            }
        }
        if let summary = panel.orderSummary, let stats = summary.stats {
            out.append(printer.heading("Đơn hàng") + "  \(stats.orderCount) đơn, đã chi \(Printer.vnd(stats.totalSpentVnd))  " +
                printer.dim(stats.byStatus.map { "\($0.status.protoName.lowercased()) \($0.count)" }.joined(separator: ", ")))
            out.append(Printer.table(summary.recent.map { order in
                [Printer.date(order.createdAtMs), order.status.protoName, Printer.vnd(order.totalVnd),
                 order.items.map { "\($0.quantity) × \($0.productName) \($0.variantTitle)" }.joined(separator: ", ")]
            }, rightAligned: [2]))
        }
        if !panel.notes.isEmpty {
            out.append(printer.heading("Ghi chú"))
            out.append(Printer.table(panel.notes.map { [Printer.date($0.createdAtMs), $0.staffId, $0.text] }))
        }
        if !panel.customFields.isEmpty {
            out.append(printer.heading("Thông tin thêm"))
            out.append(Printer.table(panel.customFields.map { [$0.label.isEmpty ? $0.key : $0.label, $0.value] }))
        }
        if !panel.messages.isEmpty {
            out.append(printer.heading("Tin nhắn"))
            out.append(Printer.table(panel.messages.suffix(10).map { message in
                let who = message.sender == .staff ? message.staffId : message.sender == .bot ? "bot" : "khách"
                return [Printer.date(message.sentAtMs), who, String(message.text.prefix(60)), ReplyCommand.deliveryText(message)]
            }))
        }
        if !panel.activity.isEmpty {
            out.append(printer.heading("Lịch sử"))
            out.append(Printer.table(panel.activity.prefix(10).map { [Printer.date($0.atMs), $0.action.protoName.lowercased(), $0.staffId, $0.tagName] }))
        }
        for section in panel.unavailableSections {
            out.append(printer.warn("⚠ \(section.section) không tải được: \(section.code) \(section.reason)"))
        }
        return out.joined(separator: "\n")
    }
}

/// The panel as JSON for scripts (field names as in the proto).
enum PanelJSON {
    static func text(_ panel: Panel, pretty: Bool = true) -> String {
        let customer = panel.customer ?? Customer()
        let conversation = panel.conversation ?? Conversation()
        var object: [String: Any] = [
            "conversation_id": conversation.conversationId,
            "conversation": [
                "status": conversation.status.protoName, "assigned_staff_id": conversation.assignedStaffId,
                "last_message_text": conversation.lastMessageText, "unread_count": conversation.unreadCount,
            ] as [String: Any],
            "customer": [
                "customer_id": customer.customerId, "name": customer.name, "phone": customer.phone, "address": customer.address, "birthday": customer.birthday,
            ],
            "tags": ["attached": panel.tags?.attached.map(\.name) ?? [], "available": panel.tags?.available.map(\.name) ?? []],
            "carts": panel.carts.map { cart in
                ["cart_id": cart.cartId, "campaign_name": cart.campaignName, "total_vnd": cart.totalVnd, "updated_by_staff_id": cart.updatedByStaffId,
                 "items": cart.items.map { ["variant_id": $0.variantId, "quantity": $0.quantity, "price_vnd": $0.priceVnd] as [String: Any] }] as [String: Any]
            },
            "notes": panel.notes.map { ["text": $0.text, "staff_id": $0.staffId, "created_at_ms": $0.createdAtMs] as [String: Any] },
            "custom_fields": Dictionary(panel.customFields.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a }),
            "activity": panel.activity.map { ["action": $0.action.protoName, "staff_id": $0.staffId, "tag_name": $0.tagName, "at_ms": $0.atMs] as [String: Any] },
            "messages": panel.messages.map {
                ["message_id": $0.messageId, "sender": $0.sender.protoName, "staff_id": $0.staffId, "text": $0.text, "sent_at_ms": $0.sentAtMs,
                 "delivery": $0.delivery.protoName, "platform_message_id": $0.platformMessageId, "failure_reason": $0.failureReason] as [String: Any]
            },
            "unavailable_sections": panel.unavailableSections.map { ["section": $0.section, "code": $0.code, "reason": $0.reason] },
        ]
        if let summary = panel.orderSummary {
            object["order_summary"] = [
                "order_count": summary.stats?.orderCount ?? 0, "total_spent_vnd": summary.stats?.totalSpentVnd ?? 0,
                "recent": summary.recent.map { ["order_id": $0.orderId, "status": $0.status.protoName, "total_vnd": $0.totalVnd] as [String: Any] },
            ] as [String: Any]
        }
        if let member = panel.member {
            object["member"] = ["tier_name": member.tierName, "points": member.points, "order_count": member.orderCount, "total_spent_vnd": member.totalSpentVnd]
                as [String: Any]
        }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
