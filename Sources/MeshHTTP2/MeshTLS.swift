import MeshRPC
import NIOCore
import NIOSSL

/// TLS for every listener and every client of the mesh, from the environment (README, TLS):
/// - a server with `CHATMESH_TLS_CERT` and `CHATMESH_TLS_KEY` (PEM files) serves TLS with ALPN
///   `h2`; with `CHATMESH_TLS_CLIENT_CA` too it requires a client certificate that CA signed
///   (mutual TLS: inside a deployment only the mesh's own services can call each other);
/// - a client with `CHATMESH_TLS_CA` connects with TLS and verifies the server against that CA
///   (its name or IP address in the certificate); with `CHATMESH_TLS_CLIENT_CERT` and
///   `CHATMESH_TLS_CLIENT_KEY` it presents its own certificate.
public enum MeshTLS {
    /// The server's TLS, or nil when the environment asks for none.
    public static func server(_ env: MeshEnvironment) throws(ConfigurationError) -> NIOSSLContext? {
        let cert = env.value("CHATMESH_TLS_CERT")
        let key = env.value("CHATMESH_TLS_KEY")
        guard cert != nil || key != nil else { return nil }
        guard let cert, let key else {
            throw ConfigurationError("CHATMESH_TLS_CERT and CHATMESH_TLS_KEY go together: set both or neither")
        }
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try certificates(cert, "CHATMESH_TLS_CERT").map { .certificate($0) },
            privateKey: try privateKey(key, "CHATMESH_TLS_KEY")
        )
        tls.applicationProtocols = ["h2"]
        tls.minimumTLSVersion = .tlsv12
        if let clientCA = env.value("CHATMESH_TLS_CLIENT_CA") {
            tls.trustRoots = .certificates(try certificates(clientCA, "CHATMESH_TLS_CLIENT_CA"))
            // A client is a service, not a host name: its certificate must chain to the CA.
            tls.certificateVerification = .noHostnameVerification
        }
        return try context(tls)
    }

    /// The clients' TLS, or nil when the environment asks for none.
    public static func client(_ env: MeshEnvironment) throws(ConfigurationError) -> NIOSSLContext? {
        guard let ca = env.value("CHATMESH_TLS_CA") else { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try certificates(ca, "CHATMESH_TLS_CA"))
        tls.applicationProtocols = ["h2"]
        tls.minimumTLSVersion = .tlsv12
        let cert = env.value("CHATMESH_TLS_CLIENT_CERT")
        let key = env.value("CHATMESH_TLS_CLIENT_KEY")
        switch (cert, key) {
        case (nil, nil):
            break
        case (let cert?, let key?):
            tls.certificateChain = try certificates(cert, "CHATMESH_TLS_CLIENT_CERT").map { .certificate($0) }
            tls.privateKey = try privateKey(key, "CHATMESH_TLS_CLIENT_KEY")
        default:
            throw ConfigurationError("CHATMESH_TLS_CLIENT_CERT and CHATMESH_TLS_CLIENT_KEY go together: set both or neither")
        }
        return try context(tls)
    }

    /// The handler a client connection starts with: SNI and verification by name, or by the IP
    /// address it connected to (an IP is never sent as SNI).
    static func clientHandler(_ context: NIOSSLContext, host: String) throws -> NIOSSLClientHandler {
        let isAddress = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        return try NIOSSLClientHandler(context: context, serverHostname: isAddress ? nil : host)
    }

    private static func certificates(_ path: String, _ name: String) throws(ConfigurationError) -> [NIOSSLCertificate] {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(path)
            guard !chain.isEmpty else { throw ConfigurationError("\(name): no certificate in \(path)") }
            return chain
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw ConfigurationError("\(name): cannot read a PEM certificate from \(path): \(error)")
        }
    }

    private static func privateKey(_ path: String, _ name: String) throws(ConfigurationError) -> NIOSSLPrivateKeySource {
        do {
            return .privateKey(try NIOSSLPrivateKey(file: path, format: .pem))
        } catch {
            throw ConfigurationError("\(name): cannot read a PEM private key from \(path): \(error)")
        }
    }

    private static func context(_ tls: TLSConfiguration) throws(ConfigurationError) -> NIOSSLContext {
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw ConfigurationError("TLS: \(error)")
        }
    }
}
