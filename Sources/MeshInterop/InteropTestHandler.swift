import ChatMeshAPI
import MeshRPC
import NIOCore

/// grpc's interop service (`grpc.testing.TestService`), as its test descriptions define the
/// server side: payloads of the sizes asked for, the status asked for, the metadata echoed
/// (`x-grpc-test-echo-initial` in the headers, `x-grpc-test-echo-trailing-bin` in the
/// trailers), pauses between streamed responses. It needs no token: interop clients carry none.
public struct InteropTestHandler: InteropTestService.Handler {
    public init() {}

    static let echoInitial = "x-grpc-test-echo-initial"
    static let echoTrailing = "x-grpc-test-echo-trailing-bin"

    public func emptyCall(_ request: InteropEmpty, context: ServerContext) async throws -> InteropEmpty {
        Self.echoMetadata(context)
        return InteropEmpty()
    }

    public func unaryCall(_ request: InteropSimpleRequest, context: ServerContext) async throws -> InteropSimpleResponse {
        Self.echoMetadata(context)
        try Self.checkCompression(expected: request.expectCompressed, context)
        context.setResponseCompression(request.responseCompressed?.value ?? false)
        if let status = request.responseStatus, status.code != 0 {
            throw RPCError(RPCError.Code(wireValue: Int(status.code)), status.message)
        }
        return InteropSimpleResponse(payload: try Self.payload(size: request.responseSize))
    }

    public func cacheableUnaryCall(_ request: InteropSimpleRequest, context: ServerContext) async throws -> InteropSimpleResponse {
        try await unaryCall(request, context: context)
    }

    public func streamingOutputCall(_ request: InteropStreamingOutputCallRequest, responses: RPCWriter<InteropStreamingOutputCallResponse>, context: ServerContext) async throws {
        Self.echoMetadata(context)
        try await Self.respond(to: request, responses, context)
    }

    public func streamingInputCall(_ requests: RPCMessageStream<InteropStreamingInputCallRequest>, context: ServerContext) async throws -> InteropStreamingInputCallResponse {
        Self.echoMetadata(context)
        var total = 0
        for try await request in requests {
            try Self.checkCompression(expected: request.expectCompressed, context)
            total += request.payload?.body.count ?? 0
        }
        return InteropStreamingInputCallResponse(aggregatedPayloadSize: Int32(clamping: total))
    }

    public func fullDuplexCall(_ requests: RPCMessageStream<InteropStreamingOutputCallRequest>, responses: RPCWriter<InteropStreamingOutputCallResponse>, context: ServerContext) async throws {
        Self.echoMetadata(context)
        for try await request in requests {
            try await Self.respond(to: request, responses, context)
        }
    }

    public func halfDuplexCall(_ requests: RPCMessageStream<InteropStreamingOutputCallRequest>, responses: RPCWriter<InteropStreamingOutputCallResponse>, context: ServerContext) async throws {
        Self.echoMetadata(context)
        var all: [InteropStreamingOutputCallRequest] = []
        for try await request in requests {
            all.append(request)
        }
        for request in all {
            try await Self.respond(to: request, responses, context)
        }
    }

    public func unimplementedCall(_ request: InteropEmpty, context: ServerContext) async throws -> InteropEmpty {
        throw RPCError.unimplemented("grpc.testing.TestService/UnimplementedCall is not implemented, as the interop case expects")
    }

