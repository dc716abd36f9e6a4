import Foundation
import MeshRPC
import Testing

/// Expects `body` to fail with `code` and a message that names `field`
/// (every refusal in ChatMesh names what was wrong).
public func expectStatus(
    _ code: RPCError.Code, naming field: String, _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation
) async {
    do {
        try await body()
        Issue.record("expected \(code.name) naming \(field), got success", sourceLocation: sourceLocation)
    } catch let error as RPCError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        #expect(error.message.contains(field), "message should name \(field): \(error.message)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
    }
}

/// A fresh database file path in a directory of its own under the temporary directory.
public func temporaryDatabasePath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)/\(name).sqlite").path
}
