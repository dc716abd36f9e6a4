import ArgumentParser
import ChatMeshAPI
import Foundation
import MeshHTTP2
import MeshRPC
import NIOCore

/// grpc's interop client cases (doc/interop-test-descriptions.md in grpc/grpc) made with ChatMesh's
/// own client (`HTTP2Channel` and the generated `InteropTestService.Client`), against any interop
/// server: grpc C++'s (Benchmarks/grpc-cpp/interop), ChatMesh's `interop-server`, another language's. Exits 0
/// when the case passed; otherwise prints what differed and exits 1.
struct InteropClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "interop-client",
        abstract: "Run one of grpc's interop test cases against a grpc.testing.TestService server."
    )

    @Option(name: .customLong("server_host"), help: "Server host.")
    var serverHost = "127.0.0.1"

    @Option(name: .customLong("server_port"), help: "Server port.")
    var serverPort: Int

    @Option(name: .customLong("test_case"), help: "The case, e.g. large_unary (all: every case this client runs).")
    var testCase: String

    func run() async throws {
        let channel = try HTTP2Channel(addresses: "\(serverHost):\(serverPort)", config: HTTP2Channel.Config(env: MeshEnvironment([:])))
        let cases = InteropCases(channel: channel)
        let names = testCase == "all" ? InteropCases.names : [testCase]
        var failed = false
        for name in names {
            do {
                try await cases.run(name)
                print("\(name): passed")
            } catch {
                print("\(name): FAILED: \(error)")
                failed = true
            }
        }
        await channel.close()
        if failed { throw ExitCode(1) }
    }
}

struct CaseFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func check(_ condition: Bool, _ what: @autoclosure () -> String) throws {
    if !condition { throw CaseFailure(what()) }
}

func zeros(_ n: Int) -> InteropPayload {
    InteropPayload(type: .compressable, body: [UInt8](repeating: 0, count: n))
}

/// Expects the body to fail with `code`.
func expectStatus(_ code: RPCError.Code, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as RPCError {
        try check(error.code == code, "expected \(code.name), got \(error.code.name): \(error.message)")
        return
    }
    throw CaseFailure("expected \(code.name), the call succeeded")
}

struct InteropCases {
    let channel: HTTP2Channel

    static let names = [
        "empty_unary", "large_unary", "client_compressed_unary", "server_compressed_unary", "client_streaming",
        "client_compressed_streaming", "server_streaming", "server_compressed_streaming", "ping_pong", "empty_stream",
        "timeout_on_sleeping_server", "cancel_after_begin", "cancel_after_first_response", "custom_metadata",
        "status_code_and_message", "special_status_message", "unimplemented_method", "unimplemented_service",
    ]

    var client: InteropTestService.Client {
        InteropTestService.Client(channel: channel, defaultOptions: CallOptions(timeout: .seconds(30)))
    }

