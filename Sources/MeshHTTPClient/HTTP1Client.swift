import Foundation
import MeshTracing
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// The HTTP/1.1 the providers' APIs speak (Zalo, Facebook Graph, SMS
/// gateways): one request per connection, TLS for https, a time-out over the
/// whole exchange, the answer read whole (capped, a provider's answers are small).
public struct HTTP1Client: Sendable {
    /// An HTTP/1.1 response: status, headers, body.
    public struct Response: Sendable {
        public let status: Int
        public let headers: [(String, String)]
        public let body: [UInt8]

        /// The first value of header `name`, case ignored.
        public func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }

        /// How long the API asked to be left alone: Retry-After (seconds), else the Facebook Graph
        /// API's `estimated_time_to_regain_access` (minutes) in X-Business-Use-Case-Usage; 0 when
        /// neither says. Capped at a day.
        public var retryAfterMs: Int64 {
            if let text = header("Retry-After"), let seconds = Int64(text.trimmingCharacters(in: .whitespaces)), seconds >= 0 {
                return min(seconds, 86_400) * 1000
            }
            if let usage = header("X-Business-Use-Case-Usage"),
               let json = (try? JSONSerialization.jsonObject(with: Data(usage.utf8))) as? [String: Any] {
                let minutes = json.values.compactMap { $0 as? [[String: Any]] }.joined().compactMap { $0["estimated_time_to_regain_access"] as? Int }.max() ?? 0
                return Int64(min(minutes, 1440)) * 60_000
            }
            return 0
        }
    }

    /// Why no response came.
    public enum Failure: Error, CustomStringConvertible {
        case badURL(String)
        case timedOut(seconds: Int64)
        case connection(String)
        case tooLarge

        public var description: String {
            switch self {
            case .badURL(let url): "not an http(s) URL: \(url)"
            case .timedOut(let seconds): "no answer within \(seconds) s"
            case .connection(let why): "connection failed: \(why)"
            case .tooLarge: "answer larger than 1 MiB"
            }
        }
    }

    static let maxResponseBytes = 1 << 20
    let group: any EventLoopGroup
    let tls: NIOSSLContext?

    public init(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.group = group
        // The system's trust roots; a context that cannot be made leaves https refused with the reason.
        self.tls = try? NIOSSLContext(configuration: .makeClientConfiguration())
    }

    /// One request on a fresh connection, with a time-out for the whole exchange.
    public func send(
        method: HTTPMethod, url: URL, headers: [(String, String)] = [], body: [UInt8] = [], timeout: TimeAmount = .seconds(10)
    ) async throws -> Response {
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty else {
            throw Failure.badURL(url.absoluteString)
        }
        let secure = scheme == "https"
        let port = url.port ?? (secure ? 443 : 80)
        var target = url.path.isEmpty ? "/" : url.path
        if let query = url.query { target += "?" + query }
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: target)
        head.headers.add(name: "Host", value: url.port.map { "\(host):\($0)" } ?? host)
        head.headers.add(name: "Content-Length", value: "\(body.count)")
        head.headers.add(name: "Connection", value: "close")
        head.headers.add(name: "User-Agent", value: "ChatMesh/1")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        // A traced call's context goes with it (W3C traceparent), for a provider that traces too.
        if RPCTracing.isEnabled {
            var trace: [(String, String)] = []
            RPCTracing.inject(into: &trace)
            for (name, value) in trace { head.headers.replaceOrAdd(name: name, value: value) }
        }
        let tls = self.tls
        if secure && tls == nil { throw Failure.connection("TLS is not available on this machine") }

        let loop = group.next()
        let promise = loop.makePromise(of: Response.self)
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if secure, let tls {
                        let handler = try NIOSSLClientHandler(context: tls, serverHostname: host)
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            promise.fail(error)
            throw Failure.connection("\(host):\(port): \(error)")
        }
        let timer = loop.scheduleTask(in: timeout) {
            promise.fail(Failure.timedOut(seconds: timeout.nanoseconds / 1_000_000_000))
            channel.close(promise: nil)
        }
        var buffer = channel.allocator.buffer(capacity: body.count)
        buffer.writeBytes(body)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        return try await promise.futureResult.get()
    }
}

/// Gathers one response; fails the promise if the connection ends first.
final class ResponseCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    let promise: EventLoopPromise<HTTP1Client.Response>
    var head: HTTPResponseHead?
    var body: [UInt8] = []

    init(promise: EventLoopPromise<HTTP1Client.Response>) {
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body(var buffer):
            if body.count + buffer.readableBytes > HTTP1Client.maxResponseBytes {
                promise.fail(HTTP1Client.Failure.tooLarge)
                context.close(promise: nil)
                return
            }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            if let head {
                promise.succeed(HTTP1Client.Response(status: Int(head.status.code), headers: head.headers.map { ($0.name, $0.value) }, body: body))
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(HTTP1Client.Failure.connection("closed before a full answer"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(HTTP1Client.Failure.connection("\(error)"))
        context.close(promise: nil)
    }
}
