import Foundation
@testable import MeshStore
import MeshTestSupport
import PostgresKit
import SQLKit
import Synchronization
import Testing

/// Statements on PostgreSQL run prepared by name, once per connection (`PostgresStatementDatabase`).
@Suite struct PostgresStatementNamesTests {
    @Test func eachTextHasOneNameNamesAreNeverReusedAndTheCapHolds() {
        let names = PostgresStatementNames(capacity: 3)
        let a = names.name(for: "SELECT a"), b = names.name(for: "SELECT b")
        #expect(a == "chatmesh_1" && b == "chatmesh_2")
        #expect(names.name(for: "SELECT a") == a)
        names.refuse("SELECT a")
        #expect(names.name(for: "SELECT a") == nil)
        // The refused name stays spent: the next text gets a new one, and past the cap none.
        #expect(names.name(for: "SELECT c") == "chatmesh_3")
        #expect(names.name(for: "SELECT d") == nil)
        #expect(names.name(for: "SELECT b") == b)
        #expect(names.counts.texts == 2)
    }

    @Test func bindTypesArePartOfTheKeyAndAValueWithoutADirectEncodingRunsUnnamed() throws {
        let (bindings, types) = try #require(PostgresStatementDatabase.bindings(["shop", Int64(5), Optional<String>.none, true, 1.5]))
        #expect(types == "String,Int64,null,Bool,Double,")
        #expect(bindings.count == 5)
        let (_, someTypes) = try #require(PostgresStatementDatabase.bindings([Optional<String>.some("x")]))
        #expect(someTypes == "String,")
        struct Address: Codable, Sendable { let street: String }
        #expect(PostgresStatementDatabase.bindings([Address(street: "Lê Lợi")]) == nil)
    }
}

@Suite(.enabled(if: TestDatabase.postgresURL != nil, "needs CHATMESH_TEST_POSTGRES_URL"))
struct PostgresStatementTests {
    @Test func aStatementIsPreparedOnceOnItsConnectionAndRunByName() async throws {
        let store = try #require(try await TestDatabase.open("statements") as? PostgresStore)
        try await store.closing {
            try await store.migrate([Migration(version: 1, name: "t", statements: [
                "CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT NOT NULL)", "INSERT INTO t VALUES ('a', 1), ('b', 2), ('c', 3)",
            ])])
            let before = store.statementNames.counts
            // One read is one connection: what it prepared is in that session's pg_prepared_statements.
            let (values, prepared) = try await store.read { db in
                var values: [Int64] = []
                for id in ["a", "b", "c", "a"] {
                    values.append(try await db.raw("SELECT n FROM t WHERE id = \(bind: id)").first()!.int64("n"))
                }
                let prepared = try await db.raw("""
                    SELECT COUNT(*) AS n FROM pg_prepared_statements WHERE name LIKE 'chatmesh\\_%' AND statement = 'SELECT n FROM t WHERE id = $1'
                    """).first()!.int64("n")
                return (values, prepared)
            }
            #expect(values == [1, 2, 3, 1])
            #expect(prepared == 1)
            let after = store.statementNames.counts
            #expect(after.named - before.named == 5)
            #expect(after.texts - before.texts == 2)
            #expect(after.unnamed == before.unnamed)
        }
    }

    @Test func aPlanWhoseResultChangedUnderItRunsAgainUnnamed() async throws {
        let store = try #require(try await TestDatabase.open("statements") as? PostgresStore)
        try await store.closing {
            try await store.migrate([Migration(version: 1, name: "t", statements: [
                "CREATE TABLE t (id TEXT PRIMARY KEY)", "INSERT INTO t VALUES ('a')",
                "CREATE TABLE w (id TEXT PRIMARY KEY)", "INSERT INTO w VALUES ('a')",
            ])])
            // Outside a transaction: the statement runs again unnamed at once.
            let columns = try await store.read { db in
                _ = try await db.raw("SELECT * FROM t").all()
                try await db.raw("ALTER TABLE t ADD COLUMN extra TEXT NOT NULL DEFAULT 'x'").run()
                return try await db.raw("SELECT * FROM t").first()!.allColumns
            }
            #expect(columns.sorted() == ["extra", "id"])
            // Inside one, the refusal aborted it: the transaction runs again, and its statement unnamed.
            let runs = Counter()
            let extra = try await store.write { db in
                runs.add()
                _ = try await db.raw("SELECT * FROM w").all()
                try await db.raw("ALTER TABLE w ADD COLUMN extra TEXT NOT NULL DEFAULT 'y'").run()
                return try await db.raw("SELECT * FROM w").first()!.string("extra")
            }
            #expect(extra == "y")
            #expect(runs.value == 2)
        }
    }
}

private final class Counter: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
