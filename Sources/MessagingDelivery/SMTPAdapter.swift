import ChatMeshAPI
import Foundation
import MeshRPC
import Messaging
import NIOCore
import NIOPosix
import NIOSSL

/// E-mail over SMTP (RFC 5321): EHLO, AUTH PLAIN when credentials are set,
/// MAIL FROM, RCPT TO, DATA with a UTF-8 text/plain message (RFC 5322 + MIME,
/// base64 body, encoded-word subject), QUIT. TLS is implicit (SMTPS, port
/// 465) when `implicitTLS` is set. Replies 4xx are temporary, 5xx for good.
public struct SMTPAdapter: DeliveryAdapter {
    public var name: String { "smtp" }

    /// The SMTP server and its sender (CHATMESH_SMTP_*).
    public struct Config: Sendable {
        public var host: String
        public var port: Int
        public var implicitTLS: Bool
        public var username: String?
        public var password: String?
        /// The envelope and header sender, e.g. "shop@example.vn".
        public var from: String
        public var heloName: String
        public var timeout: TimeAmount

        public init(
            host: String, port: Int, implicitTLS: Bool = false, username: String? = nil, password: String? = nil, from: String,
            heloName: String = "chatmesh.local", timeout: TimeAmount = .seconds(15)
        ) {
            self.host = host
            self.port = port
            self.implicitTLS = implicitTLS
            self.username = username
            self.password = password
            self.from = from
            self.heloName = heloName
            self.timeout = timeout
        }
    }

    let config: Config

    public init(_ config: Config) {
        self.config = config
    }

    struct Reply: Error {
        let code: Int
        let text: String
    }

    enum Failure: Error, CustomStringConvertible {
        case closed, timedOut, malformed(String)

        var description: String {
            switch self {
            case .closed: "the SMTP server closed the connection"
            case .timedOut: "the SMTP server did not answer in time"
            case .malformed(let line): "not an SMTP reply: \(line)"
            }
        }
    }

    public func deliver(_ delivery: Delivery) async -> DeliveryOutcome {
        do {
            return try await withThrowingTaskGroup(of: DeliveryOutcome.self) { group in
                group.addTask { try await self.converse(delivery) }
                group.addTask {
                    try await Task.sleep(nanoseconds: UInt64(config.timeout.nanoseconds))
                    throw Failure.timedOut
                }
                let first = try await group.next()!
                group.cancelAll()
                return first
            }
        } catch let reply as Reply {
            let message = "the mail server answered \(reply.code) \(reply.text)"
            return (400..<500).contains(reply.code) ? .failedTemporarily(message: message) : .rejected(code: .failedPrecondition, message: "recipient: " + message)
        } catch {
            return .failedTemporarily(message: "\(error)")
        }
    }

    func converse(_ delivery: Delivery) async throws -> DeliveryOutcome {
        let tlsContext = config.implicitTLS ? try NIOSSLContext(configuration: .makeClientConfiguration()) : nil
        let host = config.host
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(config.timeout)
            .connect(host: config.host, port: config.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tlsContext {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tlsContext, serverHostname: host))
                    }
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var reader = ReplyReader(iterator: inbound.makeAsyncIterator())
            func command(_ line: String?, expect: ClosedRange<Int>) async throws -> Reply {
                if let line {
                    try await outbound.write(ByteBuffer(string: line + "\r\n"))
                }
                let reply = try await reader.next()
                guard expect.contains(reply.code) else { throw reply }
                return reply
            }
            _ = try await command(nil, expect: 220...220)
            _ = try await command("EHLO \(config.heloName)", expect: 250...250)
            if let username = config.username, let password = config.password {
                let token = Data("\u{0}\(username)\u{0}\(password)".utf8).base64EncodedString()
                _ = try await command("AUTH PLAIN \(token)", expect: 235...235)
            }
            _ = try await command("MAIL FROM:<\(config.from)>", expect: 250...250)
            _ = try await command("RCPT TO:<\(delivery.recipient)>", expect: 250...251)
            _ = try await command("DATA", expect: 354...354)
            let accepted = try await command(Self.message(delivery, from: config.from) + "\r\n.", expect: 250...250)
            _ = try? await command("QUIT", expect: 221...221)
            return .delivered(providerId: accepted.text)
        }
    }

    /// The message as DATA carries it: headers, a blank line, the base64 body,
    /// lines joined by CRLF and dot-stuffed (a line starting with "." gets another).
    static func message(_ delivery: Delivery, from: String) -> String {
        let subject = delivery.subject.isEmpty ? String(delivery.text.prefix(60)) : delivery.subject
        let encodedSubject = "=?UTF-8?B?\(Data(subject.utf8).base64EncodedString())?="
        let body = Data(delivery.text.utf8).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed])
        let date = Self.rfc5322Date(Date())
        let lines = [
            "From: <\(from)>", "To: <\(delivery.recipient)>", "Subject: \(encodedSubject)", "Date: \(date)",
            "Message-ID: <\(delivery.messageId)@chatmesh>", "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: base64", "",
        ] + body.components(separatedBy: "\r\n")
        return lines.map { $0.hasPrefix(".") ? "." + $0 : $0 }.joined(separator: "\r\n")
    }

    static func rfc5322Date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(secondsFromGMT: 7 * 3600)
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        return formatter.string(from: date)
    }

    /// Reads replies, joining the lines of a multi-line one ("250-…" … "250 …").
    struct ReplyReader {
        var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
        var pending = ""

        mutating func line() async throws -> String {
            while true {
                if let range = pending.range(of: "\r\n") {
                    let line = String(pending[..<range.lowerBound])
                    pending = String(pending[range.upperBound...])
                    return line
                }
                guard var chunk = try await iterator.next() else { throw Failure.closed }
                pending += chunk.readString(length: chunk.readableBytes) ?? ""
                if pending.utf8.count > 64 * 1024 { throw Failure.malformed(String(pending.prefix(80))) }
            }
        }

        mutating func next() async throws -> Reply {
            var texts: [String] = []
            while true {
                let line = try await line()
                guard line.utf8.count >= 3, let code = Int(line.prefix(3)) else { throw Failure.malformed(line) }
                let rest = line.dropFirst(3)
                texts.append(String(rest.dropFirst()))
                if rest.first != "-" { return Reply(code: code, text: texts.joined(separator: " ")) }
            }
        }
    }
}
