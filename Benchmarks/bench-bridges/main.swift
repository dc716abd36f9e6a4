import ChatMeshAPI
import MeshRPC
import Foundation
import NIOCore

// Encode and decode of a panel-sized message through the protobuf-c bridges:
// Swift values → C structs → bytes → C structs → Swift values. A plain release
// executable (scripts/bench runs it), not a timed test.

func samplePanel() -> Panel {
    let tags = (0..<12).map { Tag(tagId: "tag-\($0)", folderId: "f-\($0 % 3)", name: "Nhãn số \($0)", color: "#43a047", visible: true) }
    let items = (0..<3).map { OrderItem(variantId: "v-\($0)", quantity: Int32($0 + 1), priceVnd: 129_000, productName: "Váy hoa nhí", variantTitle: "Xanh / M") }
    let orders = (0..<5).map { i in
        Order(orderId: "DH-\(1000 + i)", customerId: "c-42", status: .completed, items: items, subtotalVnd: 774_000,
              tierDiscountVnd: 38_700, shippingFeeVnd: 25_000, totalVnd: 760_300, pointsEarned: 76, paymentMethod: .cod, channel: .social,
              shipping: ShippingInfo(name: "Trần Văn Minh", phone: "0912345678",
                                     address: Address(street: "45 Nguyễn Huệ", ward: "P. Bến Nghé", district: "Q.1", province: "TP.HCM")),
              shipment: Shipment(carrier: "GHTK", trackingCode: "S1234567.BO", trackingUrl: "https://i.ghtk.vn/S1234567.BO"),
              createdAtMs: 1_764_000_000_000 + Int64(i))
    }
    return Panel(
        conversation: Conversation(conversationId: "cv-42", pageId: "page-1", customerId: "c-42", status: .open, assignedStaffId: "lan", tags: Array(tags.prefix(4))),
        customer: Customer(customerId: "c-42", pageId: "page-1", name: "Trần Văn Minh", birthday: "1990-07-15", phone: "0912345678",
                           address: "45 Nguyễn Huệ, P. Bến Nghé, Q.1, TP.HCM",
                           referral: Referral(sourceLink: "https://www.facebook.com/ads/123", channel: "messenger", campaign: "sale-11-11"),
                           customFields: [CustomFieldValue(key: "size", value: "M"), CustomFieldValue(key: "kenh", value: "Zalo")]),
        tags: PanelTags(attached: Array(tags.prefix(4)), available: Array(tags.dropFirst(4))),
        carts: (0..<2).map { Cart(cartId: "cart-\($0)", customerId: "c-42", campaignId: "live-\($0)", campaignName: "Livestream tối thứ \($0 + 5)",
                                  items: [CartItem(variantId: "v-1", quantity: 2, priceVnd: 99_000)], updatedByStaffId: "lan", totalVnd: 198_000) },
        orderSummary: OrderSummary(stats: OrderStats(orderCount: 17, totalSpentVnd: 12_500_000,
                                                     byStatus: [OrderStatusCount(status: .completed, count: 15), OrderStatusCount(status: .cancelled, count: 2)]),
                                   recent: orders),
        notes: (0..<5).map { Note(noteId: "n-\($0)", customerId: "c-42", text: "Khách hay hỏi size, thích giao buổi tối", staffId: "lan", createdAtMs: Int64($0)) },
        referral: Referral(sourceLink: "https://www.facebook.com/ads/123", channel: "messenger", campaign: "sale-11-11"),
        customFields: [CustomFieldValue(key: "size", value: "M")],
        activity: (0..<10).map { ActivityEntry(entryId: "a-\($0)", action: .tagAttached, staffId: "lan", conversationId: "cv-42", tagId: "tag-1", tagName: "Nhãn số 1", atMs: Int64($0)) },
        member: Member(customerId: "c-42", tierId: "gold", tierName: "Vàng", points: 2_450, orderCount: 17, totalSpentVnd: 12_500_000,
                       memberSinceMs: 1_700_000_000_000, expiring: [ExpiringPoints(points: 300, expiresAtMs: 1_770_000_000_000)])
    )
}

func measure(_ name: String, iterations: Int, _ body: () throws -> Void) rethrows {
    for _ in 0..<(iterations / 10) { try body() }  // warm-up
    let clock = ContinuousClock()
    let start = clock.now
    for _ in 0..<iterations { try body() }
    let elapsed = clock.now - start
    let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
    let micros = (ns / Double(iterations) / 10).rounded() / 100
    print(name.padding(toLength: 44, withPad: " ", startingAt: 0) + "\(micros) µs/op")
}

let panel = samplePanel()
var encoded = ByteBuffer()
try panel.encode(into: &encoded)
print("bridge benchmark: Panel of \(encoded.readableBytes) bytes (12 tags, 2 carts, 5 orders × 3 items, 5 notes, 10 activity entries)")
let iterations = 20_000
try measure("encode Panel (Swift → protobuf-c → bytes)", iterations: iterations) {
    var buffer = ByteBuffer()
    try panel.encode(into: &buffer)
}
try measure("decode Panel (bytes → protobuf-c → Swift)", iterations: iterations) {
    _ = try Panel(protobuf: encoded)
}
