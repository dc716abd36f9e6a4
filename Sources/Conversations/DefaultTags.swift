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
