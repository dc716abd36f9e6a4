import MeshHTTP2
import MeshTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct PortHolderTests {
    @Test func aSecondServerOnATakenPortNamesTheListenerThatHoldsIt() async throws {
        let hold = try PortHold()
        defer { hold.release() }
        let (server, _) = try await Mesh.server([ProbeService(name: "first")], port: hold.port)
        #expect(!PortHolder.canListen(host: "127.0.0.1", port: hold.port))
        #expect(PortHolder.holding(port: hold.port).contains { $0.kind == .listener && $0.pid == getpid() && $0.local == "127.0.0.1:\(hold.port)" })
        do {
            let (second, _) = try await Mesh.server([ProbeService(name: "second")], port: hold.port)
            await second.shutdownGracefully()
            Issue.record("two servers listened on one port")
        } catch let error as AddressInUse {
            #expect(error.message.hasPrefix("127.0.0.1:\(hold.port) is already in use (Address already in use): held by pid \(getpid()) ("), "\(error)")
            #expect(error.message.contains("listening on 127.0.0.1:\(hold.port)"), "\(error)")
        }
        await server.shutdownGracefully()
        #expect(PortHolder.canListen(host: "127.0.0.1", port: hold.port))
        #expect(PortHolder.holding(port: hold.port).allSatisfy { $0.kind != .listener })
    }
}

/// Loopback sockets made with the C API, closed with a reset so that none lingers in TIME_WAIT.
private enum LoopbackSocket {
    static func address(_ port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
        return address
    }

    static func call(_ fd: Int32, _ port: Int, _ body: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Bool {
        var address = address(port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    static func make() -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        return fd
    }

    static func listener() -> (fd: Int32, port: Int) {
        let fd = make()
        _ = call(fd, 0) { bind($0, $1, $2) }
        listen(fd, 1024)
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }
}

extension PortHolderTests {
    /// An outgoing connection using the port, found among hundreds of others: /proc/net/tcp is then
    /// tens of kilobytes, read a page at a time (a single read saw only its first sockets).
    @Test func aConnectionFromThePortIsFoundAmongHundreds() async throws {
        let (listener, listenerPort) = LoopbackSocket.listener()
        var sockets = [listener]
        defer { for fd in sockets { close(fd) } }
        for _ in 0..<400 {
            let fd = LoopbackSocket.make()
            sockets.append(fd)
            #expect(LoopbackSocket.call(fd, listenerPort) { connect($0, $1, $2) })
        }
        let hold = try PortHold()
        hold.release()  // the test's own connection takes the port, as the kernel would give it to one
        let client = LoopbackSocket.make()
        sockets.append(client)
        #expect(LoopbackSocket.call(client, hold.port) { bind($0, $1, $2) })
        #expect(LoopbackSocket.call(client, listenerPort) { connect($0, $1, $2) })

        let holders = PortHolder.holding(port: hold.port)
        #expect(holders.map(\.description) == ["pid \(getpid()) (\(holders.first?.command ?? "")): a connection from 127.0.0.1:\(hold.port) to 127.0.0.1:\(listenerPort) (ESTABLISHED)"])
        #expect(!PortHolder.canListen(host: "127.0.0.1", port: hold.port))
        #expect(PortHolder.explain(host: "127.0.0.1", port: hold.port).contains("net.ipv4.ip_local_reserved_ports"))
    }
}
