import Foundation
import VietnamCommerce

/// R-CONV-3: the phone number and postal address a customer writes in a
/// message, found without staff asking again. Conservative on purpose: a
/// wrong capture overwrites nothing staff typed, but it still shows on the
/// profile, so order codes, prices, quantities and bank accounts must not match.
public enum ContactCapture {
    // MARK: Phone

    /// A number as staff or a form gives it, normalised (see `VietnamPhone`).
    public static func normalizePhone(_ raw: String) -> String? {
        VietnamPhone.normalize(raw)
    }

    /// The first mobile number written in `text`, normalised; nil when there is none.
    public static func phone(in text: String) -> String? {
        VietnamPhone.firstMatch(in: VietnameseText.foldedCharacters(text))?.number
    }

    // MARK: E-mail

    /// The first e-mail address written in `text` ("gửi hoá đơn về lan.nguyen@gmail.com nha"), normalised.
    public static func email(in text: String) -> String? {
        let separators = Set(" \t\r\n,;:<>()[]{}\"'")
        for word in text.split(whereSeparator: { separators.contains($0) || $0.isWhitespace }) where word.contains("@") {
            // A sentence's full stop or a "!" after the address is not part of it.
            if let email = EmailAddress.normalize(String(word).trimmingCharacters(in: CharacterSet(charactersIn: ".!?"))) { return email }
        }
        return nil
    }

    // MARK: Address