    func run(_ name: String) async throws {
        switch name {
        case "empty_unary":
            _ = try await client.emptyCall(InteropEmpty())
        case "large_unary":
            let response = try await client.unaryCall(InteropSimpleRequest(responseSize: 314159, payload: zeros(271828)))
            try check(response.payload?.body == [UInt8](repeating: 0, count: 314159), "payload of \(response.payload?.body.count ?? -1) bytes")
        case "client_compressed_unary":
            // The probe: a request that claims compression without it is refused by a server that checks.
            try await expectStatus(.invalidArgument) {
                _ = try await client.unaryCall(InteropSimpleRequest(responseSize: 314159, payload: zeros(271828), expectCompressed: InteropBoolValue(value: true)))
            }
            for (compressed, options) in [(true, CallOptions(timeout: .seconds(30), compression: .gzip)), (false, CallOptions(timeout: .seconds(30)))] {
                let request = InteropSimpleRequest(responseSize: 314159, payload: zeros(271828), expectCompressed: InteropBoolValue(value: compressed))
                let response = try await client.unaryCall(request, options: options)
                try check(response.payload?.body.count == 314159, "payload of \(response.payload?.body.count ?? -1) bytes")
            }
        case "server_compressed_unary":
            for compressed in [true, false] {
                let request = InteropSimpleRequest(responseSize: 314159, payload: zeros(271828), responseCompressed: InteropBoolValue(value: compressed))
                let response = try await client.unaryCall(request)
                try check(response.payload?.body == [UInt8](repeating: 0, count: 314159), "payload of \(response.payload?.body.count ?? -1) bytes")
            }
        case "client_streaming":
            let response = try await client.streamingInputCall { requests in
                for n in [27182, 8, 1828, 45904] {
                    try await requests.write(InteropStreamingInputCallRequest(payload: zeros(n)))
                }
            }
            try check(response.aggregatedPayloadSize == 74922, "aggregated \(response.aggregatedPayloadSize)")
        case "client_compressed_streaming":
            try await expectStatus(.invalidArgument) {
                _ = try await client.streamingInputCall { requests in
                    try await requests.write(InteropStreamingInputCallRequest(payload: zeros(27182), expectCompressed: InteropBoolValue(value: true)))
                }
            }
            let response = try await client.streamingInputCall(options: CallOptions(timeout: .seconds(30), compression: .gzip)) { requests in
                for n in [27182, 45904] {
                    try await requests.write(InteropStreamingInputCallRequest(payload: zeros(n), expectCompressed: InteropBoolValue(value: true)))
                }
            }
            try check(response.aggregatedPayloadSize == 73086, "aggregated \(response.aggregatedPayloadSize)")
        case "server_streaming", "server_compressed_streaming":
            let compressed = name == "server_compressed_streaming"
            let sizes: [Int32] = compressed ? [31415, 92653] : [31415, 9, 2653, 58979]
            let parameters = sizes.enumerated().map { i, size in
                InteropResponseParameters(size: size, compressed: compressed ? InteropBoolValue(value: i == 0) : nil)
            }
            let received = try await client.streamingOutputCall(InteropStreamingOutputCallRequest(responseParameters: parameters)) { responses in
                var received: [Int32] = []
                for try await response in responses { received.append(Int32(response.payload?.body.count ?? -1)) }
                return received
            }
            try check(received == sizes, "response sizes \(received)")
        case "ping_pong":
            let pairs: [(Int32, Int)] = [(31415, 27182), (9, 8), (2653, 1828), (58979, 45904)]
            try await client.fullDuplexCall { call in
                var responses = call.responses.makeAsyncIterator()
                for (size, payload) in pairs {
                    try await call.send(InteropStreamingOutputCallRequest(responseParameters: [InteropResponseParameters(size: size)], payload: zeros(payload)))
                    let response = try await responses.next()
                    try check(response?.payload?.body.count == Int(size), "a response of \(response?.payload?.body.count ?? -1) bytes for \(size)")
                }
                call.finishSending()
                try check(try await responses.next() == nil, "a response after the last")
            }
        case "empty_stream":
            try await client.fullDuplexCall { call in
                call.finishSending()
                try check(try await call.responses.next() == nil, "a response to no request")
            }
        case "timeout_on_sleeping_server":
            try await expectStatus(.deadlineExceeded) {
                try await client.fullDuplexCall(options: CallOptions(timeout: .milliseconds(1))) { call in
                    try await call.send(InteropStreamingOutputCallRequest(payload: zeros(27182)))
                    for try await _ in call.responses {}
                }
            }
        case "cancel_after_begin":
            let stream = try await channel.openStream(ClientStreamHead(method: InteropTestService.Method.streamingInputCall, metadata: Metadata(), deadline: .now() + .seconds(30)))
            stream.cancel()
            try await expectStatus(.cancelled) { while try await stream.responses.next() != nil {} }
        case "cancel_after_first_response":
            let stream = try await channel.openStream(ClientStreamHead(method: InteropTestService.Method.fullDuplexCall, metadata: Metadata(), deadline: .now() + .seconds(30)))
            let call = RPCStreamingCall<InteropStreamingOutputCallRequest, InteropStreamingOutputCallResponse>(raw: stream)
            try await call.send(InteropStreamingOutputCallRequest(responseParameters: [InteropResponseParameters(size: 31415)], payload: zeros(27182)))
            let first = try await call.responses.next()
            try check(first?.payload?.body.count == 31415, "first response of \(first?.payload?.body.count ?? -1) bytes")
            stream.cancel()
            try await expectStatus(.cancelled) { while try await call.responses.next() != nil {} }
        case "custom_metadata":
            try await customMetadata()
        case "status_code_and_message", "special_status_message":
            let message = name == "status_code_and_message"
                ? "test status message" : "\t\ntest with whitespace\r\nand Unicode BMP \u{263A} and non-BMP \u{1F608}\t\n"
            let status = InteropEchoStatus(code: 2, message: message)
            do {
                _ = try await client.unaryCall(InteropSimpleRequest(responseStatus: status))
                throw CaseFailure("UnaryCall succeeded")
            } catch let error as RPCError {
                try check(error.code == .unknown && error.message == message, "UnaryCall: \(error.code.name) \(error.message.debugDescription)")
            }
            if name == "status_code_and_message" {
                do {
                    try await client.fullDuplexCall { call in
                        try await call.send(InteropStreamingOutputCallRequest(responseStatus: status))
                        call.finishSending()
                        for try await _ in call.responses {}
                    }
                    throw CaseFailure("FullDuplexCall succeeded")
                } catch let error as RPCError {
                    try check(error.code == .unknown && error.message == message, "FullDuplexCall: \(error.code.name) \(error.message.debugDescription)")
                }
            }
        case "unimplemented_method":
            try await expectStatus(.unimplemented) { _ = try await client.unimplementedCall(InteropEmpty()) }
        case "unimplemented_service":
            let other = InteropUnimplementedService.Client(channel: channel, defaultOptions: CallOptions(timeout: .seconds(30)))
            try await expectStatus(.unimplemented) { _ = try await other.unimplementedCall(InteropEmpty()) }
        default:
            throw CaseFailure("unknown test case \(name)")
        }
    }

