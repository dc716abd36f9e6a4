import Foundation

/// gRPC's message encodings (`grpc-encoding` / `grpc-accept-encoding`). "deflate" is the
/// zlib format, as in HTTP; identity is always accepted.
public enum MessageEncoding: String, Sendable, Hashable, CaseIterable {
    case identity, gzip, deflate

    /// What a ChatMesh peer accepts, for `grpc-accept-encoding`.
    public static let acceptHeader = "gzip, deflate, identity"

    /// The encodings an `grpc-accept-encoding` value names that this runtime speaks.
    public static func accepted(_ header: String) -> Set<MessageEncoding> {
        var set: Set<MessageEncoding> = [.identity]
        for part in header.split(separator: ",") {
            let name = part.trimmingCharacters(in: .whitespaces).lowercased()
            if let encoding = MessageEncoding(rawValue: name) { set.insert(encoding) }
        }
        return set
    }
}
