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
