import VietnamCommerce

/// R-CAMP-2: what a livestream or sales-post comment asks to buy. Comments are
/// written fast on phones: "A12 x2", "a12 2c", "chốt A12+B3", "A12-size L sl 3",
/// "lấy 2 cái A12 nha shop", with emoji, accents or none, full-width characters
/// and phone numbers in them. Only the campaign's own codes count (an unknown
/// code gives nothing), a question or a price with no word of buying is not an
/// order, and a variant named but not offered is not guessed.
public struct CommentParser: Sendable {
    /// One campaign line: a code, the variant it sells and that variant's title ("Size L", "Đỏ - M").
    public struct Item: Sendable, Hashable {
        public var code: String
        public var variantId: String
        public var variantTitle: String

        public init(code: String, variantId: String, variantTitle: String) {
            self.code = code
            self.variantId = variantId
            self.variantTitle = variantTitle
        }
    }

    /// A variant and quantity a comment asks for.
    public struct Intent: Sendable, Hashable {
        public var code: String
        public var variantId: String
        public var quantity: Int

        public init(code: String, variantId: String, quantity: Int) {
            self.code = code
            self.variantId = variantId
            self.quantity = quantity
        }
    }

    /// What one comment says: intents and a phone, if any.
    public struct Reading: Sendable, Hashable {
        public var intents: [Intent]
        /// The mobile number in the comment, normalised (R-CONV-3).
        public var phone: String?
    }

    /// Most of one variant a single comment can ask for.
    public static let maxQuantity = 999

    /// Items by folded code; the first item of a code is its default variant.
    let items: [String: [(item: Item, words: Set<String>)]]
    /// Lengths of the codes, longest first, to split "a12x2".
    let codeLengths: [Int]

    public init(items: [Item]) {
        var byCode: [String: [(item: Item, words: Set<String>)]] = [:]
        for item in items {
            // "Size L" is known by "l"; "S" and "Cỡ" stay words, a comment may name them.
            let words = Set(Self.words(VietnameseText.fold(item.variantTitle)).filter { !Self.titleLeads.contains($0) })
            byCode[Self.codeKey(item.code), default: []].append((item, words))
        }
        self.items = byCode
        codeLengths = Set(byCode.keys.map(\.count)).sorted(by: >)
    }

    /// A code as comments are matched against it: folded, letters and digits only.
    public static func codeKey(_ code: String) -> String {
        String(VietnameseText.fold(code).filter { $0.isASCII && ($0.isLetter || $0.isNumber) })
    }

    // MARK: Reading a comment

    /// Reads a comment as written under a livestream.
    public func read(_ comment: String) -> Reading {
        var chars = VietnameseText.foldedCharacters(comment)
        // The phone goes first, so that its digits are never read as quantities.
        let phone = VietnamPhone.firstMatch(in: chars)
        var rest = chars
        while let match = VietnamPhone.firstMatch(in: rest) {
            for i in match.range { rest[i] = " " }
        }
        chars = rest
        let tokens = tokenize(chars)
        let text = " " + tokens.map(\.text).joined(separator: " ") + " "

        var requests: [(code: String, hint: [String], quantity: Int?, explicit: Bool)] = []
        var explicitAnywhere = false
        let codeIndices = tokens.indices.filter { if case .code = tokens[$0] { true } else { false } }
        for (n, index) in codeIndices.enumerated() {
            guard case .code(let code) = tokens[index] else { continue }
            let end = n + 1 < codeIndices.count ? codeIndices[n + 1] : tokens.count
            let segment = Array(tokens[(index + 1)..<end].prefix { !$0.endsSegment })
            var (quantity, hint, explicit) = readSegment(segment, code: code)
            // Before the code: "lấy 2 cái A12", "2c A12", "2 A12".
            if quantity == nil {
                let start = n > 0 ? codeIndices[n - 1] + 1 : 0
                let before = Array(tokens[start..<index].reversed().prefix { !$0.endsSegment }.reversed())
                if let leading = leadingQuantity(before) {
                    quantity = leading
                    explicit = true
                }
            }
            explicitAnywhere = explicitAnywhere || explicit
            requests.append((code, hint, quantity, explicit))
        }
        guard !requests.isEmpty else { return Reading(intents: [], phone: phone?.number) }

        let buying = explicitAnywhere || Self.orderWords.contains { text.contains(" \($0) ") } || text.contains(" + ")
        if Self.cancelWords.contains(where: { text.contains(" \($0) ") }) { return Reading(intents: [], phone: phone?.number) }
        let asking = tokens.contains { $0.text == "?" } || Self.questionWords.contains { text.contains(" \($0) ") }
        let pricing = tokens.contains { if case .price = $0 { true } else { false } }
        if (asking || pricing) && !buying { return Reading(intents: [], phone: phone?.number) }

        var intents: [Intent] = []
        for request in requests {
            let quantity = request.quantity ?? 1
            guard quantity > 0, let candidates = items[request.code] else { continue }
            let chosen: Item?
            if request.hint.isEmpty {
                chosen = candidates.first?.item
            } else {
                chosen = candidates.first { candidate in request.hint.allSatisfy { candidate.words.contains($0) } }?.item
            }
            guard let chosen else { continue }
            if let at = intents.firstIndex(where: { $0.variantId == chosen.variantId }) {
                intents[at].quantity = min(Self.maxQuantity, intents[at].quantity + quantity)
            } else {
                intents.append(Intent(code: chosen.code, variantId: chosen.variantId, quantity: min(Self.maxQuantity, quantity)))
            }
        }
        return Reading(intents: intents, phone: phone?.number)
    }

