import ArgumentParser
import ChatMeshAPI
import Foundation
import MeshHTTP2
import MeshRPC

/// `chatmesh up`: the whole mesh on this machine from the executables beside
/// this one (it builds nothing), on SQLite under ./data, logs streamed with a
/// prefix per service, stopped cleanly on Ctrl-C.
struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Run the five services on the default ports with SQLite under ./data until Ctrl-C."
    )

    @Flag(help: "Load the demo shop first (chatmesh seed; a shop already there is left as it is).")
    var demo = false

    @Option(help: "Where the services keep their SQLite files and the mesh's key.")
    var dataDir: String = "data"

    @Flag(inversion: .prefixedNo, help: "Serve each service's /metrics on its gRPC port + 1000 (chatmesh top reads them).")
    var metrics = true

    @Flag(help: "Serve and call over mutual TLS, with a throw-away CA and certificates made under <data-dir>/tls (openssl).")
    var tls = false

    /// Started in this order: each one's dependencies are up before it.
    static let services: [(name: String, executable: String, port: Int)] = ["conversation", "loyalty", "messaging", "order", "gateway"].map { name in
        (name, name == "gateway" ? name : name + "-svc", MeshEnvironment.defaultPorts[name]!)
    }

    func run() async throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for service in Self.services where !FileManager.default.isExecutableFile(atPath: bin.appendingPathComponent(service.executable).path) {
            throw ValidationError("\(service.executable) is not beside chatmesh in \(bin.path): build it first (swift build)")
        }
        // Every port is checked before anything starts: a taken one is named with what holds it.
        let ports = Self.services.flatMap { service in
            [(service.executable, service.port)] + (metrics ? [(service.executable + "'s /metrics", service.port + 1000)] : [])
        }
        let taken = ports.filter { !PortHolder.canListen(host: "127.0.0.1", port: $0.1) }
        if !taken.isEmpty {
            for (name, port) in taken {
                let text = "chatmesh up: \(name) cannot start: \(PortHolder.explain(host: "127.0.0.1", port: port))\n"
                FileHandle.standardError.write(Data(text.utf8))
            }
            throw ExitCode(1)
        }
        let data = URL(fileURLWithPath: dataDir).standardizedFileURL
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        // One key for the whole mesh, kept so that tokens stay valid across runs.
        var key = ProcessInfo.processInfo.environment["CHATMESH_AUTH_KEY"] ?? ""
        if key.isEmpty {
            let file = data.appendingPathComponent("auth.key")
            key = (try? String(contentsOf: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            if key.isEmpty {
                key = UUID().uuidString
                try key.write(to: file, atomically: true, encoding: .utf8)
            }
        }
        var environment = ProcessInfo.processInfo.environment
        environment["CHATMESH_AUTH_KEY"] = key
        environment["CHATMESH_DATA_DIR"] = data.path
        for service in Self.services { environment["CHATMESH_\(service.name.uppercased())_ADDRS"] = "127.0.0.1:\(service.port)" }
        var pki: LocalPKI.Files?
        if tls {
            let files = try LocalPKI.make(in: data.appendingPathComponent("tls"))
            environment.merge(files.environment) { _, new in new }
            pki = files
        }
        // The seeder and the health checks in this process read the same settings.
        for (name, value) in environment where name.hasPrefix("CHATMESH_") { setenv(name, value, 1) }

        let children = Children()
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let stop = AsyncStream<String> { continuation in
            for sig in [SIGINT, SIGTERM] {
                let source = DispatchSource.makeSignalSource(signal: sig)
                source.setEventHandler { continuation.yield(sig == SIGINT ? "Ctrl-C" : "SIGTERM") }
                source.resume()
                children.keep(source)
            }
            children.onExit = { name, status in continuation.yield("\(name) exited with status \(status)") }
        }
        do {
            for service in Self.services {
                var env = environment
                env["CHATMESH_LISTEN"] = "127.0.0.1:\(service.port)"
                // /metrics for chatmesh top and Prometheus, each service on its own port.
                env["CHATMESH_METRICS_LISTEN"] = metrics ? MeshEnvironment.defaultMetricsAddress(of: service.name) : nil
                try children.start(name: service.executable, path: bin.appendingPathComponent(service.executable), environment: env)
                try await Self.waitHealthy(service.executable, port: service.port, key: key, children: children)
            }
            if demo {
                let seed = try Seed.parse([])
                try await seed.run()
            }
            // Our lines and the services' prefixed lines interleave in order, also when piped to a file.
            fflush(nil)
        } catch {
            children.stopAll()
            throw error
        }
        print("""

            ChatMesh is up, data in \(data.path):
            \(Self.services.map { "  \($0.executable.padding(toLength: 16, withPad: " ", startingAt: 0)) 127.0.0.1:\($0.port)   metrics http://\(MeshEnvironment.defaultMetricsAddress(of: $0.name))/metrics" }.joined(separator: "\n"))
            Try, in another terminal:
              export CHATMESH_AUTH_KEY=\(key)
              \(bin.path)/chatmesh panel --customer-phone 0912345678
              \(bin.path)/chatmesh report
              \(bin.path)/chatmesh events                                         # the cross-service event queues
              \(bin.path)/chatmesh top                                            # calls/s, errors and p99 per method, live
              \(bin.path)/chatmesh token --shop demo-shop --staff lan --role owner   # grpcurl -plaintext -H "authorization: Bearer <token>" …
            \(pki.map { """
              Mutual TLS is on: export \($0.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")) for the commands above;
              grpcurl -cacert \($0.ca.path) -cert \($0.clientCert.path) -key \($0.clientKey.path) 127.0.0.1:50050 list

            """ } ?? "")Ctrl-C stops every service.

            """)
        fflush(nil)
        for await reason in stop {
            print("chatmesh up: \(reason); stopping the services")
            fflush(nil)
            let clean = children.stopAll()
            if reason.contains("exited") { throw ExitCode(1) }
            if !clean { throw ExitCode(1) }
            return
        }
    }

    /// Until grpc.health.v1.Health/Check answers SERVING (at most 30 s).
    static func waitHealthy(_ name: String, port: Int, key: String, children: Children) async throws {
        let channel = try HTTP2Channel(addresses: "127.0.0.1:\(port)")
        let token = TokenSigner(key: key).mint(shopId: Principal.anyShop, staffId: "chatmesh-up", role: .service, validFor: 60)
        let client = Health.Client(channel: channel, defaultOptions: .bearer(token, timeout: .seconds(1)))
        defer { Task { await channel.close() } }
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if !children.running(name) { throw ValidationError("\(name) stopped while starting; its log is above") }
            if case .success(let answer) = await rpcResult({ () throws(RPCError) in try await client.check(HealthCheckRequest()) }), answer.status == .serving {
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ValidationError("\(name) did not answer its health check on 127.0.0.1:\(port) within 30 s")
    }
}

/// The child processes, their prefixed logs, and stopping them.
final class Children: @unchecked Sendable {
    // Guarded by `lock`; the readability handlers and termination handlers run on Foundation's threads.
    private let lock = NSLock()
    private var processes: [(name: String, process: Process)] = []
    private var sources: [any DispatchSourceProtocol] = []
    private var stopping = false
    var onExit: (@Sendable (String, Int32) -> Void)?

    func keep(_ source: any DispatchSourceProtocol) {
        lock.withLock { sources.append(source) }
    }

    func running(_ name: String) -> Bool {
        lock.withLock { processes.first { $0.name == name }?.process.isRunning ?? false }
    }

    func start(name: String, path: URL, environment: [String: String]) throws {
        let process = Process()
        process.executableURL = path
        process.environment = environment
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        let prefix = "[\(name)] ".padding(toLength: 19, withPad: " ", startingAt: 0)
        let pending = LineBuffer()
        out.fileHandleForReading.readabilityHandler = { handle in
            let chunk = handle.availableData
            for line in pending.lines(chunk) { FileHandle.standardOutput.write(Data((prefix + line + "\n").utf8)) }
        }
        process.terminationHandler = { [weak self] process in
            guard let self else { return }
            let stopping = self.lock.withLock { self.stopping }
            if !stopping { self.onExit?(name, process.terminationStatus) }
        }
        try process.run()
        lock.withLock { processes.append((name, process)) }
    }

    /// SIGTERM to every service (the gateway first), then waits; true when all exited with 0.
    @discardableResult
    func stopAll() -> Bool {
        let all = lock.withLock { () -> [(name: String, process: Process)] in
            stopping = true
            return processes.reversed()
        }
        for child in all where child.process.isRunning { child.process.terminate() }
        var clean = true
        for child in all {
            child.process.waitUntilExit()
            if child.process.terminationStatus != 0 {
                clean = false
                print("chatmesh up: \(child.name) exited with status \(child.process.terminationStatus)")
            }
        }
        return clean
    }
}

/// Splits a byte stream into whole lines.
final class LineBuffer: @unchecked Sendable {
    private let lock = NSLock()
    private var partial = Data()

    func lines(_ chunk: Data) -> [String] {
        lock.withLock {
            partial.append(chunk)
            var out: [String] = []
            while let newline = partial.firstIndex(of: 0x0A) {
                out.append(String(decoding: partial[partial.startIndex..<newline], as: UTF8.self))
                partial = Data(partial[partial.index(after: newline)...])
            }
            return out
        }
    }
}
