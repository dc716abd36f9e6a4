import ChatMeshAPI
import MeshRPC
import NIOCore
import Testing

/// The protobuf-c bridges: every kind of field survives Swift → C → bytes → C → Swift,
/// the bytes are standard protobuf, and strings protobuf-c cannot carry are refused.
@Suite struct BridgeTests {
    static func fullPanel() -> Panel {
        let tag = Tag(tagId: "t1", folderId: "f1", name: "Giao gấp", color: "#e53935", visible: true)
        let order = Order(
            orderId: "o-1", customerId: "c-1", status: .shipped,
            items: [OrderItem(variantId: "v-1", quantity: 2, priceVnd: 199_000, productName: "Áo thun", variantTitle: "Đỏ / L")],
            subtotalVnd: 398_000, tierDiscountVnd: 19_900, pointsDiscountVnd: 10_000, shippingFeeVnd: 30_000,
            totalVnd: 398_100, pointsEarned: 39, paymentMethod: .cod, channel: .livestream,
            shipping: ShippingInfo(name: "Nguyễn Thị Lan", phone: "0901234567",
                                   address: Address(street: "12 Lý Tự Trọng", ward: "P. Bến Nghé", district: "Q.1", province: "TP.HCM")),
            shipment: Shipment(carrier: "GHN", trackingCode: "GHN123", trackingUrl: "https://donhang.ghn.vn/?order_code=GHN123"),
            createdAtMs: 1_764_000_000_000
        )
        return Panel(
            conversation: Conversation(conversationId: "cv-1", pageId: "p-1", customerId: "c-1", status: .open, assignedStaffId: "lan", tags: [tag]),
            customer: Customer(customerId: "c-1", name: "Nguyễn Thị Lan 🌸", birthday: "1995-03-08", phone: "0901234567",
                               address: "12 Lý Tự Trọng, P. Bến Nghé, Q.1, TP.HCM", blocked: false,
                               referral: Referral(sourceLink: "https://fb.me/ad", channel: "messenger", campaign: "tet-2026"),
                               customFields: [CustomFieldValue(key: "size", value: "L")]),
            tags: PanelTags(attached: [tag], available: [Tag(tagId: "t2", name: "Khách quen", visible: true)]),
            carts: [Cart(cartId: "cart-1", customerId: "c-1", campaignId: "live-1", campaignName: "Live tối thứ 6",
                         items: [CartItem(variantId: "v-1", quantity: 3, priceVnd: 150_000)], updatedByStaffId: "lan", totalVnd: 450_000)],
            orderSummary: OrderSummary(stats: OrderStats(orderCount: 7, totalSpentVnd: 3_500_000,
                                                         byStatus: [OrderStatusCount(status: .completed, count: 5), OrderStatusCount(status: .cancelled, count: 2)]),
                                       recent: [order, order]),
            notes: [Note(noteId: "n1", customerId: "c-1", text: "Khách thích màu đỏ", staffId: "lan", createdAtMs: 1)],
            referral: Referral(sourceLink: "https://fb.me/ad"),
            customFields: [CustomFieldValue(key: "size", value: "L")],
            activity: [ActivityEntry(entryId: "a1", action: .tagAttached, staffId: "lan", conversationId: "cv-1", tagId: "t1", tagName: "Giao gấp", atMs: 5)],
            member: Member(customerId: "c-1", tierId: "gold", tierName: "Vàng", points: 1234, orderCount: 7, totalSpentVnd: 3_500_000,
                           memberSinceMs: 2, expiring: [ExpiringPoints(points: 100, expiresAtMs: 9)]),
            unavailableSections: [UnavailableSection(section: "member", code: "UNAVAILABLE", reason: "loyalty-svc down")]
        )
    }

    @Test func aFullPanelRoundTrips() throws {
        let panel = Self.fullPanel()
        let bytes = try panel.serializedBytes()
        let back = try Panel(serializedBytes: bytes)
        #expect(back == panel)
        // Encoding is deterministic, so the same value gives the same bytes.
        #expect(try back.serializedBytes() == bytes)
    }

    @Test func emptyMessagesAndDefaults() throws {
        #expect(try Panel().serializedBytes().isEmpty)
        let back = try Panel(serializedBytes: [])
        #expect(back == Panel())
        #expect(back.customer == nil)
    }

    @Test func bytesAreStandardProtobuf() throws {
        // Hand-encoded: field 1 "s" (0a 01 73), field 2 "hi" (12 02 68 69), field 3 = 5 (18 05),
        // field 6 bytes [1,2] (32 02 01 02), field 7 "a","b" (3a 01 61 3a 01 62), field 9 = 300 (48 ac 02).
        let wire: [UInt8] = [0x0a, 0x01, 0x73, 0x12, 0x02, 0x68, 0x69, 0x18, 0x05, 0x32, 0x02, 0x01, 0x02,
                             0x3a, 0x01, 0x61, 0x3a, 0x01, 0x62, 0x48, 0xac, 0x02]
        let request = try EchoRequest(serializedBytes: wire)
        #expect(request == EchoRequest(shopId: "s", text: "hi", failWithCode: 5, payload: [1, 2], words: ["a", "b"], responseBytes: 300))
        #expect(try request.serializedBytes() == wire)
    }

