import NIOCore
import NIOPosix
import Synchronization

/// A TCP relay in front of a server whose link the test can cut: once cut, bytes in
/// both directions are dropped and nothing is closed or refused — what a pulled cable or
/// a dropped veth looks like to both ends.
final class CutLinkProxy: Sendable {
    private let listener: any Channel
    let address: String

    init(to target: String) async throws {
        let parts = target.split(separator: ":")
        let host = String(parts[0])
        let port = Int(parts[1])!
        let flag = CutFlag()
        self.flag = flag
        listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            // Nothing is read from the client until its relay is in place, or early bytes (the
            // HTTP/2 preface) would fall off the end of the pipeline.
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                ClientBootstrap(group: inbound.eventLoop)
                    .channelInitializer { outbound in
                        outbound.pipeline.addHandler(Relay(peer: inbound, flag: flag))
                    }
                    .connect(host: host, port: port)
                    .flatMap { outbound in inbound.pipeline.addHandler(Relay(peer: outbound, flag: flag)) }
                    .flatMap { inbound.setOption(.autoRead, value: true) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        address = "127.0.0.1:\(listener.localAddress!.port!)"
    }

    let flag: CutFlag

    func cutLink() { flag.cut.store(true, ordering: .relaxed) }

    func close() async {
        try? await listener.close()
    }

    final class CutFlag: Sendable {
        let cut = Atomic<Bool>(false)
    }

    final class Relay: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let peer: any Channel
        let flag: CutFlag

        init(peer: any Channel, flag: CutFlag) {
            self.peer = peer
            self.flag = flag
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !flag.cut.load(ordering: .relaxed) else { return }
            peer.writeAndFlush(unwrapInboundIn(data), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            if !flag.cut.load(ordering: .relaxed) { peer.close(promise: nil) }
        }
    }
}