    /// Quantity and variant words after a code, and whether the quantity was written as one ("x2", "sl 3", "2 cái").
    func readSegment(_ segment: [Token], code: String) -> (quantity: Int?, hint: [String], explicit: Bool) {
        var quantity: Int?
        var explicit = false
        var hint: [String] = []
        let variantWords = items[code].map { Set($0.flatMap(\.words)) } ?? []
        var i = 0
        func number(at j: Int) -> Int? {
            guard j < segment.count, case .number(let n) = segment[j] else { return nil }
            return n
        }
        while i < segment.count {
            let token = segment[i]
            switch token {
            case .word(let w) where Self.quantityLeads.contains(w):
                // "x2", "sl 3", "sl: 3", "số lượng 3"
                var j = i + 1
                if w == "so", j < segment.count, segment[j].text == "luong" { j += 1 }
                if j < segment.count, segment[j].text == ":" { j += 1 }
                if let n = number(at: j), quantity == nil || !explicit {
                    quantity = n
                    explicit = true
                    i = j + 1
                    continue
                }
            case .symbol("*"):
                if let n = number(at: i + 1) {
                    quantity = n
                    explicit = true
                    i += 2
                    continue
                }
            case .word(let w) where variantWords.contains(w):
                hint.append(w)
            case .word(let w) where Self.variantLeads.contains(w):
                // "size L", "sz 38", "màu đỏ"
                if i + 1 < segment.count, segment[i + 1].isValue, !Self.quantityLeads.contains(segment[i + 1].text) {
                    hint.append(segment[i + 1].text)
                    i += 2
                    continue
                }
            case .symbol("-"):
                // "A12-L", "a12-38"; "A12-size L" is read by the next word.
                if i + 1 < segment.count, segment[i + 1].isValue, !Self.variantLeads.contains(segment[i + 1].text) {
                    hint.append(segment[i + 1].text)
                    i += 2
                    continue
                }
            case .number(let n):
                if i + 1 < segment.count, case .word(let unit) = segment[i + 1], Self.units.contains(unit) {
                    quantity = n
                    explicit = true
                    i += 2
                    continue
                }
                if quantity == nil && hint.isEmpty && variantWords.contains(String(n)) {
                    hint.append(String(n))
                } else if quantity == nil && n <= 99 {
                    quantity = n
                }
            default:
                break
            }
            i += 1
        }
        return (quantity, hint, explicit)
    }

    /// "2 cái", "2c" or a bare number just before the code.
    func leadingQuantity(_ before: [Token]) -> Int? {
        guard let last = before.last else { return nil }
        if case .number(let n) = last { return n <= 99 ? n : nil }
        if before.count >= 2, case .word(let unit) = last, Self.units.contains(unit), case .number(let n) = before[before.count - 2] { return n }
        return nil
    }

    // MARK: Tokens

    enum Token: Sendable, Hashable {
        case code(String)
        /// A code-shaped word the campaign does not sell ("z9"): it ends the segment before it.
        case otherCode(String)
        case word(String)
        case number(Int)
        /// A money amount ("150k", "200.000đ", "1tr"): never a quantity.
        case price
        case symbol(Character)

        var text: String {
            switch self {
            case .code(let c), .otherCode(let c), .word(let c): c
            case .number(let n): String(n)
            case .price: "<price>"
            case .symbol(let s): String(s)
            }
        }

        var endsSegment: Bool {
            switch self {
            case .code, .otherCode: true
            case .symbol(let s): "+,;/&|\n".contains(s)
            case .word(let w): w == "va" || w == "voi"
            default: false
            }
        }

