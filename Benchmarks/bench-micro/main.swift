import ChatMeshAPI
import Foundation
import Loyalty
import MeshRPC
import NIOCore
import Orders

// Microbenchmarks of the hot paths that are plain code (a plain release
// executable that scripts/bench runs, not a timed test):
// - a panel-sized message through the protobuf-c bridges, Swift values → C
//   structs → bytes and back;
// - the livestream comment parser on a 100-code campaign;
// - the segment evaluator on a customer with 20 orders.
// `bench-micro` prints µs per operation; `bench-micro --only NAME --iterations N`
// runs one operation N times and nothing else, which scripts/bench runs under
// valgrind twice (N and 2N) to count heap allocations per operation.

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
    print(name.padding(toLength: 64, withPad: " ", startingAt: 0) + "\(micros) µs/op")
}


func sampleParser() -> CommentParser {
    let colors = ["Đỏ", "Xanh", "Trắng", "Đen", "Vàng"]
    return CommentParser(items: (0..<100).flatMap { code in
        ["S", "M", "L"].map { size in
            CommentParser.Item(code: "A\(code)", variantId: "v-\(code)-\(size)", variantTitle: "\(colors[code % colors.count]) / size \(size)")
        }
    })
}

let comments = [
    "A12 size M x2 nha shop 😍",
    "chốt A7 đỏ L, sdt 0912 345 678",
    "a45 2 cái",
    "shop ơi còn hàng không ạ",
]

func sampleSegment() -> (SegmentRule, CustomerFacts) {
    let day: Int64 = 86_400_000
    let now: Int64 = 1_764_000_000_000
    let rule = SegmentRule(match: .all, conditions: [
        .purchasedBetween(DayRange(fromMs: now - 90 * day, toMs: now)!),
        .birthdayInMonth(7),
        .hasTag("khach-vip"),
    ])
    var orders: [CustomerFacts.Order] = []
    for i in 0..<20 {
        let daysAgo = Int64(100 - i * 5)
        orders.append(CustomerFacts.Order(atMs: now - daysAgo * day, amountVnd: 350_000, reversed: i % 7 == 0))
    }
    let tags: Set<String> = ["khach-vip", "hay-hoi-size", "q1"]
    let customer = CustomerFacts(
        customerId: "c-42", birthday: (1990, 7, 15), memberSinceMs: now - 400 * day, tagKeys: tags, tierId: "gold", points: 2_450, orders: orders
    )
    return (rule, customer)
}

let panel = samplePanel()
var encoded = ByteBuffer()
try panel.encode(into: &encoded)
let parser = sampleParser()
let (rule, customer) = sampleSegment()

/// Each operation checks its answer, so the optimizer cannot drop it and a wrong result stops the run.
let operations: [(name: String, label: String, run: () throws -> Void)] = [
    ("encode-panel", "encode Panel (Swift → protobuf-c → bytes)", {
        var buffer = ByteBuffer()
        try panel.encode(into: &buffer)
        guard buffer.readableBytes == encoded.readableBytes else { throw RPCError.internal("encoded size changed") }
    }),
    ("decode-panel", "decode Panel (bytes → protobuf-c → Swift)", {
        guard try Panel(protobuf: encoded).orderSummary?.recent.count == 5 else { throw RPCError.internal("decoded panel lost orders") }
    }),
    ("parse-comment", "parse a livestream comment (100 codes)", {
        var intents = 0
        for comment in comments { intents += parser.read(comment).intents.count }
        guard intents == 3 else { throw RPCError.internal("comments read as \(intents) intents, not 3") }
    }),
    ("evaluate-segment", "evaluate a 3-condition segment (20 orders)", {
        guard rule.matches(customer) else { throw RPCError.internal("the sample customer no longer matches") }
    }),
]

let arguments = CommandLine.arguments
if let at = arguments.firstIndex(of: "--only"), at + 1 < arguments.count {
    guard let operation = operations.first(where: { $0.name == arguments[at + 1] }) else {
        FileHandle.standardError.write(Data("bench-micro: no operation \(arguments[at + 1]); have \(operations.map(\.name))\n".utf8))
        exit(2)
    }
    let iterations = arguments.firstIndex(of: "--iterations").flatMap { Int(arguments[$0 + 1]) } ?? 1_000
    for _ in 0..<iterations { try operation.run() }
    exit(0)
}

print("microbenchmarks: Panel of \(encoded.readableBytes) bytes (12 tags, 2 carts, 5 orders × 3 items, 5 notes, 10 activity entries); "
      + "parse-comment reads \(comments.count) comments per operation")
for operation in operations {
    try measure("\(operation.name): \(operation.label)", iterations: 20_000, operation.run)
}
