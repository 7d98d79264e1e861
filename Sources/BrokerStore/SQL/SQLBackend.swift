import FedBrokerCore

/// Which SQL dialect a backend speaks; the shared logic asks it for the few differences.
enum SQLDialect: Sendable {
    case postgres
    case sqlite
}

/// A connection inside one transaction.
protocol SQLSession: Sendable {
    var dialect: SQLDialect { get }

    /// Runs one statement written with `?` placeholders and returns its rows.
    /// Driver errors are mapped to `BrokerError` (`uniqueConflict`, `databaseUnavailable`, …).
    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow]

    /// Runs one statement exactly as written (no placeholder rewriting, no binds): migrations.
    func execute(_ sql: String) async throws

    /// Serializes transactions that take the same `key` until they end. PostgreSQL: a
    /// transaction-scoped advisory lock. SQLite: nothing to do, writers are already serialized.
    func lock(_ key: AdvisoryLockKey) async throws

    /// Tells listeners that the change feed moved (NOTIFY, delivered on commit). SQLite: nothing.
    func notifyChange(sequence: Int64) async throws
}

/// A database that runs transactions.
protocol SQLBackend: Sendable {
    var dialect: SQLDialect { get }

    /// Runs `body` in one transaction: committed if it returns, rolled back if it throws.
    func withTransaction<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result

    /// Runs `body`, which must issue exactly one writing statement, as its own atomic statement:
    /// where a backend can skip BEGIN and COMMIT (SQLite's autocommit) that saves two round trips
    /// per audit batch, which every key operation waits for.
    func withSingleStatement<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result

    /// Runs `body`, several multi-row inserts (the audit shipper's batch), in one transaction like
    /// `withTransaction`. SQLite keeps each insert's statement journal in memory here instead of
    /// in a temporary file (`SQLiteBackend`).
    func withBulkInsertTransaction<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result

    /// Like `withBulkInsertTransaction`, for work no caller is waiting on (the journal's shipper):
    /// where the backend does the database's work on a thread of this process (SQLite), that
    /// thread runs at a lowered CPU priority, so the threads answering callers go first when both
    /// want a core.
    func withBackgroundBulkInsertTransaction<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result

    /// Runs a read-only `body` without taking the write lock: PostgreSQL `READ ONLY`, SQLite a
    /// `BEGIN DEFERRED` on a separate reader connection (WAL), so the authorization read path does
    /// not queue behind writers.
    func withReadTransaction<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result

    /// Wakes the returned stream whenever a change is committed anywhere, as far as the database
    /// can tell (LISTEN/NOTIFY), and each time listening (re)starts, since notifications sent
    /// while it was down are lost. Each element is how many times listening has started so far,
    /// so a reader that skipped elements still sees a restart. `nil` when the backend can only
    /// be polled. `retryDelay`: the first wait after listening fails, doubling to 30 s.
    func changeNotifications(retryDelay: Duration) -> AsyncStream<Int>?

    func close() async throws
}

extension SQLBackend {
    /// By default one statement is one transaction like any other.
    func withSingleStatement<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result {
        try await withTransaction(body)
    }

    /// By default a bulk insert is a transaction like any other.
    func withBulkInsertTransaction<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result {
        try await withTransaction(body)
    }

    /// By default (PostgreSQL: the work is the server's) the same as a bulk insert.
    func withBackgroundBulkInsertTransaction<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result {
        try await withBulkInsertTransaction(body)
    }
}

/// The advisory locks fedbroker takes. Fixed 64-bit keys (`fedbrkr` in ASCII, plus a small
/// discriminator), so they never collide with another application's locks on a shared server.
struct AdvisoryLockKey: Hashable, Sendable {
    let rawValue: Int64

    private static let base: Int64 = 0x6665_6462_726B_7200

    /// Held while migrations run, so replicas that start together migrate once.
    static let migrations = AdvisoryLockKey(rawValue: base | 0x01)
    /// Held while appending to the change feed, so sequence numbers commit in order.
    static let changeFeed = AdvisoryLockKey(rawValue: base | 0x02)
    /// Held while placing tenants and counting or creating slots, so the 20-slot limit and the
    /// least-loaded placement hold under concurrent writers.
    static let slotAllocation = AdvisoryLockKey(rawValue: base | 0x03)
    /// Held while creating, claiming or advancing a slot job, so two replicas never both take
    /// over an expired lease, and a job is created only when no other is open.
    static let slotJobs = AdvisoryLockKey(rawValue: base | 0x04)
    /// Held from an audit insert to its commit (PostgreSQL), so `audit_records.seq` commits in
    /// order: a reader paging by sequence (`GET /v1/audit`'s cursor, an exporter) never passes
    /// a sequence that a transaction still open commits later. Taken after a transaction's other
    /// locks and before `changeFeed`, in that order everywhere, so the two cannot deadlock.
    static let auditOrder = AdvisoryLockKey(rawValue: base | 0x05)
}
