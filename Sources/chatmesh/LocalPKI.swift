import Foundation

/// `chatmesh up --tls`: a throw-away certificate authority and the certificates the mesh needs on
/// this machine, made with the openssl command — one server certificate for 127.0.0.1 and
/// localhost that every service presents, and one client certificate every service (and this
/// CLI) presents to the others under mutual TLS. Made anew on each run: nothing to keep secret.
enum LocalPKI {
    struct Files {
        let ca, serverCert, serverKey, clientCert, clientKey: URL

        /// What the services and clients read (MeshTLS): TLS on every listener, client certificates required.
        var environment: [String: String] {
            [
                "CHATMESH_TLS_CERT": serverCert.path, "CHATMESH_TLS_KEY": serverKey.path, "CHATMESH_TLS_CLIENT_CA": ca.path,
                "CHATMESH_TLS_CA": ca.path, "CHATMESH_TLS_CLIENT_CERT": clientCert.path, "CHATMESH_TLS_CLIENT_KEY": clientKey.path,
            ]
        }
    }

    static func make(in directory: URL) throws -> Files {
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try openssl(["req", "-x509"] + ec + ["-days", "30", "-subj", "/CN=ChatMesh local CA", "-keyout", "ca.key", "-out", "ca.crt"], in: directory)
        for (name, san) in [("server", "IP:127.0.0.1,DNS:localhost"), ("client", "DNS:chatmesh-mesh")] {
            try openssl(["req"] + ec + ["-subj", "/CN=chatmesh-\(name)", "-keyout", "\(name).key", "-out", "\(name).csr"], in: directory)
            try "subjectAltName=\(san)\n".write(to: directory.appendingPathComponent("\(name).ext"), atomically: true, encoding: .utf8)
            try openssl([
                "x509", "-req", "-in", "\(name).csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "30",
                "-extfile", "\(name).ext", "-out", "\(name).crt",
            ], in: directory)
        }
        let file = { (name: String) in directory.appendingPathComponent(name) }
        return Files(ca: file("ca.crt"), serverCert: file("server.crt"), serverKey: file("server.key"), clientCert: file("client.crt"), clientKey: file("client.key"))
    }

    private static func openssl(_ arguments: [String], in directory: URL) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        process.currentDirectoryURL = directory
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw LocalPKIError("cannot run openssl (install it: apt-get install openssl): \(error)")
        }
        let output = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw LocalPKIError("openssl \(arguments.prefix(2).joined(separator: " ")) failed: \(String(decoding: output, as: UTF8.self))")
        }
    }
}

struct LocalPKIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
