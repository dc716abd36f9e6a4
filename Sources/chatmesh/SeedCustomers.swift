import ChatMeshAPI
import Foundation
import MeshRPC

/// `chatmesh seed --customers N`: N more customers for load tests, the same N
/// every time (names, phones and amounts follow from the index): a message with
/// a phone in conversation-svc, a paid order in loyalty-svc, and for a third of
/// them a livestream comment that fills a cart in order-svc.
extension Seed {
    static let families = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý"]
    static let middles = ["Thị", "Văn", "Minh", "Ngọc", "Thu", "Hoàng", "Quốc", "Thanh", "Bảo", "Gia"]
    static let givens = [
        "Lan", "Hoa", "Hùng", "Dũng", "Mai", "Trang", "Anh", "Bình", "Châu", "Duy", "Giang", "Hà", "Hải", "Khánh", "Linh", "Long", "Nam", "Nga",
        "Phong", "Quân", "Tâm", "Thảo", "Tú", "Vy", "Yến",
    ]

    static func generatedName(_ i: Int) -> String {
        "\(families[i % families.count]) \(middles[(i / families.count) % middles.count]) \(givens[(i * 7) % givens.count])"
    }

    /// 09x… numbers no demo customer has.
    static func generatedPhone(_ i: Int) -> String { String(format: "09%08d", 10_000_000 + i) }

    func seedCustomers(_ count: Int, conversation: ConversationService.Client, loyalty: LoyaltyService.Client?, order: OrderService.Client?) async throws {
        let campaign = try await order?.listCampaigns(ListCampaignsRequest(shopId: shop, pageId: "demo-page", pageSize: 1)).campaigns.first?.campaignId ?? ""
        let shop = self.shop
        let done = Progress(total: count)
        let now = WallClock.nowMs()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<16 {
                group.addTask {
                    var i = worker
                    while i < count {
                        let message = try await conversation.ingestMessage(IngestMessageRequest(
                            shopId: shop, pageId: "demo-page", customerExternalId: "load-\(i)", customerName: Self.generatedName(i), kind: .message,
                            sender: .customer, text: "Shop ơi tư vấn giúp em mẫu mới, sđt \(Self.generatedPhone(i)) nha"
                        ))
                        if let loyalty {
                            _ = try await loyalty.recordOrderEvent(RecordOrderEventRequest(
                                shopId: shop, eventId: "load-paid-\(i)", orderId: "load-order-\(i)", customerId: message.customerId, kind: .paid,
                                amountVnd: Int64(200_000 + (i % 40) * 50_000), channel: .social, district: "Quận \(i % 12 + 1)", province: "Hồ Chí Minh",
                                usedOffer: i % 4 == 0, atMs: now - Int64(i % 300) * 86_400_000
                            ))
                        }
                        if let order, !campaign.isEmpty, i % 3 == 0 {
                            _ = try await order.ingestComment(IngestCommentRequest(
                                shopId: shop, campaignId: campaign, customerId: message.customerId, text: ["A1 x1", "V2 size M", "C3 2c"][(i / 3) % 3]
                            ))
                        }
                        done.step()
                        i += 16
                    }
                }
            }
            try await group.waitForAll()
        }
        done.finish()
        print("seeded \(shop): \(count) more customers (messages with phones, paid orders in loyalty-svc, \(campaign.isEmpty ? "no" : "\((count + 2) / 3)") livestream comments)")
    }
}

/// A progress bar on standard error (only on a terminal), redrawn every 1%.
final class Progress: @unchecked Sendable {
    private let lock = NSLock()
    private let total: Int
    private var done = 0
    private let drawing = isatty(STDERR_FILENO) == 1

    init(total: Int) {
        self.total = total
    }

    func step() {
        let (now, draw) = lock.withLock { () -> (Int, Bool) in
            done += 1
            return (done, drawing && (done % max(1, total / 100) == 0 || done == total))
        }
        if draw { render(now) }
    }

    func finish() {
        if drawing { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    private func render(_ now: Int) {
        let width = 30
        let filled = width * now / max(total, 1)
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        FileHandle.standardError.write(Data("\r  customers [\(bar)] \(now)/\(total)".utf8))
    }
}
