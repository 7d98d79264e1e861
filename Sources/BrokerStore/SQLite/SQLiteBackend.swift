import FedBrokerCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import SQLiteNIO
import Synchronization

/// SQLite, the embedded single-node store: one connection per process, transactions serialized
/// in-process by `AsyncSerialLock` and across processes by `BEGIN IMMEDIATE` plus a busy timeout.
///
/// WAL journal with `synchronous=FULL`: a committed transaction survives the process being killed
/// and the machine losing power; an uncommitted one leaves no trace (invariant 4).
final class SQLiteBackend: SQLBackend {
    let dialect = SQLDialect.sqlite
    /// The writer connection; replaced when a failed ROLLBACK leaves it inside a transaction.
    private let writer: Mutex<SQLiteConnection>
    /// Read-only transactions (`BEGIN DEFERRED`, `query_only`) on a connection of their own: in
    /// WAL mode they read the last commit while a writer holds the write lock.
    private let reader: SQLiteConnection
    private let readerLock = AsyncSerialLock()
    private let readerThreadPool: NIOThreadPool
    private let logger: Logger
    /// Shared by every backend of this process on the same file: in-process writers queue in FIFO
    /// order instead of spinning in SQLite's busy handler, which is unfair and, under load, can starve
    /// one connection past the busy timeout. Other processes are kept out by SQLite's own lock.
    private let lock: AsyncSerialLock
    private let path: String
    /// Its own thread: a statement blocked in SQLite's busy wait (another connection holds the write
    /// lock) must not occupy a shared pool thread the lock holder needs to reach COMMIT.
    private let threadPool: NIOThreadPool
    /// The journal shipper's connection, opened on its first batch and used only under `lock`:
    /// its own thread, at a lowered CPU priority (`LowPriorityThread`), `temp_store = MEMORY`
    /// (it only runs bulk inserts; see `withBulkInsertTransaction`). A second connection rather
    /// than lowering `threadPool`, whose writes (a tenant's state, an admin change, the audit
    /// record an answer waits for when the journal is off) someone is waiting on.
    private let shipping = Mutex<(connection: SQLiteConnection, threadPool: NIOThreadPool)?>(nil)
    /// Set by `close()` under `lock`: a background batch after it fails like any write instead of
    /// opening the shipping connection again.
    private let closed = Mutex(false)

    private static let locksByPath = Mutex<[String: AsyncSerialLock]>([:])
    /// The writer connection's `temp_store`: in memory (true) only for bulk inserts, SQLite's
    /// default (false) otherwise, unknown (nil) after a switch that failed. Switched by the holder
    /// of `lock` only (the switch and the statements after it must not interleave with another
    /// caller's).
    private let temporaryStorageInMemory = Mutex<Bool?>(false)

    /// The writer's `temp_store` as last switched (tests: which path a write took).
    var writerTemporaryStorageInMemory: Bool? { self.temporaryStorageInMemory.withLock { $0 } }

    private init(
        connection: SQLiteConnection, reader: SQLiteConnection, path: String, threadPool: NIOThreadPool,
        readerThreadPool: NIOThreadPool, logger: Logger
    ) {
        self.writer = Mutex(connection)
        self.reader = reader
        self.readerThreadPool = readerThreadPool
        self.logger = logger
        let key = URL(fileURLWithPath: path).standardizedFileURL.path
        self.lock = Self.locksByPath.withLock { locks in
            if let lock = locks[key] { return lock }
            let lock = AsyncSerialLock()
            locks[key] = lock
            return lock
        }
        self.path = path
        self.threadPool = threadPool
    }

