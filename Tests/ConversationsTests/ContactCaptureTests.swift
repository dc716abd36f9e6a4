@testable import Conversations
import MeshRPC
import Testing
import VietnamCommerce

/// R-CONV-3 on messages as customers really write them.
@Suite struct ContactCaptureTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let text: String
        let phone: String?
        let address: String?
        var testDescription: String { text }
    }

    static let cases: [Case] = [
        // Phones in every written form.
        Case(text: "sđt em 0912345678 nha shop", phone: "0912345678", address: nil),
        Case(text: "Số của chị: 0912 345 678", phone: "0912345678", address: nil),
        Case(text: "0912.345.678", phone: "0912345678", address: nil),
        Case(text: "liên hệ 0912-345-678 giúp em", phone: "0912345678", address: nil),
        Case(text: "+84 912 345 678", phone: "0912345678", address: nil),
        Case(text: "+84912345678", phone: "0912345678", address: nil),
        Case(text: "84912345678 gọi em nhé", phone: "0912345678", address: nil),
        Case(text: "zalo 0388.123.456 ạ", phone: "0388123456", address: nil),
        Case(text: "Em tên Hoa, sdt:0703123456", phone: "0703123456", address: nil),
        Case(text: "gọi 0868 123 456 hoặc 0987 654 321", phone: "0868123456", address: nil),
        Case(text: "０９１２３４５６７８", phone: "0912345678", address: nil),
        Case(text: "Chốt đơn 😍 0581234567 🙏", phone: "0581234567", address: nil),
        // Not phones.
        Case(text: "Mã đơn DH0912345678 shop check giúp", phone: nil, address: nil),
        Case(text: "áo này giá 350.000đ phải không shop", phone: nil, address: nil),
        Case(text: "chuyển khoản 1.250.000 đ rồi nha", phone: nil, address: nil),
        Case(text: "STK 0071000123456 Vietcombank", phone: nil, address: nil),
        Case(text: "số cũ 01234567890 không dùng nữa", phone: nil, address: nil),
        Case(text: "0212345678 là số bàn", phone: nil, address: nil),
        Case(text: "lấy 2 cái A12 size L", phone: nil, address: nil),
        Case(text: "ngày 12.05.2025 giao được không", phone: nil, address: nil),
        Case(text: "còn hàng không shop?", phone: nil, address: nil),
        Case(text: "mã vận đơn 84123456789012", phone: nil, address: nil),
        // Addresses.
        Case(text: "Giao về 12 Lý Tự Trọng, P. Bến Nghé, Q.1, TP.HCM nha shop", phone: nil,
             address: "12 Lý Tự Trọng, P. Bến Nghé, Q.1, TP.HCM"),
        Case(text: "Địa chỉ: 123 Nguyễn Trãi, Thanh Xuân, Hà Nội", phone: nil, address: "123 Nguyễn Trãi, Thanh Xuân, Hà Nội"),
        Case(text: "dc 45/2 Nguyễn Huệ phường Bến Nghé quận 1", phone: nil, address: "45/2 Nguyễn Huệ phường Bến Nghé quận 1"),
        Case(text: "ship giúp em tới 88 Trần Phú, Hải Châu, Đà Nẵng ạ", phone: nil, address: "88 Trần Phú, Hải Châu, Đà Nẵng"),
        Case(text: "số 8 ngõ 12 Láng Hạ, Đống Đa, Hà Nội", phone: nil, address: "số 8 ngõ 12 Láng Hạ, Đống Đa, Hà Nội"),
        Case(text: "12A Lê Lợi, F.7, Q.3, tp hcm", phone: nil, address: "12A Lê Lợi, F.7, Q.3, tp hcm"),
        Case(text: "Lan - 0912345678 - 27 Hùng Vương, TP. Huế", phone: "0912345678", address: "27 Hùng Vương, TP. Huế"),
        Case(text: "Nguyễn Thị Lan\n56 Phan Chu Trinh, Tp Vũng Tàu\n0988111222", phone: "0988111222",
             address: "56 Phan Chu Trinh, Tp Vũng Tàu"),
        Case(text: "giao 99 đường 3/2, phường 11, quận 10, TP.HCM sđt 0909000111", phone: "0909000111",
             address: "99 đường 3/2, phường 11, quận 10, TP.HCM"),
        Case(text: "ấp 3 xã Tân Thạnh huyện Châu Thành tỉnh Long An", phone: nil, address: "ấp 3 xã Tân Thạnh huyện Châu Thành tỉnh Long An"),
        Case(text: "72 Đồng Khởi, Q.1, TP.HCM, giao giờ hành chính giúp em", phone: nil, address: "72 Đồng Khởi, Q.1, TP.HCM"),
        Case(text: "Giao 15 Nam Kỳ Khởi Nghĩa quận 3 nhé, người nhận Minh 0977 888 999", phone: "0977888999",
             address: "15 Nam Kỳ Khởi Nghĩa quận 3"),
        // Not addresses.
        Case(text: "giao về Q.1 được không shop", phone: nil, address: nil),
        Case(text: "mình ở quận 7 nè", phone: nil, address: nil),
        Case(text: "lấy 2 cái áo, giao q.1 tp.hcm", phone: nil, address: nil),
        Case(text: "3 quần jean size 30 giao Hà Nội mất mấy ngày", phone: nil, address: nil),
        Case(text: "shop ở Sài Gòn hay Hà Nội vậy", phone: nil, address: nil),
    ]

    @Test(arguments: cases)
    func captures(_ c: Case) {
        #expect(ContactCapture.phone(in: c.text) == c.phone)
        #expect(ContactCapture.address(in: c.text) == c.address)
    }

    @Test(arguments: [
        ("0912345678", "0912345678"), ("+84 912 345 678", "0912345678"), ("84-912-345-678", "0912345678"),
        ("(+84) 912.345.678", "0912345678"), ("0912 345 67", nil), ("0112345678", nil), ("abc", nil), ("", nil),
    ] as [(String, String?)])
    func normalisesPhones(_ raw: String, _ expected: String?) {
        #expect(ContactCapture.normalizePhone(raw) == expected)
    }
}

