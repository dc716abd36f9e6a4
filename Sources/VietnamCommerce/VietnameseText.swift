import Foundation

/// Folding Vietnamese text for comparisons: lower case, no tone or vowel marks, đ → d.
/// Shared by the services that compare what people type (tag names, comments, addresses).
public enum VietnameseText {
    /// One folded Character for every Character of `text`, so positions line up.
    public static func foldedCharacters(_ text: String) -> [Character] {
        text.map(foldCharacter)
    }

    /// `text` without accents, đ as d, lower case: how names are compared and searched.
    public static func fold(_ text: String) -> String {
        String(text.map(foldCharacter))
    }

    /// One character folded as `fold` does.
    public static func foldCharacter(_ ch: Character) -> Character {
        if ch.isASCII { return Character(ch.lowercased()) }
        if ch == "đ" || ch == "Đ" { return "d" }
        // Full-width digits and letters (from some phone keyboards) fold to ASCII.
        if let scalar = ch.unicodeScalars.first, ch.unicodeScalars.count == 1,
           (0xFF10...0xFF5A).contains(scalar.value),
           let ascii = Unicode.Scalar(scalar.value - 0xFEE0) {
            return Character(String(ascii).lowercased())
        }
        let folded = String(ch).folding(options: [.diacriticInsensitive, .caseInsensitive, .widthInsensitive], locale: nil)
        return folded.count == 1 ? folded.first! : Character(String(ch).lowercased())
    }
}

/// R-TAG-3: tag names are unique per page ignoring case and accents, so
/// "Giao gấp" and "giao gap" are the same name. messaging-svc matches chatbot
/// triggers (R-BOT-1) by the same key.
public enum TagName {
    /// The comparison key: lower case, without diacritics (đ → d), single spaces, trimmed.
    public static func key(_ name: String) -> String {
        var out = ""
        out.reserveCapacity(name.utf8.count)
        var pendingSpace = false
        for ch in VietnameseText.fold(name) {
            if ch.isWhitespace {
                pendingSpace = !out.isEmpty
                continue
            }
            if pendingSpace {
                out.append(" ")
                pendingSpace = false
            }
            out.append(ch)
        }
        return out
    }

    /// What a tag name may be: 1 to 64 characters once trimmed, no control characters.
    public static func validate(_ name: String) -> String? {
        let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty { return "name is required" }
        if trimmed.count > 64 { return "name is longer than 64 characters" }
        if trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            return "name contains control characters"
        }
        return nil
    }
}

/// Money as Vietnamese write it: 50.000đ.
public enum VietnameseMoney {
    /// An amount as Vietnamese write it: 1.250.000đ.
    public static func format(_ vnd: Int64) -> String {
        let digits = Array(String(vnd.magnitude))
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { out.append(".") }
            out.append(digit)
        }
        return (vnd < 0 ? "-" : "") + out + "đ"
    }
}