    /// The postal address written in `text` (a line naming a street and a
    /// ward/district/province, e.g. "12 Lý Tự Trọng, P. Bến Nghé, Q.1, TP.HCM"),
    /// trimmed of lead-ins ("địa chỉ:", "giao về") and tails ("nha shop", a phone).
    public static func address(in text: String) -> String? {
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            if let found = address(inLine: String(line)) {
                return found
            }
        }
        return nil
    }

    static let provinces = [
        "ha noi", "hanoi", "hcm", "tphcm", "ho chi minh", "sai gon", "da nang", "hai phong", "can tho",
        "binh duong", "dong nai", "khanh hoa", "nha trang", "vung tau", "ba ria", "quang ninh", "nghe an",
        "thanh hoa", "hue", "thua thien", "lam dong", "da lat", "bac ninh", "long an", "tien giang", "an giang",
        "kien giang", "ca mau", "binh dinh", "quang nam", "gia lai", "dak lak", "thai nguyen", "nam dinh",
        "hai duong", "vinh phuc", "binh thuan", "tay ninh", "ben tre", "vinh long", "soc trang", "bac giang",
    ]

    /// Words that, after a number, make it a quantity, a size or a price rather than a house number.
    static let notStreetWords: Set<String> = [
        // Not "dong", "nam", "phan": Đồng Khởi, Nam Kỳ Khởi Nghĩa and Phan Chu Trinh are streets.
        "cai", "chiec", "bo", "doi", "sp", "san", "size", "kg", "k", "d", "ngay", "gio", "h", "phut",
        "tuoi", "thang", "lan", "don", "mon", "cap", "hop", "goi", "chai", "x", "m", "cm", "tr", "trieu",
        "nghin", "ngan", "ao", "quan", "vay", "dam", "cuon", "coc", "giao", "ship", "lay", "mua", "chot",
    ]

    /// Words before a number that make it a size, a quantity or a price.
    static let notStreetBefore: Set<String> = ["size", "sz", "sl", "x", "gia", "lay", "mua", "chot", "ma"]

    /// Street-level words that start an address before its number ("số 8", "ấp 3", "ngõ 12").
    static let streetKeywords: Set<String> = ["so", "duong", "ngo", "hem", "kiet", "ngach", "thon", "ap", "to", "khu", "lo"]

    /// Words that start something other than the address: a phone, a Zalo, a name.
    static let contactWords: Set<String> = ["sdt", "dt", "lh", "zalo", "ten", "nguoi", "nhan", "goi", "so"]

    static let fillerWords: Set<String> = [
        "nha", "nhe", "a", "shop", "giup", "em", "minh", "nhaa", "voi", "ah", "ha", "di", "nhen", "nhe!", "nha!",
    ]

    private struct Word {
        let original: Substring
        /// Folded, without surrounding punctuation.
        let folded: String
        let endsClause: Bool
    }

    private static func address(inLine line: String) -> String? {
        let words = line.split(separator: " ", omittingEmptySubsequences: true).map { w -> Word in
            let folded = VietnameseText.fold(String(w)).trimmingCharacters(in: CharacterSet(charactersIn: ",;:!?()\"'"))
            return Word(original: w, folded: folded, endsClause: w.last.map { ",;".contains($0) } ?? false)
        }
        if words.isEmpty { return nil }
        var ward = false, district = false, province = false
        var firstMarker: Int?
        var end = -1  // index of the last word that belongs to a ward, district or province

        /// A marker whose name follows it ("phường Bến Nghé", "quận 1", "tỉnh Long An"): up to three
        /// words, stopping after a comma, before a filler, a phone, or another marker keyword.
        func nameEnd(after i: Int) -> Int {
            var j = i
            var taken = 0
            while j + 1 < words.count, taken < 3, !words[j].endsClause {
                let f = words[j + 1].folded
                if f.isEmpty || fillerWords.contains(f) || contactWords.contains(f) || normalizePhone(f) != nil || markerKind(f, j + 2 < words.count ? words[j + 2].folded : "") != nil { break }
                j += 1
                taken += 1
            }
            return j
        }

        var i = 0
        while i < words.count {
            let f = words[i].folded
            let next = i + 1 < words.count ? words[i + 1].folded : ""
            if let kind = markerKind(f, next) {
                // "3 quần jean": trousers after a quantity, not a district.
                if kind == .district, f == "quan", i > 0, words[i - 1].folded.allSatisfy(\.isNumber) {
                    i += 1
                    continue
                }
                switch kind {
                case .ward: ward = true
                case .district: district = true
                case .province: province = true
                }
                if firstMarker == nil { firstMarker = i }
                // "P.Bến" / "Q.1," / "TP.HCM" carry their name; "phường", "quận", "p." and "tp" are followed by it.
                let carriesName = f.contains(".") && !f.hasSuffix(".")
                let twoWordKeyword = (f == "thanh" && next == "pho") || (f == "thi" && (next == "tran" || next == "xa"))
                let last = carriesName ? (words[i].endsClause ? i : nameEnd(after: i)) : nameEnd(after: twoWordKeyword ? i + 1 : i)
                end = max(end, last)
                i = max(i + 1, last + (carriesName ? 1 : 0))
                continue
            }
            // Province names, possibly two words ("Hà Nội", "Sài Gòn").
            let two = f + " " + next
            if provinces.contains(two) {
                province = true
                if firstMarker == nil { firstMarker = i }
                end = max(end, i + 1)
                i += 2
                continue
            }
            if provinces.contains(f) {
                province = true
                if firstMarker == nil { firstMarker = i }
                end = max(end, i)
            }
            i += 1
        }
        guard let firstMarker, ward || district || province else { return nil }

        // A house number before the first marker: digits (12, 45/2, 12A) followed by a street name.
        var street: Int?
        for (i, w) in words.enumerated() where i < firstMarker && i + 1 < words.count {
            let f = w.folded
            let isNumber = !f.isEmpty && f.first!.isNumber
                && f.allSatisfy { $0.isNumber || $0 == "/" || ($0.isLetter && $0.isASCII) }
                && f.filter(\.isNumber).count <= 5
            let next = words[i + 1].folded
            guard isNumber, !next.isEmpty, next.first!.isLetter, !notStreetWords.contains(next) else { continue }
            if i > 0, notStreetBefore.contains(words[i - 1].folded) { continue }
            street = i
            // "số 8 ngõ 12 …", "ấp 3 xã …": the street keyword before the number starts the address.
            if i > 0, streetKeywords.contains(words[i - 1].folded) { street = i - 1 }
            break
        }
        // A house number alone with one vague place is chatter ("mình ở quận 7"); with a province or
        // a district it is an address ("123 Nguyễn Trãi, Thanh Xuân, Hà Nội").
        guard let street, province || district else { return nil }
        var kept = Array(words[street...max(end, street)])
        while let last = kept.last, fillerWords.contains(last.folded) || last.folded.isEmpty {
            kept.removeLast()
        }
        guard kept.count >= 3 else { return nil }
        var result = kept.map(\.original).joined(separator: " ")
        while let last = result.last, ",;:-!?".contains(last) {
            result.removeLast()
        }
        return result
    }

    private enum MarkerKind { case ward, district, province }

    private static func markerKind(_ f: String, _ next: String) -> MarkerKind? {
        if f == "phuong" || f == "xa" || f == "tt" || (f == "thi" && next == "tran")
            || (f.hasPrefix("p.") && (f.count > 2 || !next.isEmpty))
            || (f.hasPrefix("f.") && f.dropFirst(2).first?.isNumber == true) {
            return .ward
        }
        if f == "quan" || f == "huyen" || f == "tx" || (f == "thi" && next == "xa")
            || (f.hasPrefix("q.") && (f.count > 2 || !next.isEmpty))
            || (f.count >= 2 && f.count <= 3 && f.hasPrefix("q") && f.dropFirst().allSatisfy(\.isNumber))
            || (f.hasPrefix("h.") && f.count > 2) {
            return .district
        }
        if f == "tinh" || f == "tp" || f.hasPrefix("tp.") || (f == "thanh" && next == "pho") {
            return .province
        }
        return nil
    }
}