    /// Every method on the streaming path (so that unary calls echo metadata too), none needing a token.
    public var routes: [RPCRoute] {
        typealias Method = ChatMeshAPI.InteropTestService.Method
        return [
            RPCRoute.unaryAsStream(Method.emptyCall, requiresAuth: false) { (request: InteropEmpty, context) in
                try await emptyCall(request, context: context)
            },
            RPCRoute.unaryAsStream(Method.unaryCall, requiresAuth: false) { (request: InteropSimpleRequest, context) in
                try await unaryCall(request, context: context)
            },
            RPCRoute.unaryAsStream(Method.cacheableUnaryCall, requiresAuth: false) { (request: InteropSimpleRequest, context) in
                try await cacheableUnaryCall(request, context: context)
            },
            RPCRoute.serverStreaming(Method.streamingOutputCall, requiresAuth: false) { (request: InteropStreamingOutputCallRequest, responses: RPCWriter<InteropStreamingOutputCallResponse>, context) in
                try await streamingOutputCall(request, responses: responses, context: context)
            },
            RPCRoute.clientStreaming(Method.streamingInputCall, requiresAuth: false) { (requests: RPCMessageStream<InteropStreamingInputCallRequest>, context) -> InteropStreamingInputCallResponse in
                try await streamingInputCall(requests, context: context)
            },
            RPCRoute.bidirectionalStreaming(Method.fullDuplexCall, requiresAuth: false) { (requests: RPCMessageStream<InteropStreamingOutputCallRequest>, responses: RPCWriter<InteropStreamingOutputCallResponse>, context) in
                try await fullDuplexCall(requests, responses: responses, context: context)
            },
            RPCRoute.bidirectionalStreaming(Method.halfDuplexCall, requiresAuth: false) { (requests: RPCMessageStream<InteropStreamingOutputCallRequest>, responses: RPCWriter<InteropStreamingOutputCallResponse>, context) in
                try await halfDuplexCall(requests, responses: responses, context: context)
            },
            RPCRoute.unaryAsStream(Method.unimplementedCall, requiresAuth: false) { (request: InteropEmpty, context) in
                try await unimplementedCall(request, context: context)
            },
        ]
    }

    static func respond(to request: InteropStreamingOutputCallRequest, _ responses: RPCWriter<InteropStreamingOutputCallResponse>, _ context: ServerContext) async throws {
        if request.responseParameters.contains(where: { $0.compressed?.value == true }) {
            // Declared in the headers before the first message, whichever message is compressed.
            context.setResponseCompression(true)
        }
        for parameters in request.responseParameters {
            if parameters.intervalUs > 0 {
                try await Task.sleep(for: .microseconds(Int(parameters.intervalUs)))
            }
            context.setResponseCompression(parameters.compressed?.value ?? false)
            try await responses.write(InteropStreamingOutputCallResponse(payload: try payload(size: parameters.size)))
        }
        if let status = request.responseStatus, status.code != 0 {
            throw RPCError(RPCError.Code(wireValue: Int(status.code)), status.message)
        }
    }

    /// A COMPRESSABLE payload of `size` zero bytes, as the cases check.
    static func payload(size: Int32) throws(RPCError) -> InteropPayload {
        guard size >= 0 else { throw .invalidArgument("response_size must not be negative (got \(size))") }
        guard size <= GRPCFraming.defaultMaxMessageBytes else {
            throw .invalidArgument("response_size \(size) is over the message limit of \(GRPCFraming.defaultMaxMessageBytes) bytes")
        }
        return InteropPayload(type: .compressable, body: [UInt8](repeating: 0, count: Int(size)))
    }

    /// `expect_compressed`, when set, must match how the request arrived (INVALID_ARGUMENT otherwise),
    /// as grpc's interop servers check it.
    static func checkCompression(expected: InteropBoolValue?, _ context: ServerContext) throws(RPCError) {
        guard let expected else { return }
        if expected.value != context.requestWasCompressed {
            throw .invalidArgument(expected.value ? "the request was expected compressed and was not" : "the request was expected uncompressed and was compressed")
        }
    }

    static func echoMetadata(_ context: ServerContext) {
        if let value = context.metadata[echoInitial] {
            context.addInitialMetadata(echoInitial, value)
        }
        if let value = context.metadata[echoTrailing] {
            context.addTrailingMetadata(echoTrailing, value)
        }
    }
}
