import Foundation

/// Folding Vietnamese text for comparisons: lower case, no tone or vowel marks, đ → d.
enum VietnameseText {
    /// One folded Character for every Character of `text`, so positions line up.
    static func foldedCharacters(_ text: String) -> [Character] {
        text.map(foldCharacter)
    }

    static func fold(_ text: String) -> String {
        String(text.map(foldCharacter))
    }

    static func foldCharacter(_ ch: Character) -> Character {
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
