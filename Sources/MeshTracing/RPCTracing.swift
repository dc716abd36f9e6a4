import Instrumentation
import Logging
import MeshRPC
import ServiceContextModule
import Synchronization
import Tracing

/// Traces across the mesh with swift-distributed-tracing: the W3C trace context (`traceparent`,
/// `tracestate`) read from a call's metadata and written into the metadata of the calls it makes,
/// a span per server call and per client call named `service/method` with OpenTelemetry's RPC
/// attributes (`rpc.system` grpc, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`). Whoever
/// bootstrapped `InstrumentationSystem` (MeshProcess, on swift-otel) records and exports them.
/// `TraceSampler` decides first: a call it does not sample makes no span and passes its unsampled
/// traceparent on.
///
/// Off unless the process turned it on: the untraced call pays one atomic load.
public enum RPCTracing {
    private static let enabled = Atomic<Bool>(false)
    /// Written once by `enable`, before any call; read on every call without a lock.
    nonisolated(unsafe) private static var sampler = TraceSampler.default
    nonisolated(unsafe) private static var logger = Logger(label: "chatmesh.tracing")

    public static var isEnabled: Bool { enabled.load(ordering: .relaxed) }

    /// Call once, after `InstrumentationSystem.bootstrap` (whose own sampler should then record
    /// every span it is asked for: the decision is `sampler`'s), before any call is served.
    /// `logger` logs each recorded call's outcome at debug level, inside its span.
    public static func enable(sampler chosen: TraceSampler, logger chosenLogger: Logger) {
        sampler = chosen
        logger = chosenLogger
        enabled.store(true, ordering: .releasing)
    }

    /// The unsampled trace of work that is not a served call (a transaction on the store's writer,
    /// an outbox delivery): a served call's is on its `ServerContext`.
    @TaskLocal static var unsampled: UnsampledTraceContext?

    /// What a served call is, decided before it runs: recorded in a span, or passed on unrecorded.
    public enum Decision: Sendable {
        case record
        case passOn(UnsampledTraceContext)
    }

    /// The decision for a call that came with `metadata` (its `traceparent`, if any).
    public static func decide(_ metadata: Metadata) -> Decision {
        let incoming = metadata["traceparent"]
        // One draw serves both the decision and, mixed once more, the seed of an unsampled trace's ids.
        let random = SamplingRandom.next()
        if sampler.samples(parent: incoming, random: random) { return .record }
        return .passOn(incoming.map(UnsampledTraceContext.init(inherited:)) ?? UnsampledTraceContext(seed: SamplingRandom.mix(random)))
    }

    /// Whether work with this caller's traceparent (nil: none) is recorded.
    static func samples(parent: String?) -> Bool {
        sampler.samples(parent: parent, random: SamplingRandom.next)
    }

    /// Runs a served call (one `decide` said to record) inside a server span whose parent is the
    /// caller's trace context; its outcome is logged at debug level inside the span, so the line
    /// names the trace.
    public static func serving<T>(_ method: MethodDescriptor, metadata: Metadata, _ body: () async throws -> T) async throws -> T {
        var parent = ServiceContext.topLevel
        InstrumentationSystem.instrument.extract(metadata, into: &parent, using: MetadataCarrier())
        return try await withSpan(spanName(method), context: parent, ofKind: .server) { span in
            describe(span, method)
            do {
                let result = try await body()
                span.attributes["rpc.grpc.status_code"] = 0
                logger.debug("call served", metadata: ["method": "\(method.path)", "code": "OK"])
                return result
            } catch {
                let status = RPCError(answering: error)
                fail(span, status, serverSide: true)
                logger.debug("call served", metadata: ["method": "\(method.path)", "code": "\(status.code.name)", "reason": "\(status.message)"])
                throw error
            }
        }
    }

