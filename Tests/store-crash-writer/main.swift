// The process the store contract test kills with SIGKILL mid-write (MeshStoreTests,
// StoreContractTests.aKilledProcessLosesNoAcknowledgedWrite).
//
// Usage: store-crash-writer LOCATION WRITERS
//   LOCATION: a SQLite file path or a postgres:// URL. WRITERS tasks each write transactions one after
//   another — a row (writer, seq) and its writer's running count — and print "writer seq" on stdout once
//   the store acknowledged it. With many at once, the writer commits them in batches, so a kill lands
//   mid-batch. Prints "ready" once the schema exists.
import Foundation
import Logging
import MeshStore
import SQLKit

let arguments = CommandLine.arguments
guard arguments.count == 3, let writers = Int(arguments[2]), writers > 0 else {
    FileHandle.standardError.write(Data("usage: store-crash-writer LOCATION WRITERS\n".utf8))
    exit(2)
}

/// One line straight to the pipe (no stdio buffer a kill would discard with it).
func say(_ line: String) {
    var bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress! + offset, $0.count - offset) }
        if written <= 0 { exit(3) }
        offset += written
    }
}

let location = try StoreLocation.resolve(service: "crash", databaseURL: arguments[1].hasPrefix("postgres") ? arguments[1] : "sqlite:" + arguments[1], dataDirectory: "")
let store = try await location.open(logger: Logger(label: "store-crash-writer"))
try await store.migrate([Migration(version: 1, name: "crash", statements: [
    "CREATE TABLE acked (writer BIGINT NOT NULL, seq BIGINT NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (writer, seq))",
    "CREATE TABLE totals (writer BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
])])
say("ready")
let payload = String(repeating: "p", count: 200)
await withTaskGroup(of: Void.self) { group in
    for writer in 0..<writers {
        group.addTask {
            var seq = 0
            while true {
                let current = seq
                do {
                    try await store.write { db in
                        try await db.raw("INSERT INTO acked (writer, seq, payload) VALUES (\(bind: writer), \(bind: current), \(bind: payload))").run()
                        try await db.raw("INSERT INTO totals (writer, n) VALUES (\(bind: writer), 1) ON CONFLICT (writer) DO UPDATE SET n = totals.n + 1").run()
                    }
                } catch {
                    FileHandle.standardError.write(Data("write failed: \(error)\n".utf8))
                    exit(4)
                }
                say("\(writer) \(seq)")
                seq += 1
            }
        }
    }
}