        var isValue: Bool {
            switch self {
            case .word, .number: true
            default: false
            }
        }
    }

    func tokenize(_ chars: [Character]) -> [Token] {
        var tokens: [Token] = []
        var run = ""
        func flush() {
            guard !run.isEmpty else { return }
            tokens += split(run)
            run = ""
        }
        var i = 0
        while i < chars.count {
            let ch = chars[i]
            if ch.isASCII && (ch.isLetter || ch.isNumber) {
                run.append(ch)
            } else if ch == "." || ch == ",", !run.isEmpty, run.last!.isNumber, i + 3 < chars.count,
                      chars[(i + 1)...(i + 3)].allSatisfy({ $0.isASCII && $0.isNumber }),
                      i + 4 >= chars.count || !(chars[i + 4].isASCII && chars[i + 4].isNumber) {
                // 200.000 / 1,500,000: a thousands separator inside an amount.
                run.append("_")
            } else {
                flush()
                if "+,;/&|*-:?\n".contains(ch) { tokens.append(.symbol(ch)) }
            }
            i += 1
        }
        flush()
        // A number followed by a money word is a price: "150 k", "200 nghìn".
        var out: [Token] = []
        for token in tokens {
            if case .word(let w) = token, Self.moneyWords.contains(w), case .number = out.last {
                out[out.count - 1] = .price
            } else {
                out.append(token)
            }
        }
        return out
    }

    /// One run of letters and digits as tokens: a code (also glued to its quantity,
    /// "a12x2"), an amount, or words and numbers split where letters meet digits.
    func split(_ run: String) -> [Token] {
        if run.contains("_") {
            return [.price]
        }
        if items[run] != nil { return [.code(run)] }
        for length in codeLengths where length < run.count {
            let head = String(run.prefix(length))
            guard items[head] != nil else { continue }
            let tail = String(run.dropFirst(length))
            let tailTokens = Self.letterDigitSplit(tail)
            if case .word(let w) = tailTokens.first, Self.quantityLeads.contains(w) || Self.units.contains(w) {
                return [.code(head)] + tailTokens
            }
        }
        let parts = Self.letterDigitSplit(run)
        if parts.count == 2, case .word(let letters) = parts[0], case .number = parts[1], letters.count <= 3,
           !Self.quantityLeads.contains(letters), !Self.variantLeads.contains(letters) {
            return [.otherCode(run)]
        }
        if case .number(let n) = parts.first, parts.count == 2, case .word(let w) = parts[1], Self.moneyWords.contains(w) || n >= 1_000 {
            return [.price]
        }
        if parts.count == 1, case .number(let n) = parts[0], n >= 1_000 { return [.price] }
        return parts
    }

    static func letterDigitSplit(_ run: String) -> [Token] {
        var tokens: [Token] = []
        var current = ""
        var digits = false
        func flush() {
            guard !current.isEmpty else { return }
            tokens.append(digits ? .number(Int(current.prefix(9)) ?? 0) : .word(current))
            current = ""
        }
        for ch in run {
            if !current.isEmpty && ch.isNumber != digits { flush() }
            digits = ch.isNumber
            current.append(ch)
        }
        flush()
        return tokens
    }

    static func words(_ text: String) -> [String] {
        text.split { !($0.isASCII && ($0.isLetter || $0.isNumber)) }.map(String.init)
    }

    // MARK: Vocabulary (folded)

    static let quantityLeads: Set<String> = ["x", "sl", "so"]
    static let variantLeads: Set<String> = ["size", "sz", "sai", "s", "mau", "co", "loai"]
    static let titleLeads: Set<String> = ["size", "sz", "mau", "loai"]
    static let units: Set<String> = ["c", "cai", "chiec", "bo", "doi", "sp", "cay", "hop", "goi", "set", "ao", "quan", "lo", "tui"]
    static let moneyWords: Set<String> = ["k", "d", "dong", "tr", "trieu", "nghin", "ngan", "vnd"]
    static let orderWords = ["chot", "lay", "dat", "mua", "order", "gom", "them", "cho em", "cho minh", "cho chi", "cho anh", "len don", "e lay", "em lay"]
    static let cancelWords = ["huy", "bo chot", "khong lay", "ko lay", "k lay", "khong mua"]
    static let questionWords = [
        "bao nhieu", "bn", "gia", "con", "khong a", "ko a", "khong vay", "khong ha", "con khong", "con ko", "con k", "co khong", "khong shop", "ko shop", "nhu nao", "the nao", "ntn", "sao shop",
        "con hang", "het hang", "ship khong", "inbox", "ib", "tu van", "hoi",
    ]
}
