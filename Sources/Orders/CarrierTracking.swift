import Foundation
import MeshRPC
import VietnamCommerce

/// R-ORD-4: the carriers order-svc ships with, and where a tracking code leads.
/// Most carriers' public tracking pages take the code in the URL; Viettel Post's
/// does not (its form has no URL parameter), so the link is the bare page and
/// staff paste the code, as the original product did.
public enum Carrier: String, Sendable, CaseIterable {
    case ghn = "GHN"
    case ghtk = "GHTK"
    case viettelPost = "VIETTEL_POST"
    case jtExpress = "JT_EXPRESS"
    case ninjaVan = "NINJA_VAN"
    case vnpost = "VNPOST"
    case bestExpress = "BEST_EXPRESS"

    public var displayName: String {
        switch self {
        case .ghn: "Giao Hàng Nhanh"
        case .ghtk: "Giao Hàng Tiết Kiệm"
        case .viettelPost: "Viettel Post"
        case .jtExpress: "J&T Express"
        case .ninjaVan: "Ninja Van"
        case .vnpost: "VNPost"
        case .bestExpress: "BEST Express"
        }
    }

    /// The carrier's tracking page with `code` in it, or its bare page.
    public func trackingURL(code: String) -> (url: String, codeInURL: Bool) {
        let c = code.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? code
        return switch self {
        case .ghn: ("https://donhang.ghn.vn/?order_code=\(c)", true)
        case .ghtk: ("https://i.ghtk.vn/\(c)", true)
        case .viettelPost: ("https://viettelpost.com.vn/tra-cuu-hanh-trinh-don/", false)
        case .jtExpress: ("https://jtexpress.vn/vi/tracking?type=track&billcode=\(c)", true)
        case .ninjaVan: ("https://www.ninjavan.co/vi-vn/tracking?id=\(c)", true)
        case .vnpost: ("https://vnpost.vn/vi-vn/dinh-vi/buu-pham?key=\(c)", true)
        case .bestExpress: ("https://best-inc.vn/track?bills=\(c)", true)
        }
    }

    /// A carrier as staff or other systems name it: "GHN", "ghtk", "J&T Express", "Viettel Post", "VN Post".
    public init?(named raw: String) {
        let key = VietnameseText.fold(raw).filter { $0.isLetter || $0.isNumber }
        let aliases: [String: Carrier] = [
            "ghn": .ghn, "giaohangnhanh": .ghn, "ghtk": .ghtk, "giaohangtietkiem": .ghtk,
            "viettelpost": .viettelPost, "vtp": .viettelPost, "jtexpress": .jtExpress, "jt": .jtExpress, "jandt": .jtExpress,
            "ninjavan": .ninjaVan, "vnpost": .vnpost, "vietnampost": .vnpost, "buudien": .vnpost, "bestexpress": .bestExpress, "best": .bestExpress,
        ]
        guard let carrier = aliases[String(key)] else { return nil }
        self = carrier
    }

    /// What a tracking code may be: 6 to 40 letters, digits, dots, dashes or underscores.
    public static func validTrackingCode(_ code: String) -> Bool {
        (6...40).contains(code.count) && code.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }
}
