import FedBrokerCore
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import Synchronization
import _ConnectionPoolModule

/// PostgreSQL through a pooled `PostgresClient`.
///
/// The client's `run()` is driven by a task the backend owns (started in `connect`, cancelled in
/// `close`), so callers cannot forget it (SWIFT-STACK.md pitfall 6).
final class PostgresBackend: SQLBackend {
    static let notificationChannel = "fedbroker_changes"

    let dialect = SQLDialect.postgres
    private let client: PostgresClient
    private let runTask: Task<Void, Never>
    private let logger: Logger
    private let settings: PostgresSettings

    private init(client: PostgresClient, runTask: Task<Void, Never>, settings: PostgresSettings, logger: Logger) {
        self.client = client
        self.runTask = runTask
        self.settings = settings
        self.logger = logger
    }

    /// Connects, first with one direct connection so that a server that is down, or whose
    /// certificate is not trusted, fails now with `databaseUnavailable` and a clear message. The
    /// probe as a whole (TCP, TLS, startup) is bounded by `connectTimeout`: a server that accepts
    /// and never answers fails too.
    static func connect(_ settings: PostgresSettings, logger: Logger) async throws -> PostgresBackend {
        let context = "connecting to \(settings.redactedDescription)"
        do {
            var connectionConfiguration = PostgresConnection.Configuration(
                host: settings.host, port: settings.port, username: settings.username, password: settings.password,
                database: settings.database, tls: try settings.connectionTLS()
            )
            connectionConfiguration.options.connectTimeout = .milliseconds(Self.milliseconds(settings.connectTimeout))
            let timeout = settings.connectTimeout
            let probeConfiguration = connectionConfiguration
            try await StoreDeadline.race(until: ContinuousClock.now.advanced(by: timeout)) {
                let probe = try await PostgresConnection.connect(
                    configuration: probeConfiguration, id: 0, logger: logger
                )
                try await probe.close()
            } timeout: {
                BrokerError(.databaseUnavailable, "PostgreSQL did not complete the connection within \(timeout) (\(context))")
            }
        } catch {
            throw PostgresBackend.map(error, context: context, sslMode: settings.sslMode)
        }

        var configuration = PostgresClient.Configuration(
            host: settings.host, port: settings.port, username: settings.username, password: settings.password,
            database: settings.database, tls: settings.clientTLS
        )
        configuration.options.maximumConnections = settings.maximumConnections
        configuration.options.connectTimeout = settings.connectTimeout
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        let runTask = Task { await client.run() }
        return PostgresBackend(client: client, runTask: runTask, settings: settings, logger: logger)
    }

    /// Runs `body` in a `READ COMMITTED` transaction (explicitly: the advisory-lock-then-read
    /// pattern of placement and the slot limit relies on each statement seeing what committed
    /// before the lock was granted) with `statement_timeout` and `lock_timeout` set for it alone,
    /// so no call waits without bound (invariant 5).
    ///
    /// A body the server aborts with a serialization failure or a deadlock (40001, 40P01) is run
    /// again, at most `transactionAttempts` times in all, after a short jittered back-off; then
    /// `transactionConflict` is thrown. `CancellationError` is rethrown unchanged.
    func withTransaction<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result {
        try await self.withRetries(readOnly: false, body)
    }

