import ChatMeshAPI
import Foundation
import Messaging
@testable import MessagingDelivery
import Testing

/// The SMTP adapter against a real SMTP server (Python's aiosmtpd, started per test).
@Suite struct SMTPAdapterTests {
    final class SMTPSink {
        let process = Process()
        let port: Int
        let file: URL

        init() throws {
            file = FileManager.default.temporaryDirectory.appendingPathComponent("smtp-\(UUID().uuidString).jsonl")
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("smtp_sink.py")
            let out = Pipe()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", script.path, file.path]
            process.standardOutput = out
            try process.run()
            let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let port = Int(line) else { throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "smtp_sink.py printed \(line)"]) }
            self.port = port
        }

        var received: [[String: Any]] {
            guard let text = try? String(contentsOf: file, encoding: .utf8) else { return [] }
            return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }

        func stop() {
            // Polled rather than waitUntilExit(), which waits on a run loop that async tests do not run.
            process.terminate()
            for _ in 0..<500 where process.isRunning { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            try? FileManager.default.removeItem(at: file)
        }
    }

    static func mail(to recipient: String, id: String = "msg_mail1") -> Delivery {
        var delivery = Delivery(messageId: id, channel: .email, recipient: recipient, text: "Chào Hoa,\n.đơn DH1 đã giao.\nCảm ơn bạn!")
        delivery.subject = "Đơn hàng đã giao"
        return delivery
    }

    @Test func aMessageArrivesWholeWithItsHeaders() async throws {
        let sink = try SMTPSink()
        defer { sink.stop() }
        let adapter = SMTPAdapter(.init(host: "127.0.0.1", port: sink.port, username: "shop", password: "secret", from: "shop@hoamai.vn"))
        guard case .delivered = await adapter.deliver(Self.mail(to: "hoa@example.vn")) else {
            Issue.record("the server accepted nothing")
            return
        }
        let message = try #require(sink.received.first)
        #expect(message["from"] as? String == "shop@hoamai.vn")
        #expect(message["to"] as? [String] == ["hoa@example.vn"])
        #expect(message["login"] as? String == "shop")
        let data = try #require(message["data"] as? String)
        #expect(data.contains("Subject: =?UTF-8?B?\(Data("Đơn hàng đã giao".utf8).base64EncodedString())?="))
        #expect(data.contains("Content-Type: text/plain; charset=utf-8"))
        #expect(data.contains("Message-ID: <msg_mail1@chatmesh>"))
        let body = data.components(separatedBy: "\r\n\r\n").dropFirst().joined().replacingOccurrences(of: "\r\n", with: "").replacingOccurrences(of: "\n", with: "")
        #expect(String(decoding: Data(base64Encoded: body) ?? Data(), as: UTF8.self) == "Chào Hoa,\n.đơn DH1 đã giao.\nCảm ơn bạn!")
    }

    @Test func refusalsAreForGoodAndDeferralsAreTemporary() async throws {
        let sink = try SMTPSink()
        defer { sink.stop() }
        let adapter = SMTPAdapter(.init(host: "127.0.0.1", port: sink.port, from: "shop@hoamai.vn"))
        guard case .rejected(_, let rejected) = await adapter.deliver(Self.mail(to: "reject@example.vn")) else {
            Issue.record("550 should be for good")
            return
        }
        #expect(rejected.contains("550"))
        guard case .failedTemporarily(let busy) = await adapter.deliver(Self.mail(to: "busy@example.vn")) else {
            Issue.record("451 should be temporary")
            return
        }
        #expect(busy.contains("451"))
        #expect(sink.received.isEmpty)
    }

    @Test func aServerThatIsDownIsTemporary() async {
        let adapter = SMTPAdapter(.init(host: "127.0.0.1", port: 1, from: "shop@hoamai.vn", timeout: .seconds(2)))
        guard case .failedTemporarily = await adapter.deliver(Self.mail(to: "hoa@example.vn")) else {
            Issue.record("connection refused is worth retrying")
            return
        }
    }
}