    @Test func mapsRoundTripAndEncodeSorted() throws {
        let request = EchoRequest(shopId: "s", labels: ["b": "2", "a": "1", "đ": "ư"])
        let bytes = try request.serializedBytes()
        #expect(try EchoRequest(serializedBytes: bytes).labels == request.labels)
        // Entry "a" comes before entry "b" on the wire.
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.range(of: "a")!.lowerBound < text.range(of: "b")!.lowerBound)
    }

    @Test func unknownEnumValuesArePreserved() throws {
        // Conversation.status = 42 (field 4, varint): a value this build does not know.
        let back = try Conversation(serializedBytes: [0x20, 42])
        #expect(back.status == .unrecognized(42))
        #expect(try back.serializedBytes() == [0x20, 42])
        #expect(Conversation.Status(rawValue: 2) == .closed)
        #expect(Conversation.Status.closed.protoName == "CLOSED")
    }

    @Test(arguments: [
        "Chị ơi, áo size L còn không ạ? 🙏",
        "😀🇻🇳👨‍👩‍👧‍👦 中文",
        String(repeating: "đ", count: 32768),
        String(repeating: "x", count: 65536),
    ])
    func stringsRoundTripExactly(_ text: String) throws {
        let back = try EchoRequest(serializedBytes: EchoRequest(shopId: "s", text: text, words: [text]).serializedBytes())
        #expect(back.text == text)
        #expect(back.words == [text])
    }

    @Test func encodingAStringWithNULIsRefusedNamingTheField() {
        #expect(throws: MessageCodingError.invalidString(field: "chatmesh.testing.v1.EchoRequest.text", reason: "contains a NUL character")) {
            try EchoRequest(shopId: "s", text: "a\u{0}b").serializedBytes()
        }
        var panel = Self.fullPanel()
        panel.customer?.name = "Lan\u{0}"
        #expect(throws: MessageCodingError.invalidString(field: "chatmesh.v1.Customer.name", reason: "contains a NUL character")) {
            try panel.serializedBytes()
        }
        #expect(throws: MessageCodingError.self) {
            try EchoRequest(shopId: "s", labels: ["k\u{0}": "v"]).serializedBytes()
        }
    }

    @Test func decodingAStringWithNULIsRefusedNotCut() {
        // text = "a\0b"
        #expect(throws: MessageCodingError.invalidString(field: "chatmesh.testing.v1.EchoRequest.text", reason: "contains a NUL character")) {
            try EchoRequest(serializedBytes: [0x12, 0x03, 0x61, 0x00, 0x62])
        }
        // Nested: Panel.customer (field 2) { name (field 4) = "L\0" }.
        #expect(throws: MessageCodingError.invalidString(field: "chatmesh.v1.Customer.name", reason: "contains a NUL character")) {
            try Panel(serializedBytes: [0x12, 0x04, 0x22, 0x02, 0x4c, 0x00])
        }
        // In a map value.
        #expect(throws: MessageCodingError.self) {
            try EchoRequest(serializedBytes: [0x42, 0x06, 0x0a, 0x01, 0x6b, 0x12, 0x01, 0x00])
        }
    }

    @Test(arguments: [
        [0xC3, 0x28],              // bad continuation
        [0xE2, 0x82],              // truncated sequence
        [0xC0, 0xAF],              // overlong
        [0xED, 0xA0, 0x80],        // UTF-16 surrogate
        [0xF4, 0x90, 0x80, 0x80],  // above U+10FFFF
        [0xFF],
    ] as [[UInt8]])
    func decodingInvalidUTF8IsRefused(_ bad: [UInt8]) {
        let wire: [UInt8] = [0x12, UInt8(bad.count)] + bad
        #expect(throws: MessageCodingError.invalidString(field: "chatmesh.testing.v1.EchoRequest.text", reason: "is not valid UTF-8")) {
            try EchoRequest(serializedBytes: wire)
        }
    }

    @Test func bytesFieldsMayHoldAnything() throws {
        let payload: [UInt8] = [0, 0xFF, 0xC3, 0x28, 0]
        #expect(try EchoRequest(serializedBytes: EchoRequest(payload: payload).serializedBytes()).payload == payload)
    }

    @Test(arguments: [
        [0x0a, 0x05, 0x61],              // length past the end
        [0x0a],                          // key without value
        [0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],  // varint too long
        [0x0b, 0x01],                    // group wire type
    ] as [[UInt8]])
    func malformedBytesAreMalformed(_ wire: [UInt8]) {
        do {
            _ = try EchoRequest(serializedBytes: wire)
            Issue.record("decoded \(wire)")
        } catch {
            if case .malformed = error {} else { Issue.record("expected malformed, got \(error)") }
        }
    }
}