    static func open(path: String, logger: Logger) async throws -> SQLiteBackend {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw BrokerError(.databaseUnavailable, "cannot create the SQLite directory \(directory)", underlying: error)
        }
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        let readerThreadPool = NIOThreadPool(numberOfThreads: 1)
        readerThreadPool.start()
        do {
            let connection = try await Self.connect(path: path, threadPool: threadPool, readOnly: false, logger: logger)
            let reader: SQLiteConnection
            do {
                reader = try await Self.connect(path: path, threadPool: readerThreadPool, readOnly: true, logger: logger)
            } catch {
                try? await connection.close()
                throw error
            }
            return SQLiteBackend(
                connection: connection, reader: reader, path: path, threadPool: threadPool,
                readerThreadPool: readerThreadPool, logger: logger)
        } catch {
            try? await threadPool.shutdownGracefully()
            try? await readerThreadPool.shutdownGracefully()
            throw error
        }
    }

    /// Opens one connection with the store's pragmas.
    private static func connect(
        path: String, threadPool: NIOThreadPool, readOnly: Bool, logger: Logger
    ) async throws -> SQLiteConnection {
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(
                storage: .file(path: path), threadPool: threadPool, logger: logger,
                on: MultiThreadedEventLoopGroup.singleton.any())
        } catch {
            throw BrokerError(.databaseUnavailable, "cannot open the SQLite database at \(path)", underlying: error)
        }
        do {
            let session = SQLiteSession(connection: connection)
            // busy_timeout first: another process may hold the write lock while we switch to WAL.
            _ = try await session.query("PRAGMA busy_timeout = 30000", [])
            if readOnly {
                _ = try await session.query("PRAGMA query_only = ON", [])
            } else {
                _ = try await session.query("PRAGMA journal_mode = WAL", [])
                _ = try await session.query("PRAGMA synchronous = FULL", [])
                _ = try await session.query("PRAGMA foreign_keys = ON", [])
            }
            return connection
        } catch {
            try? await connection.close()
            throw SQLiteBackend.map(error, context: "opening \(path)")
        }
    }

    func withTransaction<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result {
        try await self.transaction(temporaryStorageInMemory: false, body)
    }

    /// A multi-row `INSERT` inside a transaction needs a statement journal (to undo that statement
    /// alone if it fails). Past 64 KiB SQLite spills it to a temporary file, which it creates on
    /// disk (SQLite's temporary directory: `SQLITE_TMPDIR`, `TMPDIR`, else `/var/tmp`, `/usr/tmp`,
    /// `/tmp`) and writes 4 KiB at a time: several files a second for the audit shipper under load
    /// (docs/operations.md, "Both stores in one run").
    /// `temp_store = MEMORY` keeps it in memory. That is for these transactions only: the setting
    /// also lifts the sorter's spill threshold, so an index built over a large table by a
    /// migration would sort it wholly in memory.
    func withBulkInsertTransaction<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result {
        try await self.transaction(temporaryStorageInMemory: true, body)
    }

    private func transaction<Result: Sendable>(
        temporaryStorageInMemory inMemory: Bool, _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result {
        do {
            return try await self.lock.withLock {
                let session = SQLiteSession(connection: self.writer.withLock { $0 })
                try await self.useTemporaryStorage(inMemory: inMemory, session)
                return try await self.transaction(session, on: .writer, body)
            }
        } catch {
            throw SQLiteBackend.map(error, context: "transaction")
        }
    }

    /// `body` between `BEGIN` and `COMMIT` on `connection`, rolled back if it throws; with the
    /// connection's lock held. A writing connection begins IMMEDIATE: it takes the write lock now,
    /// so a read-then-write transaction can never be refused half-way (SQLITE_BUSY_SNAPSHOT) by
    /// another process's commit. The reader begins DEFERRED and never takes it.
    private func transaction<Result: Sendable>(
        _ session: SQLiteSession, on connection: Connection, _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result {
        _ = try await session.query(connection == .reader ? "BEGIN DEFERRED" : "BEGIN IMMEDIATE", [])
        do {
            let result = try await body(session)
            _ = try await session.query("COMMIT", [])
            return result
        } catch {
            await self.rollBack(session, connection: connection)
            throw error
        }
    }

    /// On the shipping connection (see `shipping`), under the same writer lock as every write: the
    /// lock's holder runs at a lowered priority for the batch's few milliseconds, so a write
    /// someone waits on may wait that much longer behind it when the cores are busy.
    func withBackgroundBulkInsertTransaction<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result {
        do {
            return try await self.lock.withLock {
                let session = SQLiteSession(connection: try await self.shippingConnection())
                return try await self.transaction(session, on: .shipping, body)
            }
        } catch {
            throw SQLiteBackend.map(error, context: "background transaction")
        }
    }

    /// The shipping connection, opened if it is not; with `lock` held.
    private func shippingConnection() async throws -> SQLiteConnection {
        if let open = self.shipping.withLock({ $0?.connection }) { return open }
        guard !self.closed.withLock({ $0 }) else { throw BrokerError(.databaseUnavailable, "the SQLite store is closed") }
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        do {
            if try await !threadPool.runIfActive({ LowPriorityThread.lowerCurrentThread() }) {
                self.logger.debug("the audit shipper's SQLite thread runs at the process's priority (no per-thread nice here)")
            }
            let connection = try await Self.connect(path: self.path, threadPool: threadPool, readOnly: false, logger: self.logger)
            do {
                _ = try await SQLiteSession(connection: connection).query("PRAGMA temp_store = MEMORY", [])
            } catch {
                try? await connection.close()
                throw SQLiteBackend.map(error, context: "opening the shipping connection")
            }
            self.shipping.withLock { $0 = (connection, threadPool) }
            return connection
        } catch {
            try? await threadPool.shutdownGracefully()
            throw error
        }
    }

    /// The shipping connection's thread's nice value; nil before its first batch and after
    /// `close()` (tests).
    func shippingThreadNice() async throws -> Int32? {
        guard let threadPool = self.shipping.withLock({ $0?.threadPool }) else { return nil }
        return try await threadPool.runIfActive { LowPriorityThread.currentNice() }
    }

    /// The writer connection's thread's nice value (tests: it keeps the process's).
    func writerThreadNice() async throws -> Int32 {
        try await self.threadPool.runIfActive { LowPriorityThread.currentNice() }
    }

    /// Closes the shipping connection, if open; with `lock` held (a failed ROLLBACK left it in a
    /// transaction, or the backend closes). The next batch opens another.
    private func closeShipping() async {
        guard let open = self.shipping.withLock({ state in state.take() }) else { return }
        try? await open.connection.close()
        try? await open.threadPool.shutdownGracefully()
    }

    /// Autocommit: the one statement is its own transaction, durable as any commit
    /// (`synchronous=FULL`), under the same writer lock.
    func withSingleStatement<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result {
        do {
            return try await self.lock.withLock {
                let session = SQLiteSession(connection: self.writer.withLock { $0 })
                try await self.useTemporaryStorage(inMemory: false, session)
                return try await body(session)
            }
        } catch {
            throw SQLiteBackend.map(error, context: "statement")
        }
    }

    func withReadTransaction<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result {
        do {
            return try await self.readerLock.withLock {
                try await self.transaction(SQLiteSession(connection: self.reader), on: .reader, body)
            }
        } catch {
            throw SQLiteBackend.map(error, context: "read transaction")
        }
    }

    /// Switches the writer's `temp_store` when the statements about to run want the other setting;
    /// outside a transaction, with `lock` held. A failed switch leaves the setting unknown, so the
    /// next caller switches again whatever it wants.
    private func useTemporaryStorage(inMemory: Bool, _ session: SQLiteSession) async throws {
        guard self.temporaryStorageInMemory.withLock({ $0 }) != inMemory else { return }
        self.temporaryStorageInMemory.withLock { $0 = nil }
        _ = try await session.query(inMemory ? "PRAGMA temp_store = MEMORY" : "PRAGMA temp_store = DEFAULT", [])
        self.temporaryStorageInMemory.withLock { $0 = inMemory }
    }

    private enum Connection { case writer, reader, shipping }

    /// Rolls back in a task of its own (a cancelled caller must not leave the connection inside an
    /// open transaction). When ROLLBACK fails, checks the connection is back in autocommit mode (a
    /// `BEGIN` succeeds); if it is not, the writer connection is replaced (the shipping one
    /// closed, to be opened again by the next batch) so that one failure cannot wedge every
    /// later transaction.
    private func rollBack(_ session: SQLiteSession, connection: Connection) async {
        await Task {
            do {
                _ = try await session.query("ROLLBACK", [])
            } catch {
                if (try? await session.query("BEGIN DEFERRED", [])) != nil {
                    _ = try? await session.query("ROLLBACK", [])
                    return  // SQLite had already rolled back (e.g. after SQLITE_FULL)
                }
                self.logger.error(
                    "SQLite ROLLBACK failed and the connection is still in a transaction; reopening it",
                    metadata: ["error": "\(String(reflecting: error))"])
                if connection == .shipping { return await self.closeShipping() }
                guard connection == .writer else { return }
                do {
                    let fresh = try await Self.connect(
                        path: self.path, threadPool: self.threadPool, readOnly: false, logger: self.logger)
                    let old = self.writer.withLock { connection in
                        let old = connection
                        connection = fresh
                        return old
                    }
                    self.temporaryStorageInMemory.withLock { $0 = false }  // a new connection has the default
                    try? await old.close()
                } catch {
                    self.logger.error(
                        "reopening the SQLite connection failed", metadata: ["error": "\(String(reflecting: error))"])
                }
            }
        }.value
    }

    func changeNotifications(retryDelay: Duration) -> AsyncStream<Int>? { nil }

    func close() async throws {
        // The shipping connection first: its thread must not outlive a close that fails later.
        try await self.lock.withLock {
            self.closed.withLock { $0 = true }
            await self.closeShipping()
        }
        try await self.readerLock.withLock {
            try await self.reader.close()
        }
        try await self.lock.withLock {
            try await self.writer.withLock { $0 }.close()
        }
        try await self.threadPool.shutdownGracefully()
        try await self.readerThreadPool.shutdownGracefully()
    }

    static func map(_ error: any Error, context: String) -> BrokerError {
        if let error = error as? BrokerError { return error }
        if let error = error as? SQLiteError {
            switch error.reason {
            case .constraintUniqueFailed, .constraintPrimaryKeyFailed:
                return BrokerError(.uniqueConflict, "unique key already taken (\(error.message))", underlying: error)
            case .constraint, .constraintCheckFailed, .constraintNotNullFailed, .constraintForeignKeyFailed,
                .constraintStrictDataTypeFailed, .constraintTriggerFailed, .mismatch, .tooBig:
                return BrokerError(.invalidData, "SQLite rejected a value during \(context)", underlying: error)
            case .cantOpen, .cantOpenDirectory, .cantOpenInvalidPath, .notADatabase, .readOnly, .readonlyDirectory,
                .permission, .busy, .busyTimeout, .locked, .ioError, .full:
                return BrokerError(.databaseUnavailable, "SQLite database unusable during \(context)", underlying: error)
            default:
                return BrokerError(.storeFailure, "SQLite error during \(context)", underlying: error)
            }
        }
        if error is ColumnTypeError {
            return BrokerError(.storeFailure, "unexpected column type during \(context)", underlying: error)
        }
        return BrokerError(.storeFailure, "store failure during \(context)", underlying: error)
    }
}

/// The one connection, inside a transaction.
struct SQLiteSession: SQLSession {
    let connection: SQLiteConnection
    var dialect: SQLDialect { .sqlite }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        let data = try binds.map { value -> SQLiteData in
            switch value {
            case .text(let text): .text(text)
            case .integer(let integer): .integer(SQLiteInt64(integer))
            case .bool(let bool): .integer(bool ? 1 : 0)
            case .null: .null
            case .textArray, .integerArray: throw BrokerError(.storeFailure, "an array bind reached SQLite, which has no arrays")
            }
        }
        let rows = RowCollector()
        try await self.connection.query(sql, data) { row in
            var values: [String: SQLValue] = [:]
            for column in row.columns {
                switch column.data {
                case .integer(let integer): values[column.name] = .integer(Int64(integer))
                case .text(let text): values[column.name] = .text(text)
                case .null: values[column.name] = .null
                case .float(let double):
                    // fedbroker writes no REAL; one in a hand-edited file (1e300, NaN) must not
                    // trap: a whole number is read as one, anything else as text, which an integer
                    // column's reader refuses with a typed error.
                    values[column.name] = Int64(exactly: double).map(SQLValue.integer) ?? .text("\(double)")
                case .blob(let buffer): values[column.name] = .text(String(buffer: buffer))
                }
            }
            rows.append(SQLRow(values: values))
        }
        return rows.collected
    }

    func execute(_ sql: String) async throws {
        _ = try await self.query(sql, [])  // SQLite takes `?` as is; nothing is rewritten
    }

    func lock(_ key: AdvisoryLockKey) async throws {
        // Every write transaction already holds SQLite's database-wide write lock (BEGIN IMMEDIATE).
    }

    func notifyChange(sequence: Int64) async throws {
        // Followers poll.
    }
}

/// Gathers rows from sqlite-nio's row callback, which runs on the connection's thread.
private final class RowCollector: Sendable {
    private let rows = Mutex<[SQLRow]>([])

    func append(_ row: SQLRow) { self.rows.withLock { $0.append(row) } }
    var collected: [SQLRow] { self.rows.withLock { $0 } }
}
