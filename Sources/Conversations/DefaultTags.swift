/// R-TAG-2: the folders and tags a page gets when it is connected for the first
/// time (and that InstallDefaultTags adds when missing), with their exact names.
public enum DefaultTags {
    public struct Folder: Sendable, Hashable {
        public let name: String
        public let tags: [String]
    }

    public static let folders: [Folder] = [
        Folder(name: "Tư vấn - Bán hàng", tags: [
            "Quan tâm", "Giá cao", "Thích ưu đãi", "Hết hàng", "Đã tư vấn", "Thiếu địa chỉ", "Thiếu số đt",
            "Chờ thanh toán", "Chờ chuyển khoản", "Không nghe máy", "Đã chốt đơn",
        ]),
        Folder(name: "Vận hành - Giao hàng", tags: ["Giao gấp", "Chờ giao lại"]),
        Folder(name: "Nhóm khách hàng", tags: ["Bom hàng", "Spam", "Khách chặn shop", "Mua sỉ", "Mua lần đầu", "Khách quen"]),
    ]

    /// R-TAG-6: synced Facebook labels live here, hidden by default.
    public static let facebookFolderName = "Facebook"
}

/// R-TAG-3: tag names are unique per page ignoring case and accents, so
/// "Giao gấp" and "giao gap" are the same name.
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

/// R-ACT-2: tag attach/detach history is kept 30 days; block/unblock history forever.
public enum ActivityRetention {
    public static let tagHistoryMs: Int64 = 30 * 86_400_000

    public enum Kind: Sendable, Hashable {
        case tagAttached, tagDetached, customerBlocked, customerUnblocked
    }

    /// Whether an entry recorded at `atMs` is purged by a retention run at `nowMs`.
    public static func isExpired(_ kind: Kind, atMs: Int64, nowMs: Int64) -> Bool {
        switch kind {
        case .tagAttached, .tagDetached: nowMs - atMs > tagHistoryMs
        case .customerBlocked, .customerUnblocked: false
        }
    }
}
