/// Vietnamese mobile numbers as every service stores them (DOMAIN.md): "0" +
/// 9 digits, the second digit one of the mobile ranges (03, 05, 07, 08, 09).
/// Accepts the written forms: +84 / 84 / 0 prefixes, spaces, dots, dashes,
/// brackets, and full-width digits from some phone keyboards.
public enum VietnamPhone {
    public static func normalize(_ raw: String) -> String? {
        var digits = ""
        var plus = false
        for scalar in raw.unicodeScalars {
            var v = scalar.value
            if (0xFF01...0xFF5E).contains(v) { v -= 0xFEE0 }  // full-width ASCII
            switch v {
            case 0x30...0x39: digits.unicodeScalars.append(Unicode.Scalar(v)!)
            case 0x2B where digits.isEmpty && !plus: plus = true
            case 0x20, 0x2E, 0x2D, 0x28, 0x29, 0x3000: continue
            default: return nil
            }
        }
        return canonical(digits: digits, hadPlus: plus)
    }

    /// The stored form of a run of digits, written after a "+" or not; nil when it is no mobile number.
    public static func canonical(digits: String, hadPlus plus: Bool) -> String? {
        let national: String
        if digits.hasPrefix("84"), digits.count == 11 {
            national = "0" + digits.dropFirst(2)
        } else if digits.hasPrefix("0"), digits.count == 10, !plus {
            national = digits
        } else {
            return nil
        }
        let second = national[national.index(after: national.startIndex)]
        return "35789".contains(second) ? national : nil
    }
}