    /// What work done now continues: the recorded span being served, an unsampled trace, or nothing
    /// (a new trace, sampled or not).
    private enum Parent {
        case recorded(ServiceContext)
        case unsampled(String)
    }

    private static var passedOn: UnsampledTraceContext? {
        ServerContext.current?.unsampledTrace ?? unsampled
    }

    private static func currentParent() -> Parent {
        if let context = ServiceContext.current { return .recorded(context) }
        if let trace = passedOn { return .unsampled(trace.traceparent) }
        return samples(parent: nil) ? .recorded(.topLevel) : .unsampled(UnsampledTraceContext(seed: SamplingRandom.next()).traceparent)
    }

    /// The trace the current task is in, to be restored in another task (`restoring`): the store's
    /// writer runs a caller's transaction on a task of its own.
    public enum Captured: Sendable {
        case recorded(ServiceContext)
        case unsampled(UnsampledTraceContext)
    }

    public static func capture() -> Captured? {
        if let context = ServiceContext.current { return .recorded(context) }
        return passedOn.map(Captured.unsampled)
    }

    public static func restoring<T>(_ captured: Captured, _ body: () async throws -> T) async throws -> T {
        switch captured {
        case .recorded(let context): try await ServiceContext.withValue(context, operation: body)
        case .unsampled(let trace): try await $unsampled.withValue(trace, operation: body)
        }
    }

    /// Runs a call this process makes inside a client span (a child of the call being served, if
    /// any), its trace context written into `metadata` for the server to continue.
    public static func calling<T>(_ method: MethodDescriptor, metadata: Metadata, _ send: (Metadata) async throws(RPCError) -> T) async throws(RPCError) -> T {
        let context: ServiceContext
        switch currentParent() {
        case .unsampled(let traceparent):
            var metadata = metadata
            metadata.set("traceparent", traceparent)
            return try await send(metadata)
        case .recorded(let recorded):
            context = recorded
        }
        do {
            return try await withSpan(spanName(method), context: context, ofKind: .client) { span in
                describe(span, method)
                var metadata = metadata
                InstrumentationSystem.instrument.inject(span.context, into: &metadata, using: MetadataCarrier())
                do throws(RPCError) {
                    let result = try await send(metadata)
                    span.attributes["rpc.grpc.status_code"] = 0
                    return result
                } catch {
                    fail(span, error, serverSide: false)
                    throw error
                }
            }
        } catch let error as RPCError {
            throw error
        } catch {
            throw RPCError(answering: error)
        }
    }

    /// The current trace context as W3C headers ("traceparent" and, when set, "tracestate"), to keep
    /// with work done later (an outbox event); empty when nothing is being traced.
    public static func currentContext() -> Metadata {
        guard isEnabled else { return Metadata() }
        if let context = ServiceContext.current {
            var headers = Metadata()
            InstrumentationSystem.instrument.inject(context, into: &headers, using: MetadataCarrier())
            return headers
        }
        if let trace = passedOn { return Metadata([("traceparent", trace.traceparent)]) }
        return Metadata()
    }

    /// Runs `body` in a span named `name` continuing the trace context `headers` kept earlier (or the
    /// current one when there is none): an outbox event delivered, a provider called.
    public static func continuing<T>(_ name: String, kind: WorkKind, from headers: Metadata, attributes: [String: String] = [:], _ body: () async throws -> T) async throws -> T {
        let parent: ServiceContext
        if let traceparent = headers["traceparent"] {
            guard samples(parent: traceparent) else {
                return try await $unsampled.withValue(UnsampledTraceContext(inherited: traceparent), operation: body)
            }
            var extracted = ServiceContext.topLevel
            InstrumentationSystem.instrument.extract(headers, into: &extracted, using: MetadataCarrier())
            parent = extracted
        } else {
            switch currentParent() {
            case .unsampled(let traceparent):
                return try await $unsampled.withValue(UnsampledTraceContext(inherited: traceparent), operation: body)
            case .recorded(let context): parent = context
            }
        }
        return try await withSpan(name, context: parent, ofKind: kind == .delivery ? .producer : .client) { span in
            for (key, value) in attributes { span.attributes[key] = value }
            return try await body()
        }
    }