    /// Initial metadata echoed in the headers, binary trailing metadata in the trailers, on a
    /// unary call (made as a stream to see both) and on a full-duplex one.
    private func customMetadata() async throws {
        var options = CallOptions(timeout: .seconds(30))
        options.metadata.add("x-grpc-test-echo-initial", "test_initial_metadata_value")
        options.metadata.add("x-grpc-test-echo-trailing-bin", Data([0xab, 0xab, 0xab]).base64EncodedString())
        for method in [InteropTestService.Method.unaryCall, InteropTestService.Method.fullDuplexCall] {
            try await channel.streaming(method, options: options) { (call: RPCStreamingCall<InteropStreamingOutputCallRequest, InteropStreamingOutputCallResponse>) in
                if method == InteropTestService.Method.unaryCall {
                    var bytes = ByteBuffer()
                    try InteropSimpleRequest(responseSize: 314159, payload: zeros(271828)).encode(into: &bytes)
                    try await call.raw.requests.write(bytes)
                } else {
                    try await call.send(InteropStreamingOutputCallRequest(responseParameters: [InteropResponseParameters(size: 314159)], payload: zeros(271828)))
                }
                call.finishSending()
                while try await call.raw.responses.next() != nil {}
                let initial = try await call.initialMetadata()
                try check(initial["x-grpc-test-echo-initial"] == "test_initial_metadata_value", "\(method.method): initial metadata \(Array(initial))")
                let trailing = call.trailingMetadata["x-grpc-test-echo-trailing-bin"].flatMap { Data(base64Encoded: Self.padded($0)) }
                try check(trailing == Data([0xab, 0xab, 0xab]), "\(method.method): trailing metadata \(Array(call.trailingMetadata))")
            }
        }
    }

    /// Binary metadata may come base64 without padding.
    static func padded(_ base64: String) -> String {
        base64 + String(repeating: "=", count: (4 - base64.count % 4) % 4)
    }
}

do {
    let command = try InteropClientCommand.parse()
    try await command.run()
} catch {
    InteropClientCommand.exit(withError: error)
}
