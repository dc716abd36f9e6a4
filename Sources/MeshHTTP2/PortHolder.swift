import Foundation

#if canImport(Glibc)
import Glibc
import MeshRPC
#endif

/// Who holds a local TCP port, read from Linux's /proc: what a failed bind
/// ("Address already in use") should tell an operator. The mesh's default ports
/// (50050–50054) lie inside Linux's usual ephemeral range, so the holder is often
/// not a server at all but some program's outgoing connection.
public struct PortHolder: Sendable, Equatable, CustomStringConvertible {
    /// What the socket holding the port is doing.
    public enum Kind: Sendable, Equatable {
        case listener
        /// An outgoing or accepted connection using the port as its local end.
        case connection(remote: String, state: String)
    }

    public let local: String
    public let kind: Kind
    /// nil when no process owns the socket any more (a connection waiting out TIME_WAIT)
    /// or when /proc does not let us see it.
    public let pid: Int32?
    public let command: String?

    public var description: String {
        let owner = pid.map { "pid \($0) (\(command ?? "?"))" } ?? "no process (kernel)"
        switch kind {
        case .listener:
            return "\(owner) listening on \(local)"
        case .connection(let remote, let state):
            return "\(owner): a connection from \(local) to \(remote) (\(state))"
        }
    }

    /// Every socket whose local end is `port`, with the process that owns it where one does.
    public static func holding(port: Int, proc: String = "/proc") -> [PortHolder] {
        var sockets: [(local: String, remote: String, state: String, inode: UInt64)] = []
        for table in ["net/tcp", "net/tcp6"] {
            guard let text = readWhole("\(proc)/\(table)") else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count >= 10,
                      let local = Endpoint(hex: fields[1]), local.port == port,
                      let remote = Endpoint(hex: fields[2]),
                      let state = UInt8(fields[3], radix: 16),
                      let inode = UInt64(fields[9]) else { continue }
                sockets.append((local.description, remote.description, stateName(state), inode))
            }
        }
        if sockets.isEmpty { return [] }
        let owners = socketOwners(inodes: Set(sockets.map(\.inode).filter { $0 != 0 }), proc: proc)
        return sockets.map { socket in
            let owner = owners[socket.inode]
            let kind: Kind = socket.state == "LISTEN" ? .listener : .connection(remote: socket.remote, state: socket.state)
            return PortHolder(local: socket.local, kind: kind, pid: owner?.pid, command: owner?.command)
        }
    }

    /// Whether a listener could bind `host:port` now (IPv4 addresses; as our servers bind, with
    /// SO_REUSEADDR, so a connection of an earlier run waiting out TIME_WAIT does not count).
    public static func canListen(host: String, port: Int) -> Bool {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return true }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return true }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// One sentence for an operator whose bind failed.
    public static func explain(host: String, port: Int, proc: String = "/proc") -> String {
        let holders = holding(port: port, proc: proc)
        var text = "\(host):\(port) is already in use (Address already in use)"
        if holders.isEmpty {
            text += "; no holder is visible in /proc"
        } else {
            text += ": held by " + holders.prefix(3).map(\.description).joined(separator: "; ")
            if holders.count > 3 { text += "; and \(holders.count - 3) more sockets" }
        }
        if holders.contains(where: { if case .connection = $0.kind { true } else { false } }) {
            // The defaults are reserved together; any other port the mesh listens on, by itself.
            let defaults = MeshEnvironment.defaultPorts.values
            let ports = defaults.contains(port) ? "\(defaults.min()!)-\(defaults.max()!)" : "\(port)"
            text += ". The port lies in the range the kernel gives outgoing connections: reserve the ports the mesh"
                + " listens on (sysctl -w net.ipv4.ip_local_reserved_ports=\(ports), added to any reserved already; README, Configuration)"
        }
        return text
    }

    private struct Endpoint: CustomStringConvertible {
        let address: String
        let port: Int
        var description: String { "\(address):\(port)" }

        /// "0100007F:C383" (IPv4) or 32 hex digits (IPv6): the address as the kernel's
        /// 32-bit words printed in host order (little-endian on every machine we run on).
        init?(hex: Substring) {
            let parts = hex.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1], radix: 16) else { return nil }
            let digits = Array(parts[0].utf8)
            var bytes: [UInt8] = []
            for word in stride(from: 0, to: digits.count, by: 8) {
                guard word + 8 <= digits.count,
                      let value = UInt32(String(decoding: digits[word..<word + 8], as: UTF8.self), radix: 16) else { return nil }
                bytes += [UInt8(value & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value >> 16 & 0xFF), UInt8(value >> 24)]
            }
            switch bytes.count {
            case 4:
                address = bytes.map(String.init).joined(separator: ".")
            case 16:
                if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
                    address = bytes[12...].map(String.init).joined(separator: ".")
                } else {
                    address = "[" + stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
                        .joined(separator: ":") + "]"
                }
            default:
                return nil
            }
            self.port = port
        }
    }

    /// A /proc file to its end. They report a size of 0 and come a page or so per read: reading
    /// "the file's size" or once gets the first few dozen sockets of a busy machine, not all.
    private static func readWhole(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func stateName(_ state: UInt8) -> String {
        let names = [1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
                     7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"]
        return names[Int(state)] ?? "state \(state)"
    }

    /// Which process has each socket open: /proc/PID/fd/N links read "socket:[INODE]".
    private static func socketOwners(inodes: Set<UInt64>, proc: String) -> [UInt64: (pid: Int32, command: String)] {
        guard !inodes.isEmpty, let entries = try? FileManager.default.contentsOfDirectory(atPath: proc) else { return [:] }
        var owners: [UInt64: (pid: Int32, command: String)] = [:]
        for entry in entries {
            guard let pid = Int32(entry) else { continue }
            guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "\(proc)/\(entry)/fd") else { continue }
            for fd in fds {
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(proc)/\(entry)/fd/\(fd)"),
                      target.hasPrefix("socket:["), target.hasSuffix("]"),
                      let inode = UInt64(target.dropFirst(8).dropLast()), inodes.contains(inode), owners[inode] == nil else { continue }
                let command = readWhole("\(proc)/\(entry)/comm")?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
                owners[inode] = (pid, command)
            }
            if owners.count == inodes.count { break }
        }
        return owners
    }
}
