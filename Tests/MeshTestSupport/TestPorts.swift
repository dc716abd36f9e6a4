import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A port for a server that a test must know before the server binds it (a server started
/// again on the same port; peers told each other's addresses). Servers that can report the
/// port they were given bind port 0 instead: the kernel then picks one nobody holds, atomically.
///
/// The port lies below the kernel's ephemeral range, so no outgoing connection is ever given it,
/// and it stays held by a bound socket with SO_REUSEADDR until `release()`: our servers set
/// SO_REUSEADDR too and can bind and listen on it while it is held; no other bind can take it.
public final class PortHold: @unchecked Sendable {
    // Written in init and release only; tests call release once, after their servers bound.
    private var fd: Int32
    public let port: Int

    public init() throws {
        let high = min(Self.ephemeralLow(), 32768)
        let low = max(1024, high - 12000)
        for _ in 0..<200 {
            let port = Int.random(in: low..<high)
            // An exclusive bind first: it fails while anyone (another hold included) has the port.
            guard Self.bind(port, reuse: false).map({ close($0) }) != nil else { continue }
            if let fd = Self.bind(port, reuse: true) {
                self.fd = fd
                self.port = port
                return
            }
        }
        throw POSIXError(.EADDRINUSE)
    }

    public func release() {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    deinit { release() }

    static func ephemeralLow() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
              let first = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first, let low = Int(first) else { return 32768 }
        return low
    }

    private static func bind(_ port: Int, reuse: Bool) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var one: Int32 = 1
        if reuse { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        if !bound {
            close(fd)
            return nil
        }
        return fd
    }
}