@Suite struct TagRulesTests {
    @Test func defaultTagsAreTheNineteenOfRTag2() {
        #expect(DefaultTags.folders.map(\.name) == ["Tư vấn - Bán hàng", "Vận hành - Giao hàng", "Nhóm khách hàng"])
        #expect(DefaultTags.folders.flatMap(\.tags).count == 19)
        #expect(DefaultTags.folders[0].tags.contains("Thiếu số đt"))
        #expect(DefaultTags.folders[2].tags == ["Bom hàng", "Spam", "Khách chặn shop", "Mua sỉ", "Mua lần đầu", "Khách quen"])
        // Unique among themselves under R-TAG-3.
        let keys = DefaultTags.folders.flatMap(\.tags).map(TagName.key)
        #expect(Set(keys).count == keys.count)
    }

    @Test func namesCompareIgnoringCaseAndAccents() {
        #expect(TagName.key("Giao gấp") == TagName.key("giao gap"))
        #expect(TagName.key("  ĐÃ   chốt đơn ") == "da chot don")
        #expect(TagName.key("Hết hàng") != TagName.key("Hết hạn"))
        #expect(TagName.key("Khách quen") == TagName.key("KHÁCH QUEN"))
    }

    @Test func validatesNames() {
        #expect(TagName.validate("Giao gấp") == nil)
        #expect(TagName.validate("   ") != nil)
        #expect(TagName.validate(String(repeating: "a", count: 65)) != nil)
        #expect(TagName.validate("a\u{7}b") != nil)
    }
}

@Suite struct ActivityRetentionTests {
    @Test func tagHistoryLastsThirtyDaysBlockHistoryForever() {
        let day: Int64 = 86_400_000
        let now: Int64 = 1_800_000_000_000
        #expect(!ActivityRetention.isExpired(.tagAttached, atMs: now - 30 * day, nowMs: now))
        #expect(ActivityRetention.isExpired(.tagAttached, atMs: now - 30 * day - 1, nowMs: now))
        #expect(ActivityRetention.isExpired(.tagDetached, atMs: now - 31 * day, nowMs: now))
        #expect(!ActivityRetention.isExpired(.customerBlocked, atMs: now - 3650 * day, nowMs: now))
        #expect(!ActivityRetention.isExpired(.customerUnblocked, atMs: 0, nowMs: now))
    }
}