    func withReadTransaction<Result: Sendable>(
        _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result {
        try await self.withRetries(readOnly: true, body)
    }

    private func withRetries<Result: Sendable>(
        readOnly: Bool, _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result {
        let attempts = max(1, self.settings.transactionAttempts)
        var attempt = 1
        while true {
            do {
                return try await self.transactionOnce(readOnly: readOnly, body)
            } catch let error as BrokerError where error.code == .transactionConflict && attempt < attempts {
                self.logger.debug(
                    "transaction aborted by the server; retrying",
                    metadata: ["attempt": "\(attempt)", "error": "\(String(reflecting: error))"])
                // 5–20 ms, then 10–40 ms, …: spreads the retries of transactions that collided.
                let base = 5 << min(attempt - 1, 6)
                try await Task.sleep(for: .milliseconds(Int.random(in: base...(4 * base))))
                attempt += 1
            }
        }
    }

    private func transactionOnce<Result: Sendable>(
        readOnly: Bool, _ body: @Sendable (any SQLSession) async throws -> Result
    ) async throws -> Result {
        let logger = self.logger
        // Within a request's deadline (`withStoreDeadline`) the server gives up when the caller does.
        let deadline = StoreDeadline.current
        let left = deadline?.remaining ?? .seconds(86_400)
        let statementTimeout = "\(Self.milliseconds(min(self.settings.statementTimeout, left)))ms"
        let lockTimeout = "\(Self.milliseconds(min(self.settings.lockTimeout, left)))ms"
        do {
            // The lease race needs an escaping closure; `body` does not outlive this call, because
            // the race's task group finishes before `withPooledConnection` returns.
            return try await withoutActuallyEscaping(body) { body in
                try await self.withPooledConnection(deadline: deadline) { connection in
                    let session = PostgresSession(
                        connection: connection, logger: logger,
                        answerWithin: min(self.settings.statementTimeout, left) + self.settings.connectTimeout)
                    try await session.run(
                        readOnly ? "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY" : "BEGIN ISOLATION LEVEL READ COMMITTED")
                    do {
                        // set_config(…, true) is SET LOCAL with bind parameters.
                        _ = try await session.query(
                            "SELECT set_config('statement_timeout', ?, true) AS s, set_config('lock_timeout', ?, true) AS l",
                            [.text(statementTimeout), .text(lockTimeout)])
                        let result = try await body(session)
                        try await Self.commit(session, sslMode: self.settings.sslMode)
                        return result
                    } catch {
                        // In a task of its own, so a cancelled caller still rolls back before the
                        // connection returns to the pool. A failed ROLLBACK means the connection is gone;
                        // the server rolls back then. None on a connection already closed (a statement
                        // left unanswered): postgres-nio would never answer it either.
                        if !connection.isClosed { await Task { try? await session.run("ROLLBACK") }.value }
                        throw error
                    }
                }
            }
        } catch {
            throw PostgresBackend.map(error, context: "transaction", sslMode: self.settings.sslMode)
        }
    }

    /// Sends COMMIT. When its answer is lost (the connection failed, or the statement was left
    /// unanswered), the server may still have committed: it received the COMMIT and may have run
    /// it. The error says so, so that an operator or a caller reads the change back instead of
    /// assuming it did not happen (a retry may then meet `unique_conflict` or `version_conflict`
    /// for a change that did commit). An error the server itself sent is an answer: the
    /// transaction rolled back, and the error stays as it is.
    static func commit(_ session: PostgresSession, sslMode: PostgresSettings.SSLMode) async throws {
        do {
            try await session.run("COMMIT")
        } catch {
            guard (error as? PSQLError)?.code != .server else { throw error }
            let mapped = map(error, context: "COMMIT", sslMode: sslMode)
            guard let failure = mapped as? BrokerError, failure.code == .databaseUnavailable else { throw error }
            throw BrokerError(
                .databaseUnavailable,
                "PostgreSQL's answer to COMMIT was lost, so the change may have committed; read it back before retrying (\(failure.message))",
                underlying: failure.underlying ?? error)
        }
    }

    /// Leases a pooled connection for `body`, waiting at most `connectTimeout` for one. The pool
    /// itself queues a lease while it cannot connect until its circuit breaker trips, a minute
    /// later; a server that is down must instead fail the call soon, as `databaseUnavailable`.
    /// Once leased, `body` runs to its end (its statements are bounded by their own timeouts).
    private func withPooledConnection<Result: Sendable>(
        deadline: StoreDeadline?, _ body: @escaping @Sendable (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        let lease = LeaseGate()
        deadline?.connectionWaitBegan()
        defer {
            if !lease.isLeased { deadline?.connectionWaitEnded() }
        }
        let client = self.client
        let timeout = self.settings.connectTimeout
        // Thrown by whichever side sees the timer win, so the caller gets it whatever order the
        // group reports the two in.
        let expired = BrokerError(
            .databaseUnavailable,
            "no PostgreSQL connection within \(timeout) (store.connectTimeoutSeconds): the server is down, unreachable or every pooled connection is busy")
        return try await withThrowingTaskGroup(of: Result?.self) { group in
            group.addTask {
                try await client.withConnection { connection in
                    guard lease.move(to: .leased) else { throw expired }
                    deadline?.connectionWaitEnded()
                    return try await body(connection)
                }
            }
            group.addTask {
                guard (try? await Task.sleep(for: timeout)) != nil else { return nil }
                guard lease.move(to: .expired) else { return nil }
                throw expired
            }
            while let next = try await group.next() {
                if let value = next {
                    group.cancelAll()
                    return value
                }
            }
            throw CancellationError()
        }
    }

    /// Whether the lease or its timer came first; exactly one of them does.
    private final class LeaseGate: Sendable {
        enum State { case waiting, leased, expired }
        private let state = Mutex(State.waiting)

        /// Moves from `waiting` to `next`; false when the other side already moved.
        func move(to next: State) -> Bool {
            self.state.withLock { state in
                guard state == .waiting else { return false }
                state = next
                return true
            }
        }

        var isLeased: Bool { self.state.withLock { $0 == .leased } }
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return max(1, seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }

    /// How long LISTEN must have held for its loss to be retried after `retryDelay` again, not
    /// after the backed-off delay.
    static let listenHeld: Duration = .seconds(30)

    func changeNotifications(retryDelay: Duration) -> AsyncStream<Int>? {
        let (stream, continuation) = AsyncStream<Int>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let client = self.client
        let logger = self.logger
        let clientRun = self.runTask
        let task = Task {
            // How many times LISTEN has started, and since when the current one holds (nil: not now).
            let listening = Mutex<(starts: Int, since: ContinuousClock.Instant?)>((0, nil))
            var delay = retryDelay
            // A lost connection (a restarted server, a failover, a killed backend) ends LISTEN;
            // without it, followers would learn of changes only by polling until the process
            // restarts. So listen again, backing off while the server stays away.
            while !Task.isCancelled {
                listening.withLock { $0.since = nil }
                var failure: (any Error)?
                do {
                    try await client.withConnection { connection in
                        try await connection.listen(on: Self.notificationChannel, consume: { notifications in
                            // Listening now: anything committed from here on wakes us. Wake once so
                            // the follower re-reads whatever committed while LISTEN was down.
                            let count = listening.withLock { state -> Int in
                                state = (state.starts + 1, .now)
                                return state.starts
                            }
                            if count > 1 { logger.notice("LISTEN on the change feed is back", metadata: ["fb.listenStarts": "\(count)"]) }
                            continuation.yield(count)
                            for try await _ in notifications {
                                continuation.yield(count)
                            }
                        })
                    }
                } catch {
                    failure = error
                }
                // Cancelled, or the backend closed (its client is gone): nothing to listen again for.
                if Task.isCancelled || clientRun.isCancelled { break }
                // Listening held for a while: the next try comes soon. Failing to start, or a
                // connection cut again and again soon after LISTEN (an idle timeout, a proxy),
                // backs off, so the warnings slow down too.
                if let since = listening.withLock({ $0.since }), ContinuousClock.now - since >= Self.listenHeld { delay = retryDelay }
                logger.warning(
                    "LISTEN on the change feed ended or could not start; followers poll until it is back",
                    metadata: [
                        "error": "\(failure.map { String(reflecting: PostgresBackend.map($0, context: "LISTEN")) } ?? "the notifications ended")",
                        "fb.retryInSeconds": "\(Double(PostgresBackend.milliseconds(delay)) / 1000)",
                    ])
                guard (try? await Task.sleep(for: delay)) != nil else { break }
                delay = min(delay * 2, .seconds(30))
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    func close() async throws {
        self.runTask.cancel()
        await self.runTask.value
    }

    /// Maps driver errors to `BrokerError`; `BrokerError`s thrown by the store logic pass through,
    /// and so does `CancellationError` (a cancelled caller is not a database failure). A TLS
    /// failure says so, with the mode, rather than "unreachable": the fix is a CA or a host name.
    static func map(_ error: any Error, context: String, sslMode: PostgresSettings.SSLMode? = nil) -> any Error {
        if error is CancellationError { return error }
        if let error = error as? BrokerError { return error }
        if Self.isTLSFailure(error) {
            let mode = sslMode.map { " (sslmode=\($0.rawValue))" } ?? ""
            return BrokerError(
                .databaseUnavailable,
                "TLS with PostgreSQL failed\(mode): the server's certificate was not accepted or the server does not offer TLS; check sslrootcert, the host name in the URL and the server's ssl setting (\(context))",
                underlying: error)
        }
        if let error = error as? PSQLError {
            if error.code == .server, let state = error.serverInfo?[.sqlState] {
                return Self.map(sqlState: state, error, constraint: error.serverInfo?[.constraintName], context: context)
            }
            switch error.code {
            case .connectionError, .serverClosedConnection, .clientClosedConnection, .sslUnsupported,
                .failedToAddSSLHandler, .uncleanShutdown, .poolClosed:
                return BrokerError(.databaseUnavailable, "PostgreSQL is unreachable (\(context))", underlying: error)
            case .queryCancelled:
                return CancellationError()
            default:
                return BrokerError(.storeFailure, "PostgreSQL client error during \(context)", underlying: error)
            }
        }
        if let error = error as? ConnectionPoolError {
            if error == .requestCancelled { return CancellationError() }
            return BrokerError(.databaseUnavailable, "PostgreSQL is unreachable (\(context))", underlying: error)
        }
        if error is IOError {
            return BrokerError(.databaseUnavailable, "PostgreSQL is unreachable (\(context))", underlying: error)
        }
        if error is ColumnTypeError {
            return BrokerError(.storeFailure, "unexpected column type during \(context)", underlying: error)
        }
        return BrokerError(.storeFailure, "store failure during \(context)", underlying: error)
    }

    /// A failed handshake or certificate check, or a server that refused TLS when it was required.
    static func isTLSFailure(_ error: any Error) -> Bool {
        if error is NIOSSLError || error is NIOSSLExtraError || error is BoringSSLError { return true }
        if let error = error as? PSQLError {
            if error.code == .sslUnsupported || error.code == .failedToAddSSLHandler { return true }
            if let underlying = error.underlying { return Self.isTLSFailure(underlying) }
        }
        return false
    }

    /// The SQLSTATE classes fedbroker tells apart (PostgreSQL appendix A).
    static func map(sqlState state: String, _ error: any Error, constraint: String?, context: String) -> BrokerError {
        switch state {
        case "23505":
            return BrokerError(.uniqueConflict, "\(constraint ?? "a unique key") is already taken", underlying: error)
        case "40001", "40P01":
            return BrokerError(
                .transactionConflict, "PostgreSQL aborted the transaction (\(state)) during \(context)", underlying: error)
        case "57014", "55P03":
            return BrokerError(
                .storeTimeout, "PostgreSQL statement or lock wait timed out (\(state)) during \(context)",
                underlying: error)
        case "57P01", "57P02", "57P03":
            return BrokerError(
                .databaseUnavailable, "PostgreSQL is shutting down or not accepting connections (\(state))",
                underlying: error)
        case _ where state.hasPrefix("22") || state.hasPrefix("23"):
            return BrokerError(.invalidData, "PostgreSQL rejected a value (\(state)) during \(context)", underlying: error)
        case _ where state.hasPrefix("08"):
            return BrokerError(.databaseUnavailable, "PostgreSQL connection failure (\(state))", underlying: error)
        case _ where state.hasPrefix("53"):
            return BrokerError(.databaseUnavailable, "PostgreSQL is out of resources (\(state))", underlying: error)
        default:
            return BrokerError(.storeFailure, "PostgreSQL error \(state) during \(context)", underlying: error)
        }
    }
}

/// A leased connection inside a transaction.
struct PostgresSession: SQLSession {
    let connection: PostgresConnection
    let logger: Logger
    /// How long a statement may go unanswered before the client gives up on it and closes the
    /// connection: the transaction's `statement_timeout` plus the connect timeout, so the
    /// server's own timeout answers first whenever the server can answer at all.
    let answerWithin: Duration
    var dialect: SQLDialect { .postgres }

    func run(_ sql: String) async throws {
        let (connection, logger) = (self.connection, self.logger)
        try await self.answered { _ = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger) }
    }

    /// What the server's `statement_timeout` cannot bound: postgres-nio 1.33 drops a statement
    /// written to a connection the server has just closed without ever answering it
    /// (vapor/postgres-nio#487; a test whose server was stopped under its pooled connection hung
    /// for good in its ROLLBACK), and a server host that vanishes without closing the socket never
    /// answers either. Past `answerWithin` the statement is abandoned, and the connection closed so
    /// the pool drops it instead of leasing it again.
    private func answered<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let limit = self.answerWithin
        do {
            // Not abandoned when the caller is cancelled: the request's own deadline race answers
            // the caller, and this statement must end before the next is sent on the connection.
            return try await StoreDeadline.race(until: ContinuousClock.now.advanced(by: limit), abandonOnCancel: false, body) {
                StatementUnanswered()
            }
        } catch is StatementUnanswered {
            // Closed before the lease ends, so the pool learns it is gone before leasing it again.
            try? await self.connection.close().get()
            throw BrokerError(
                .databaseUnavailable,
                "PostgreSQL did not answer a statement within \(limit) (statement_timeout plus store.connectTimeoutSeconds); the connection is closed")
        }
    }

    private struct StatementUnanswered: Error {}

    func execute(_ sql: String) async throws {
        try await self.run(sql)
    }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        var bindings = PostgresBindings(capacity: binds.count)
        for value in binds {
            switch value {
            case .text(let text): bindings.append(text)
            case .integer(let integer): bindings.append(integer)
            case .bool(let bool): bindings.append(bool)
            case .null: bindings.append(String?.none)
            case .textArray(let texts): try bindings.append(PostgresNullableTextArray(texts))
            case .integerArray(let integers): bindings.append(integers)
            }
        }
        let statement = PostgresQuery(unsafeSQL: Self.numberPlaceholders(sql), binds: bindings)
        let (connection, logger) = (self.connection, self.logger)
        return try await self.answered {
            let rows = try await connection.query(statement, logger: logger)
            var result: [SQLRow] = []
            for try await row in rows {
                var values: [String: SQLValue] = [:]
                for cell in row {
                    values[cell.columnName] = try Self.value(of: cell)
                }
                result.append(SQLRow(values: values))
            }
            return result
        }
    }

    func lock(_ key: AdvisoryLockKey) async throws {
        _ = try await self.query("SELECT pg_advisory_xact_lock(?) IS NULL AS locked", [.integer(key.rawValue)])
    }

    func notifyChange(sequence: Int64) async throws {
        _ = try await self.query(
            "SELECT pg_notify(?, ?) IS NULL AS notified",
            [.text(PostgresBackend.notificationChannel), .text(String(sequence))]
        )
    }

    /// `?` → `$1`, `$2`, …. The store's SQL has no `?` inside literals.
    static func numberPlaceholders(_ sql: String) -> String {
        var output = ""
        output.reserveCapacity(sql.utf8.count + 16)
        var index = 0
        for character in sql {
            if character == "?" {
                index += 1
                output += "$\(index)"
            } else {
                output.append(character)
            }
        }
        return output
    }

    private static func value(of cell: PostgresCell) throws -> SQLValue {
        if cell.bytes == nil { return .null }
        switch cell.dataType {
        case .bool: return .bool(try cell.decode(Bool.self))
        case .int2, .int4, .int8: return .integer(try cell.decode(Int64.self))
        default: return .text(try cell.decode(String.self))
        }
    }
}

extension PostgresBackend {
    /// Creates (or drops) a database outside any transaction. Tests only: each test gets its own
    /// database on the throwaway server so that they can run in parallel.
    static func executeOutsideTransactionForTesting(_ settings: PostgresSettings, _ sql: String) async throws {
        let logger = Logger(label: "fedbroker.store.test-admin")
        let connection = try await PostgresConnection.connect(
            configuration: PostgresConnection.Configuration(
                host: settings.host, port: settings.port, username: settings.username, password: settings.password,
                database: settings.database, tls: try settings.connectionTLS()),
            id: 0, logger: logger)
        do {
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        } catch {
            try? await connection.close()
            throw PostgresBackend.map(error, context: "test administration")
        }
        try await connection.close()
    }
}