    /// What a `continuing` span does: hand work to another service (an outbox delivery, a producer
    /// span) or call something outside the mesh (a provider, a client span).
    public enum WorkKind: Sendable {
        case delivery, externalCall
    }

    /// The trace context of the current work for an HTTP request's headers (a provider call).
    public static func inject(into headers: inout [(String, String)]) {
        for (name, value) in currentContext() { headers.append((name, value)) }
    }

    static func spanName(_ method: MethodDescriptor) -> String {
        method.service + "/" + method.method
    }

    static func describe(_ span: any Span, _ method: MethodDescriptor) {
        span.attributes["rpc.system"] = "grpc"
        span.attributes["rpc.service"] = method.service
        span.attributes["rpc.method"] = method.method
    }

    /// OpenTelemetry's gRPC conventions: a client span is an error for any code but OK; a server span
    /// only for the codes that mean the server failed (a refused argument is the caller's error).
    static func fail(_ span: any Span, _ status: RPCError, serverSide: Bool) {
        span.attributes["rpc.grpc.status_code"] = status.code.rawValue
        let serverFaults: Set<RPCError.Code> = [.unknown, .deadlineExceeded, .unimplemented, .internal, .unavailable, .dataLoss]
        if !serverSide || serverFaults.contains(status.code) {
            span.setStatus(SpanStatus(code: .error, message: "\(status.code.name): \(status.message)"))
        }
    }
}

/// gRPC metadata as the carrier of the W3C trace context headers.
struct MetadataCarrier: Extractor, Injector {
    func extract(key: String, from carrier: Metadata) -> String? {
        carrier[key]
    }

    func inject(_ value: String, forKey key: String, into carrier: inout Metadata) {
        carrier.set(key, value)
    }
}

extension RPCTracing {
    /// A client's streaming call traced: its span opens before the call is sent (the trace context
    /// goes out in `head`'s metadata) and ends with the call (`RPCClientStream.observed`).
    public static func calling(_ head: ClientStreamHead, _ open: (ClientStreamHead) async throws(RPCError) -> RPCClientStream) async throws(RPCError) -> RPCClientStream {
        let context: ServiceContext
        switch currentParent() {
        case .unsampled(let traceparent):
            var head = head
            head.metadata.set("traceparent", traceparent)
            return try await open(head)
        case .recorded(let recorded):
            context = recorded
        }
        let span = InstrumentationSystem.tracer.startSpan(spanName(head.method), context: context, ofKind: .client)
        describe(span, head.method)
        var head = head
        InstrumentationSystem.instrument.inject(span.context, into: &head.metadata, using: MetadataCarrier())
        let stream: RPCClientStream
        do {
            stream = try await open(head)
        } catch {
            fail(span, error, serverSide: false)
            span.end()
            throw error
        }
        let traced = SpanBox(span)
        return stream.observed { code in
            if code == .ok {
                traced.span.attributes["rpc.grpc.status_code"] = 0
            } else {
                fail(traced.span, RPCError(code, "the call ended with \(code.name)"), serverSide: false)
            }
            traced.span.end()
        }
    }

    /// A span handed to the closure that ends it (spans are Sendable; the box keeps the existential's type simple).
    final class SpanBox: Sendable {
        let span: any Span
        init(_ span: any Span) { self.span = span }
    }
}

extension UnsampledTraceContext {
    /// As it came, or a fresh trace's with ids from the seed's splitmix64 steps and flags 00.
    var traceparent: String {
        if let inherited { return inherited }
        var step = seed
        return TraceSampler.unsampledParent {
            step &+= 0x9E37_79B9_7F4A_7C15
            return SamplingRandom.mix(step)
        }
    }
}
