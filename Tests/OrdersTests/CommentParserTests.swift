import Orders
import Testing

/// R-CAMP-2 on comments as they are written under a livestream. The campaign sells
/// A12 (a shirt in M, L and XL; M is listed first), B3 (a red bag), C7 (sandals in
/// 38 and 39), D1 (one hair clip) and K25 (a skirt in "Đỏ - S" and "Đen - M").
@Suite struct CommentParserTests {
    static let parser = CommentParser(items: [
        .init(code: "A12", variantId: "a12-m", variantTitle: "Size M"),
        .init(code: "A12", variantId: "a12-l", variantTitle: "Size L"),
        .init(code: "A12", variantId: "a12-xl", variantTitle: "Size XL"),
        .init(code: "B3", variantId: "b3", variantTitle: "Đỏ"),
        .init(code: "C7", variantId: "c7-38", variantTitle: "Size 38"),
        .init(code: "C7", variantId: "c7-39", variantTitle: "Size 39"),
        .init(code: "D1", variantId: "d1", variantTitle: "Mặc định"),
        .init(code: "K25", variantId: "k25-do-s", variantTitle: "Đỏ - S"),
        .init(code: "K25", variantId: "k25-den-m", variantTitle: "Đen - M"),
    ])

    /// A comment and what it asks for, as "variant×quantity" joined by spaces ("" for no intent).
    static let comments: [(String, String)] = [
        // The forms the spec names.
        ("A12 x2", "a12-m×2"),
        ("a12 2c", "a12-m×2"),
        ("chốt A12+B3", "a12-m×1 b3×1"),
        ("A12-size L sl 3", "a12-l×3"),
        ("lấy 2 cái A12 nha shop", "a12-m×2"),
        // Quantities written every which way.
        ("A12", "a12-m×1"),
        ("a12", "a12-m×1"),
        ("A12x2", "a12-m×2"),
        ("A12 X 3", "a12-m×3"),
        ("A12*2", "a12-m×2"),
        ("a12 sl2", "a12-m×2"),
        ("A12 sl: 4", "a12-m×4"),
        ("A12 số lượng 5", "a12-m×5"),
        ("a12 2 cái", "a12-m×2"),
        ("a12 3 chiếc nha", "a12-m×3"),
        ("2c A12", "a12-m×2"),
        ("em lấy 2 A12", "a12-m×2"),
        ("a12 2", "a12-m×2"),
        ("A12 2 bộ", "a12-m×2"),
        // Variants.
        ("A12 size L", "a12-l×1"),
        ("A12 sz XL x2", "a12-xl×2"),
        ("a12-L", "a12-l×1"),
        ("A12 L x2", "a12-l×2"),
        ("A12 xl 2c", "a12-xl×2"),
        ("C7 size 39", "c7-39×1"),
        ("c7 sz 38 x2", "c7-38×2"),
        ("C7 39 x1", "c7-39×1"),
        ("K25 màu đen size M", "k25-den-m×1"),
        ("k25 do s", "k25-do-s×1"),
        ("K25 đỏ S x2", "k25-do-s×2"),
        // Several items.
        ("A12 x2, B3 x1", "a12-m×2 b3×1"),
        ("chốt A12 size L + C7 size 38", "a12-l×1 c7-38×1"),
        ("A12 L 2c; D1 3c", "a12-l×2 d1×3"),
        ("A12 x1 và B3 x2", "a12-m×1 b3×2"),
        ("A12 x1 A12 x2", "a12-m×3"),
        ("A12 size M x1, A12 size L x1", "a12-m×1 a12-l×1"),
        // Accents, case, emoji, punctuation, full-width.
        ("CHỐT A12!!! 😍😍", "a12-m×1"),
        ("🔥🔥 a12 x2 🔥🔥", "a12-m×2"),
        ("Ａ１２ ｘ２", "a12-m×2"),
        ("chot a12 nha shopppp ❤️", "a12-m×1"),
        ("Mình lấy B3 nhé.", "b3×1"),
        ("đặt d1 2c ạ", "d1×2"),
        ("A12...x2", "a12-m×2"),
        // Phones in the comment are never quantities.
        ("A12 x2 sđt 0912345678", "a12-m×2"),
        ("0912 345 678 chốt A12", "a12-m×1"),
        ("A12 size L, 0987.654.321", "a12-l×1"),
        ("+84 903 111 222 lấy B3 2c", "b3×2"),
        // A question mark with a word of buying is still an order.
        ("chốt A12 x2 nha shop?", "a12-m×2"),
        // Questions, prices and chatter: no intent.
        ("A12 giá bao nhiêu vậy shop?", ""),
        ("a12 bn", ""),
        ("A12 còn size L không ạ", ""),
        ("A12 còn không shop", ""),
        ("A12 150k hả shop", ""),
        ("A12 có màu khác không?", ""),
        ("ship về Đà Nẵng bao lâu shop", ""),
        ("shop ơi đẹp quá", ""),
        ("xinh quá 😍", ""),
        ("A12 200.000đ đúng không", ""),
        ("ib A12 giúp em", ""),
        // Unknown codes, cancellations, variants not offered.
        ("Z9 x2", ""),
        ("chốt Z99", ""),
        ("A123 x2", ""),
        ("hủy A12", ""),
        ("em không lấy A12 nữa", ""),
        ("A12 size XXL", ""),
        ("C7 size 40 x2", ""),
        ("A12 x0", ""),
        // An unknown code next to a known one: only the known one, with its own quantity.
        ("A12 Z9 x2", "a12-m×1"),
        ("chốt Z9 + B3", "b3×1"),
    ]

    @Test(arguments: comments)
    func readsTheComment(_ comment: String, _ expected: String) {
        let got = Self.parser.read(comment).intents.map { "\($0.variantId)×\($0.quantity)" }.joined(separator: " ")
        #expect(got == expected, "\(comment)")
    }

    @Test func thereAreAtLeastFiftyComments() {
        #expect(Self.comments.count >= 50)
        #expect(Set(Self.comments.map(\.0)).count == Self.comments.count)
    }

    @Test func phonesAreCapturedWhetherOrNotTheCommentOrders() {
        #expect(Self.parser.read("A12 x2 sđt 0912 345 678").phone == "0912345678")
        #expect(Self.parser.read("gọi em +84 987.654.321 tư vấn A12").phone == "0987654321")
        #expect(Self.parser.read("A12 x2").phone == nil)
        // Order codes and amounts are not phones.
        #expect(Self.parser.read("A12 x2 1500000").phone == nil)
    }

    @Test func quantitiesAreCappedAndCodesCarryTheCampaignSpelling() {
        let huge = Self.parser.read("A12 x500, A12 x600").intents
        #expect(huge.map(\.quantity) == [CommentParser.maxQuantity])
        #expect(Self.parser.read("a12").intents.first?.code == "A12")
        #expect(CommentParser.codeKey("A-12") == "a12")
    }
}
