/// Vietnamese mobile numbers as every service stores them (DOMAIN.md): "0" +
/// 9 digits, the second digit one of the mobile ranges (03, 05, 07, 08, 09).
/// Accepts the written forms: +84 / 84 / 0 prefixes, spaces, dots, dashes,
/// brackets, and full-width digits from some phone keyboards.
public enum VietnamPhone {
    /// A Vietnamese mobile number as 0xxxxxxxxx, from the ways people write it (+84, spaces, dots); nil when it is not one.
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

    /// The first mobile number in folded text (`VietnameseText.foldedCharacters`) and
    /// where it stands: digit groups joined by single spaces, dots or dashes, tried
    /// from each group on ("0912 345 678", "+84 912.345.678", two numbers side by side).
    /// Conversation messages (R-CONV-3) and livestream comments (R-CAMP-2) are read with it.
    public static func firstMatch(in chars: [Character]) -> (number: String, range: Range<Int>)? {
        var i = 0
        while i < chars.count {
            let startsHere = chars[i].isASCII && (chars[i].isNumber || chars[i] == "+")
            let boundaryBefore = i == 0 || !(chars[i - 1].isLetter || chars[i - 1].isNumber)
            guard startsHere, boundaryBefore else {
                i += 1
                continue
            }
            // Collect groups: (digits, start, end) separated by one separator.
            var groups: [(String, Int, Int)] = []
            var j = i
            var plus = false
            if chars[j] == "+" {
                plus = true
                j += 1
            }
            while j < chars.count {
                var k = j
                var digits = ""
                while k < chars.count, chars[k].isASCII, chars[k].isNumber {
                    digits.append(chars[k])
                    k += 1
                }
                if digits.isEmpty { break }
                groups.append((digits, j, k))
                if k + 1 < chars.count, chars[k] == " " || chars[k] == "." || chars[k] == "-",
                   chars[k + 1].isASCII, chars[k + 1].isNumber {
                    j = k + 1
                } else {
                    j = k
                    break
                }
            }
            // The run must not run into letters ("0912345678abc" is a code, not a phone).
            let boundaryAfter = j >= chars.count || !(chars[j].isLetter)
            if boundaryAfter {
                for first in groups.indices {
                    var digits = ""
                    for last in first..<groups.count {
                        digits += groups[last].0
                        if digits.count > 11 { break }
                        let hadPlus = plus && first == 0
                        let endsGroupRun = last == groups.count - 1 || digits.count >= 10
                        if endsGroupRun, let number = VietnamPhone.canonical(digits: digits, hadPlus: hadPlus) {
                            let start = hadPlus ? i : groups[first].1
                            return (number, start..<groups[last].2)
                        }
                    }
                }
            }
            i = max(j, i + 1)
        }
        return nil
    }
}
