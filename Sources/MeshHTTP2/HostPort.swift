import MeshRPC

/// "host:port" as CHATMESH_LISTEN and CHATMESH_<SERVICE>_ADDRS write it; IPv6 hosts in brackets.
public struct HostPort: Sendable {
    public let host: String
    public let port: Int

    public init(_ text: String) throws(ConfigurationError) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
            throw ConfigurationError("address '\(text)' is not host:port")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host
        self.port = port
    }
}
