import Foundation

/// R-CONV-10: e-mail addresses as ChatMesh keeps them (what staff type, what a customer writes,
/// a referral's friend) and as R-SEG-3 hashes them.
public enum EmailAddress {
    /// R-CONV-10 / R-SEG-3: an address as staff type it or a message gives it, trimmed and
    /// lower-cased; nil unless it is a plain internet address (local@domain.tld).
    public static func normalize(_ raw: String) -> String? {
        let value = raw.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        guard value.utf8.count <= 254 else { return nil }
        let parts = value.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let (local, domain) = (parts[0].utf8, parts[1])
        let localSymbols = Set("!#$%&'*+/=?^_`{|}~.-".utf8)
        guard !local.isEmpty, local.count <= 64, local.first != UInt8(ascii: "."), local.last != UInt8(ascii: "."),
              !parts[0].contains(".."), local.allSatisfy({ isASCIIAlphanumeric($0) || localSymbols.contains($0) })
        else { return nil }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2, let top = labels.last, top.utf8.count >= 2, top.utf8.allSatisfy({ $0 >= 0x61 && $0 <= 0x7A }),
              labels.allSatisfy({ label in
                  !label.isEmpty && label.utf8.count <= 63 && label.first != "-" && label.last != "-"
                      && label.utf8.allSatisfy { isASCIIAlphanumeric($0) || $0 == UInt8(ascii: "-") }
              })
        else { return nil }
        return value
    }

    static func isASCIIAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A)
    }
}
