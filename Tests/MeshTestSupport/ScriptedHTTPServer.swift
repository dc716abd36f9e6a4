import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A provider's HTTP endpoint on 127.0.0.1 for tests: records every request
/// and answers from a script (status, headers, body), or not at all.
public final class ScriptedHTTPServer: Sendable {
    public struct Recorded: Sendable {
        public let method: String
        public let uri: String
        public let headers: [(String, String)]
        public let body: [UInt8]

        public func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
        public var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]) ?? [:] }
    }

    public enum Answer: Sendable {
        case reply(status: Int, headers: [(String, String)], body: String)
        /// Never answers: the client's time-out must fire.
        case silence
    }

    private let state = NIOLockedValueBox<(requests: [Recorded], script: [Answer])>(([], []))
    private let channel: any Channel
    public let port: Int

    public static func start() async throws -> ScriptedHTTPServer {
        let box = NIOLockedValueBox<ScriptedHTTPServer?>(nil)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.configureHTTPServerPipeline()
                    try child.pipeline.syncOperations.addHandler(Handler(server: { box.withLockedValue { $0! } }))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let server = ScriptedHTTPServer(channel: channel)
        box.withLockedValue { $0 = server }
        return server
    }

    private init(channel: any Channel) {
        self.channel = channel
        self.port = channel.localAddress!.port!
    }

    public var url: URL { URL(string: "http://127.0.0.1:\(port)")! }
    public var requests: [Recorded] { state.withLockedValue { $0.requests } }

    public func answer(_ answers: Answer...) {
        state.withLockedValue { $0.script += answers }
    }

    public func json(_ status: Int = 200, _ body: String, headers: [(String, String)] = []) {
        answer(.reply(status: status, headers: [("Content-Type", "application/json")] + headers, body: body))
    }

    fileprivate func take(_ request: Recorded) -> Answer {
        state.withLockedValue { state in
            state.requests.append(request)
            return state.script.isEmpty ? .reply(status: 500, headers: [], body: "no script") : state.script.removeFirst()
        }
    }

    public func stop() async throws {
        try await channel.close()
    }

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let server: () -> ScriptedHTTPServer
        var head: HTTPRequestHead?
        var body: [UInt8] = []

        init(server: @escaping () -> ScriptedHTTPServer) {
            self.server = server
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                self.head = head
                body = []
            case .body(var buffer):
                body += buffer.readBytes(length: buffer.readableBytes) ?? []
            case .end:
                guard let head else { return }
                let recorded = Recorded(method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) }, body: body)
                switch server().take(recorded) {
                case .silence:
                    return
                case .reply(let status, let headers, let text):
                    var responseHead = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status))
                    for (name, value) in headers { responseHead.headers.add(name: name, value: value) }
                    responseHead.headers.add(name: "Content-Length", value: "\(text.utf8.count)")
                    context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
                    context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: text)))), promise: nil)
                    context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                }
            }
        }
    }
}
