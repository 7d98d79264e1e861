import FedBrokerCore
import Foundation
import Synchronization
import Testing

@testable import BrokerStore

/// How PostgreSQL transactions are opened and how its errors are mapped, on a real server.
@Suite struct PostgresTransactionTests {
    /// A migrated PostgreSQL store opened with `adjust` applied to its settings.
    func withPostgres(
        _ adjust: (inout PostgresSettings) -> Void = { _ in }, _ body: (SQLBrokerStore) async throws -> Void
    ) async throws {
        try await withStore(.postgres) { _, database in
            guard case .postgres(var settings) = try StoreConfiguration(databaseURL: database.url) else {
                Issue.record("not a PostgreSQL URL")
                return
            }
            adjust(&settings)
            let store = try await SQLBrokerStore.open(.postgres(settings), clock: database.clock, logger: TestDatabase.logger)
            do {
                try await body(store)
            } catch {
                try? await store.close()
                throw error
            }
            try await store.close()
        }
    }

    @Test("Transactions run READ COMMITTED with statement_timeout and lock_timeout set for them")
    func transactionSettings() async throws {
        try await withPostgres({ $0.statementTimeout = .milliseconds(7_000); $0.lockTimeout = .milliseconds(3_000) }) { store in
            let row = try await store.backend.withTransaction { session in
                try await session.query(
                    """
                    SELECT current_setting('transaction_isolation') AS iso, current_setting('statement_timeout') AS st,
                        current_setting('lock_timeout') AS lt
                    """, [])
            }.first
            #expect(try row?.text("iso") == "read committed")
            #expect(try row?.text("st") == "7s")
            #expect(try row?.text("lt") == "3s")
            // SET LOCAL: the pooled connection is back to the server defaults afterwards.
            let outside = try await store.backend.withTransaction { session in
                try await session.query("SELECT current_setting('statement_timeout') AS st", [])
            }.first
            #expect(try outside?.text("st") == "7s", "every transaction sets it again")
        }
    }

    @Test("A statement past statement_timeout fails with storeTimeout, not a hang")
    func statementTimeout() async throws {
        try await withPostgres({ $0.statementTimeout = .milliseconds(200) }) { store in
            let started = ContinuousClock.now
            await expectBrokerError(.storeTimeout) { try await store.executeForTesting("SELECT pg_sleep(120)") }
            #expect(ContinuousClock.now - started < .seconds(60))  // the timeout, not the statement's end, answered
        }
    }

    @Test(
        "A statement the server never answers (its backend stopped) fails as databaseUnavailable after statement_timeout plus the connect timeout; its connection is dropped and the store serves again",
        .enabled(if: geteuid() == 0, "SIGSTOP to the server's backend needs root (scripts/test.sh in CI runs as root)"))
    func unansweredStatement() async throws {
        // A connect timeout of 8 s: it also bounds the store's opening probe and the lease after
        // the stall, and under a loaded CI run 1 s and then 3 s each failed a connection there.
        try await withPostgres({ $0.statementTimeout = .seconds(1); $0.connectTimeout = .seconds(8) }) { store in
            let stopped = Mutex<pid_t?>(nil)
            defer { if let pid = stopped.withLock({ $0 }) { kill(pid, SIGCONT) } }
            let started = ContinuousClock.now
            await expectBrokerError(.databaseUnavailable) {
                try await store.backend.withTransaction { session in
                    let backend = try await session.query("SELECT pg_backend_pid() AS pid", []).first?.integer("pid")
                    let pid = try #require(backend.flatMap { pid_t(exactly: $0) })
                    // SIGSTOP: the backend holds its socket open and answers nothing, as a host
                    // that vanished would; the server's statement_timeout cannot fire either.
                    try #require(kill(pid, SIGSTOP) == 0, "could not stop the server's backend \(pid)")
                    stopped.withLock { $0 = pid }
                    _ = try await session.query("SELECT 1 AS one", [])
                }
            }
            let elapsed = ContinuousClock.now - started
            #expect(elapsed >= .seconds(9), "given up only after statement_timeout plus the connect timeout, not before: \(elapsed)")
            // One bound (9 s), not two: no ROLLBACK waits out a second one on the closed connection.
            #expect(elapsed < .seconds(17), "bounded once, not a hang: \(elapsed)")
            if let pid = stopped.withLock({ $0 }) { kill(pid, SIGCONT) }
            // The abandoned connection was closed, so the pool leases a working one.
            let row = try await store.backend.withTransaction { session in try await session.query("SELECT 1 AS one", []) }.first
            #expect(try row?.integer("one") == 1)
        }
    }

    @Test(
        "A COMMIT whose answer never comes says the change may have committed, and it did",
        .enabled(if: geteuid() == 0, "SIGSTOP to the server's backend needs root (scripts/test.sh in CI runs as root)"))
    func commitAnswerLost() async throws {
        try await withPostgres({ $0.statementTimeout = .seconds(1); $0.connectTimeout = .seconds(8) }) { store in
            try await store.backend.withTransaction { session in _ = try await session.query("CREATE TABLE commit_probe (x INT)", []) }
            let stopped = Mutex<pid_t?>(nil)
            defer { if let pid = stopped.withLock({ $0 }) { kill(pid, SIGCONT) } }
            let failure = await #expect(throws: BrokerError.self) {
                try await store.backend.withTransaction { session in
                    _ = try await session.query("INSERT INTO commit_probe VALUES (1)", [])
                    // Held until this transaction ends, so the check below waits for its COMMIT.
                    _ = try await session.query("SELECT pg_advisory_xact_lock(4242) AS locked", [])
                    let backend = try await session.query("SELECT pg_backend_pid() AS pid", []).first?.integer("pid")
                    let pid = try #require(backend.flatMap { pid_t(exactly: $0) })
                    // The body's last act: the COMMIT that follows reaches the backend's socket and
                    // is left unanswered.
                    try #require(kill(pid, SIGSTOP) == 0, "could not stop the server's backend \(pid)")
                    stopped.withLock { $0 = pid }
                }
            }
            #expect(failure?.code == .databaseUnavailable)
            #expect(failure?.message.contains("answer to COMMIT was lost, so the change may have committed") == true, "\(failure?.message ?? "")")
            // Resumed, the backend reads the COMMIT it was sent and runs it.
            if let pid = stopped.withLock({ $0 }) { kill(pid, SIGCONT) }
            let rows = try await store.backend.withTransaction { session in
                // The resumed backend's COMMIT may take a while on a loaded machine: wait longer
                // than the 1 s this store's transactions get (the client's bound is 9 s).
                _ = try await session.query("SELECT set_config('statement_timeout', '8000ms', true) AS s", [])
                _ = try await session.query("SELECT pg_advisory_xact_lock(4242) AS locked", [])
                return try await session.query("SELECT count(*) AS n FROM commit_probe", [])
            }
            #expect(try rows.first?.integer("n") == 1, "the change did commit")
        }
    }

    @Test("A lock held by another transaction past lock_timeout fails with storeTimeout")
    func lockTimeout() async throws {
        try await withPostgres({ $0.lockTimeout = .milliseconds(200) }) { store in
            let (held, holding) = AsyncStream<Void>.makeStream()
            let (release, releasing) = AsyncStream<Void>.makeStream()
            let holder = Task {
                try await store.backend.withTransaction { session in
                    try await session.lock(.slotAllocation)
                    holding.yield()
                    for await _ in release { break }
                }
            }
            for await _ in held { break }
            await expectBrokerError(.storeTimeout) {
                _ = try await store.createSlot(slotID(1), identity: makeIdentity(1), actor: "sre")
            }
            releasing.yield()
            try await holder.value
        }
    }

    @Test("A serialization failure (40001) reruns the transaction body, a bounded number of times")
    func serializationFailureIsRetried() async throws {
        try await withPostgres({ $0.transactionAttempts = 3 }) { store in
            let attempts = Counter()
            let value = try await store.backend.withTransaction { session in
                if await attempts.increment() == 1 {
                    _ = try await session.query(
                        "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$", [])
                }
                return 42
            }
            #expect(value == 42)
            #expect(await attempts.value == 2)

            let always = Counter()
            await expectBrokerError(.transactionConflict) {
                _ = try await store.backend.withTransaction { session in
                    await always.increment()
                    _ = try await session.query(
                        "DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$", [])
                }
            }
            #expect(await always.value == 3)
        }
    }

    @Test("SQLSTATE classes map to the documented codes")
    func sqlStateMapping() {
        struct Driver: Error {}
        func code(_ state: String) -> BrokerError.Code {
            PostgresBackend.map(sqlState: state, Driver(), constraint: nil, context: "test").code
        }
        #expect(code("40001") == .transactionConflict)
        #expect(code("40P01") == .transactionConflict)
        #expect(code("57014") == .storeTimeout)
        #expect(code("55P03") == .storeTimeout)
        for state in ["08000", "08006", "53100", "53200", "53300", "57P01", "57P02", "57P03"] {
            #expect(code(state) == .databaseUnavailable, "\(state)")
        }
        #expect(code("23505") == .uniqueConflict)
        #expect(code("22021") == .invalidData)
        #expect(code("23514") == .invalidData)
        #expect(code("42P01") == .storeFailure)
        #expect(PostgresBackend.map(CancellationError(), context: "test") is CancellationError)
    }

    @Test("The password never shows in description, debugDescription, String(reflecting:) or dump")
    func settingsRedactPassword() throws {
        let settings = try PostgresSettings(url: "postgres://app:s3cr3t-pw@db.example:5432/broker?sslmode=require")
        var dumped = ""
        dump(settings, to: &dumped)
        var dumpedConfiguration = ""
        dump(StoreConfiguration.postgres(settings), to: &dumpedConfiguration)
        for text in [
            "\(settings)", String(reflecting: settings), dumped, dumpedConfiguration,
            String(reflecting: StoreConfiguration.postgres(settings)),
        ] {
            #expect(!text.contains("s3cr3t"), "\(text)")
            #expect(text.contains("db.example"), "\(text)")
        }
    }
}

@Test("PGPASSWORD fills a URL without a password, never overrides one")
func passwordFromEnvironment() throws {
    let bare = try StoreConfiguration(databaseURL: "postgres://app@db/broker")
    guard case .postgres(let filled) = bare.withPasswordFromEnvironment(["PGPASSWORD": "from-env"]) else {
        Issue.record("not PostgreSQL")
        return
    }
    #expect(filled.password == "from-env")
    let given = try StoreConfiguration(databaseURL: "postgres://app:in-url@db/broker")
    guard case .postgres(let kept) = given.withPasswordFromEnvironment(["PGPASSWORD": "from-env"]) else { return }
    #expect(kept.password == "in-url")
    #expect(!"\(bare.withPasswordFromEnvironment(["PGPASSWORD": "from-env"]))".contains("from-env"))
}

actor Counter {
    private(set) var value = 0
    @discardableResult func increment() -> Int {
        self.value += 1
        return self.value
    }
}
