import FedBrokerCore
import Foundation
import Logging
import Synchronization

/// The `BrokerStore` over SQL, written once for PostgreSQL and SQLite.
///
/// Every decision (lifecycle, slot limit, placement) is made by FedBrokerCore's pure types on rows
/// read inside the same transaction that writes the result, its audit record and its change-feed
/// entry. The backend supplies the few dialect differences (placeholders, row locks, advisory
/// locks, NOTIFY).
public final class SQLBrokerStore: BrokerStore {
    let backend: any SQLBackend
    let clock: any WallClock
    let logger: Logger
    /// Rows per audit INSERT of a background batch (`appendAuditInBackground`).
    let backgroundAuditRowsPerStatement: Int

    init(backend: any SQLBackend, clock: any WallClock, logger: Logger, backgroundAuditRowsPerStatement: Int? = nil) {
        self.backend = backend
        self.clock = clock
        self.logger = logger
        self.backgroundAuditRowsPerStatement = backgroundAuditRowsPerStatement ?? Self.auditRowsPerStatement(backend.dialect)
    }

    /// Opens the store the configuration names. Does not migrate: call `migrate()` (the server does
    /// at start, `fedbroker migrate` does on demand).
    ///
    /// - Throws: `databaseUnavailable` when the database cannot be reached or opened;
    ///   `schemaTooNew` when a newer fedbroker has migrated it.
    public static func open(
        _ configuration: StoreConfiguration,
        clock: any WallClock = SystemWallClock(),
        logger: Logger = Logger(label: "fedbroker.store")
    ) async throws -> SQLBrokerStore {
        let backend: any SQLBackend
        switch configuration {
        case .postgres(let settings): backend = try await PostgresBackend.connect(settings, logger: logger)
        case .sqlite(let path): backend = try await SQLiteBackend.open(path: path, logger: logger)
        }
        let store = SQLBrokerStore(
            backend: backend, clock: clock, logger: logger, backgroundAuditRowsPerStatement: Self.backgroundAuditRowsPerStatement(configuration))
        // A database migrated by a newer fedbroker is refused before anything reads or writes it.
        do {
            let version = try await store.schemaVersion()
            let latest = EmbeddedMigrations.latestVersion(for: backend.dialect)
            if version > latest {
                throw BrokerError(
                    .schemaTooNew,
                    "the database schema is version \(version) but this fedbroker only knows up to \(latest); upgrade fedbroker")
            }
        } catch {
            try? await backend.close()
            throw error
        }
        return store
    }

    public func close() async throws {
        try await self.backend.close()
    }

    // MARK: - Schema

    public func migrate() async throws -> MigrationReport {
        let migrations = EmbeddedMigrations.migrations(for: self.backend.dialect)
        let latest = migrations.last?.version ?? 0
        let now = self.micros(self.clock.now)
        return try await self.backend.withTransaction { session in
            try await session.lock(.migrations)
            _ = try await session.query(
                """
                CREATE TABLE IF NOT EXISTS fedbroker_schema_migrations (
                    version INTEGER PRIMARY KEY, file TEXT NOT NULL, checksum TEXT NOT NULL,
                    applied_at_us BIGINT NOT NULL)
                """, [])
            let applied = try await session.query("SELECT version, checksum FROM fedbroker_schema_migrations", [])
                .map { (version: Int(try $0.integer("version")), checksum: try $0.text("checksum")) }
            try Migration.checkApplied(applied, against: migrations)
            let previous = applied.map(\.version).max() ?? 0
            var appliedNow: [String] = []
            for migration in migrations.dropFirst(applied.count) {
                for statement in migration.statements {
                    do {
                        try await session.execute(statement)
                    } catch {
                        throw BrokerError(
                            .migrationFailed, "migration \(migration.file) failed and was rolled back", underlying: error)
                    }
                }
                _ = try await session.query(
                    "INSERT INTO fedbroker_schema_migrations (version, file, checksum, applied_at_us) VALUES (?, ?, ?, ?)",
                    [.integer(Int64(migration.version)), .text(migration.file), .text(migration.checksum), .integer(now)])
                appliedNow.append(migration.file)
            }
            return MigrationReport(previousVersion: previous, applied: appliedNow, currentVersion: latest)
        }
    }

    /// For a process that must not run DDL (`store.migrateOnStart` false, the schema owned by a
    /// migration job): checks that every migration this binary knows has been applied.
    ///
    /// - Returns: the schema version.
    /// - Throws: `schemaBehind` when migrations are missing (`schemaTooNew` comes from `open`).
    public func verifySchemaIsCurrent() async throws -> Int {
        let current = try await schemaVersion()
        let latest = EmbeddedMigrations.latestVersion(for: backend.dialect)
        guard current >= latest else {
            throw BrokerError(
                .schemaBehind,
                "the database schema is version \(current) but this fedbroker needs \(latest); run `fedbroker migrate` (the migration job) first")
        }
        return current
    }

    /// The newest migration recorded in the database, or 0 when it has never been migrated.
    func schemaVersion() async throws -> Int {
        try await self.backend.withReadTransaction { session in
            let exists: Bool
            switch session.dialect {
            case .postgres:
                exists = try await session.query(
                    "SELECT to_regclass('fedbroker_schema_migrations') IS NOT NULL AS present", []
                ).first?.bool("present") ?? false
            case .sqlite:
                exists = try await !session.query(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'fedbroker_schema_migrations'", []
                ).isEmpty
            }
            guard exists else { return 0 }
            return Int(
                try await session.query("SELECT COALESCE(MAX(version), 0) AS v FROM fedbroker_schema_migrations", [])
                    .first?.integer("v") ?? 0)
        }
    }

    // MARK: - Tenants

    public func registerTenant(_ registration: TenantRegistration, actor: String) async throws -> Tenant {
        let now = self.clock.now
        return try await self.backend.withTransaction { session in
            // Placement reads every slot's load; the lock keeps concurrent registrations from all
            // picking the same "least loaded" slot.
            try await session.lock(.slotAllocation)
            try await self.checkUnregistered(session, registration)
            let slotID = try await self.placeTenant(session)
            let tenant = try await self.insertTenant(session, registration, slot: slotID, at: now)
            try await self.audit(
                session, actor: actor, tenant: tenant.id, operation: "tenant.registered",
                detail: slotID.map { "slot=\($0)" } ?? "slot=none", at: now)
            try await self.recordChange(session, .tenant, tenant.id.rawValue, tenant.version, at: now)
            return tenant
        }
    }

    public func tenant(_ id: TenantID) async throws -> Tenant {
        try await self.backend.withReadTransaction { session in
            guard let tenant = try await self.fetchTenant(session, id, forUpdate: false) else {
                throw BrokerError(.notFound, "no tenant \(id)")
            }
            return tenant
        }
    }

    public func tenant(entraTenantID: EntraTenantID) async throws -> Tenant? {
        try await self.backend.withReadTransaction { session in
            try await self.fetchTenant(session, entraTenantID: entraTenantID)
        }
    }

    public func tenants() async throws -> [Tenant] {
        try await self.backend.withReadTransaction { session in
            try await session.query("SELECT \(Self.tenantColumns) FROM tenants ORDER BY id", []).map(Self.tenant(from:))
        }
    }

    public func transitionTenant(
        _ id: TenantID, expectedVersion: RecordVersion, event: TenantEvent, actor: String
    ) async throws -> Tenant {
        try await self.transitionTenant(id, expectedVersion: expectedVersion, event: event, reason: nil, actor: actor)
    }

    public func changeTenantKey(
        _ id: TenantID, expectedVersion: RecordVersion, to key: KeyReference, actor: String
    ) async throws -> Tenant {
        try await self.updateTenant(id, expectedVersion: expectedVersion, actor: actor) { _, tenant in
            let transition = try tenant.lifecycle.changeKey(to: key)
            return (transition.operation, "key=\(key)")
        }
    }

    public func assignTenant(
        _ id: TenantID, expectedVersion: RecordVersion, to slotID: FICSlotID, actor: String
    ) async throws -> Tenant {
        try await self.updateTenant(id, expectedVersion: expectedVersion, actor: actor) { session, tenant in
            guard tenant.state != .offboarded else {
                throw BrokerError(.illegalTenantTransition, "an offboarded tenant cannot be assigned a slot")
            }
            // Share-lock the target: it cannot be drained or retired until this commits.
            guard let slot = try await self.fetchSlot(session, slotID, lock: .share) else {
                throw BrokerError(.notFound, "no slot \(slotID)")
            }
            guard slot.state.acceptsTenants else {
                throw BrokerError(.slotNotAssignable, "slot \(slotID) is \(slot.state); tenants go only to active slots")
            }
            let previous = tenant.slotID
            tenant.slotID = slotID
            return ("tenant.slot_assigned", "from=\(previous?.rawValue ?? "none") to=\(slotID)")
        }
    }

    // MARK: - Slots

    public func createSlot(_ id: FICSlotID, identity: FICSlotIdentity, actor: String) async throws -> FICSlot {
        let now = self.clock.now
        return try await self.backend.withTransaction { session in
            try await session.lock(.slotAllocation)
            if try await self.fetchSlot(session, id, lock: .none) != nil {
                throw BrokerError(.uniqueConflict, "slot \(id) already exists")
            }
            let count = try await session.query(
                "SELECT COUNT(*) AS n FROM fic_slots WHERE application_id = ? AND state <> 'retired'",
                [.text(identity.applicationID)]
            ).first?.integer("n") ?? 0
            try FICSlot.checkCanCreate(nonRetiredCount: Int(count))
            let slot = FICSlot(
                id: id, identity: identity, state: .provisioning, createdAt: now, updatedAt: now, version: .initial)
            _ = try await session.query(
                """
                INSERT INTO fic_slots (id, application_id, managed_identity_client_id, managed_identity_principal_id,
                    issuer, subject, audience, state, created_at_us, updated_at_us, version)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(id.rawValue), .text(identity.applicationID), .text(identity.managedIdentityClientID),
                    .text(identity.managedIdentityPrincipalID), .text(identity.issuer), .text(identity.subject),
                    .text(identity.audience), .text(slot.state.rawValue), .integer(self.micros(now)),
                    .integer(self.micros(now)), .integer(slot.version.rawValue),
                ])
            try await self.audit(
                session, actor: actor, tenant: nil, operation: "slot.created",
                detail: "slot=\(id) application=\(identity.applicationID)", at: now)
            try await self.recordChange(session, .slot, id.rawValue, slot.version, at: now)
            return slot
        }
    }

    public func slot(_ id: FICSlotID) async throws -> FICSlot {
        try await self.backend.withReadTransaction { session in
            guard let slot = try await self.fetchSlot(session, id, lock: .none) else {
                throw BrokerError(.notFound, "no slot \(id)")
            }
            return slot
        }
    }

    public func slots() async throws -> [FICSlot] {
        try await self.backend.withReadTransaction { session in
            try await session.query("SELECT \(Self.slotColumns) FROM fic_slots ORDER BY id", []).map(Self.slot(from:))
        }
    }

    public func transitionSlot(
        _ id: FICSlotID, expectedVersion: RecordVersion, event: FICSlotEvent, actor: String
    ) async throws -> FICSlot {
        let now = self.clock.now
        return try await self.backend.withTransaction { session in
            // The lock placement holds between reading the slot loads and assigning: a slot chosen
            // for a tenant cannot start draining (or be retired) in between, and a placement that
            // starts after this commits sees the new state (READ COMMITTED).
            try await session.lock(.slotAllocation)
            guard var slot = try await self.fetchSlot(session, id, lock: .update) else {
                throw BrokerError(.notFound, "no slot \(id)")
            }
            guard slot.version == expectedVersion else {
                throw BrokerError(.versionConflict, "slot \(id) is at \(slot.version), not \(expectedVersion)")
            }
            let assigned = try await session.query(
                "SELECT COUNT(*) AS n FROM tenants WHERE slot_id = ?", [.text(id.rawValue)]
            ).first?.integer("n") ?? 0
            let from = slot.state
            slot.state = try from.applying(event, assignedTenants: Int(assigned))
            slot.updatedAt = now
            slot.version = slot.version.next
            let updated = try await session.query(
                "UPDATE fic_slots SET state = ?, updated_at_us = ?, version = ? WHERE id = ? AND version = ? RETURNING id",
                [
                    .text(slot.state.rawValue), .integer(self.micros(now)), .integer(slot.version.rawValue),
                    .text(id.rawValue), .integer(expectedVersion.rawValue),
                ])
            guard !updated.isEmpty else {
                throw BrokerError(.versionConflict, "slot \(id) changed concurrently")
            }
            try await self.audit(
                session, actor: actor, tenant: nil, operation: event.name, detail: "slot=\(id) \(from)->\(slot.state)",
                at: now)
            try await self.recordChange(session, .slot, id.rawValue, slot.version, at: now)
            return slot
        }
    }

    public func slotLoads(applicationID: String) async throws -> [PartitionPlanner.SlotLoad] {
        try await self.backend.withReadTransaction { session in
            try await self.fetchSlotLoads(session, applicationID: applicationID)
        }
    }

    public func tenants(onSlot slot: FICSlotID) async throws -> [TenantID] {
        try await self.backend.withReadTransaction { session in
            try await session.query("SELECT id FROM tenants WHERE slot_id = ? ORDER BY id", [.text(slot.rawValue)])
                .map { try Self.tenantID(try $0.text("id")) }
        }
    }

    // MARK: - Callers

    public func createCaller(_ caller: Caller, actor: String) async throws -> Caller {
        let now = self.clock.now
        let grants = try Self.encodeGrants(caller.grants)
        var created = caller
        created.version = .initial
        return try await self.backend.withTransaction { [created] session in
            if try await !session.query("SELECT id FROM callers WHERE id = ?", [.text(caller.id)]).isEmpty {
                throw BrokerError(.uniqueConflict, "caller \(caller.id) already exists; update it with its version")
            }
            // A concurrent create of the same id or identity fails on the unique keys instead.
            _ = try await session.query(
                """
                INSERT INTO callers (id, identity, grants_json, enabled, require_context, created_at_us, updated_at_us, version)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(caller.id), .text(caller.identity), .text(grants), .bool(caller.enabled), .bool(caller.requireContext),
                    .integer(self.micros(now)), .integer(self.micros(now)), .integer(created.version.rawValue),
                ])
            try await self.audit(
                session, actor: actor, tenant: nil, operation: "caller.created",
                detail: "caller=\(caller.id) after=\(try Self.summary(caller))", at: now)
            try await self.recordChange(session, .caller, caller.id, created.version, at: now)
            return created
        }
    }

    public func updateCaller(_ caller: Caller, actor: String) async throws -> Caller {
        let now = self.clock.now
        let grants = try Self.encodeGrants(caller.grants)
        var updated = caller
        updated.version = caller.version.next
        return try await self.backend.withTransaction { [updated] session in
            let before = try await session.query("SELECT \(Self.callerColumns) FROM callers WHERE id = ?", [.text(caller.id)])
                .first.map(Self.caller(from:))
            let rows = try await session.query(
                """
                UPDATE callers SET identity = ?, grants_json = ?, enabled = ?, require_context = ?, updated_at_us = ?, version = ?
                WHERE id = ? AND version = ? RETURNING id
                """,
                [
                    .text(caller.identity), .text(grants), .bool(caller.enabled), .bool(caller.requireContext), .integer(self.micros(now)),
                    .integer(updated.version.rawValue), .text(caller.id), .integer(caller.version.rawValue),
                ])
            if rows.isEmpty {
                guard let stored = try await session.query("SELECT version FROM callers WHERE id = ?", [.text(caller.id)])
                    .first
                else { throw BrokerError(.notFound, "no caller \(caller.id) to update") }
                throw BrokerError(
                    .versionConflict,
                    "caller \(caller.id) is at \(RecordVersion(rawValue: try stored.integer("version"))), not \(caller.version)")
            }
            try await self.audit(
                session, actor: actor, tenant: nil, operation: "caller.updated",
                detail: "caller=\(caller.id) before=\(try before.map(Self.summary) ?? "none") after=\(try Self.summary(updated))", at: now)
            try await self.recordChange(session, .caller, caller.id, updated.version, at: now)
            return updated
        }
    }

    public func caller(_ id: String) async throws -> Caller {
        try await self.backend.withReadTransaction { session in
            guard let row = try await session.query("SELECT \(Self.callerColumns) FROM callers WHERE id = ?", [.text(id)]).first
            else { throw BrokerError(.notFound, "no caller \(id)") }
            return try Self.caller(from: row)
        }
    }

    public func caller(identity: String) async throws -> Caller? {
        try await self.backend.withReadTransaction { session in
            try await session.query("SELECT \(Self.callerColumns) FROM callers WHERE identity = ?", [.text(identity)])
                .first.map(Self.caller(from:))
        }
    }

    // MARK: - Audit

    public func appendAudit(_ records: [AuditRecord]) async throws {
        guard !records.isEmpty else { return }
        let rowsPerStatement = Self.auditRowsPerStatement(self.backend.dialect)
        if records.count <= rowsPerStatement {
            // One INSERT: atomic on its own.
            return try await self.backend.withSingleStatement { session in try await self.insertAudit(session, records) }
        }
        try await self.backend.withBulkInsertTransaction { session in
            try await self.insertAudit(session, records, rowsPerStatement: rowsPerStatement)
        }
    }

    /// SQLite: one transaction on the shipping connection, whatever the size (a background batch
    /// saves no caller a round trip). PostgreSQL: one transaction too, in statements of
    /// `backgroundAuditRowsPerStatement` rows (see `backgroundAuditRowsPerStatement(_:)`).
    public func appendAuditInBackground(_ records: [AuditRecord]) async throws {
        guard !records.isEmpty else { return }
        let rowsPerStatement = self.backgroundAuditRowsPerStatement
        // On PostgreSQL one statement needs no transaction around it (`appendAudit`); SQLite's
        // background inserts go through its shipping connection whatever their size.
        if self.backend.dialect == .postgres, records.count <= rowsPerStatement { return try await self.appendAudit(records) }
        try await self.backend.withBackgroundBulkInsertTransaction { session in
            try await self.insertAudit(session, records, rowsPerStatement: rowsPerStatement)
        }
    }

    private func insertAudit(_ session: any SQLSession, _ records: [AuditRecord], rowsPerStatement: Int) async throws {
        for start in stride(from: 0, to: records.count, by: rowsPerStatement) {
            try await self.insertAudit(session, Array(records[start..<min(start + rowsPerStatement, records.count)]))
        }
    }

    /// Rows per audit INSERT: SQLite binds 12 values a row, 200 rows to a statement; PostgreSQL
    /// binds 12 arrays whatever the rows, capped so that one statement stays well within
    /// statement_timeout for a caller that sets a large batch.
    static func auditRowsPerStatement(_ dialect: SQLDialect) -> Int {
        dialect == .postgres ? 2_000 : 200
    }

    /// Rows per audit INSERT of a background batch: 100 for a PostgreSQL server on this machine
    /// (a loopback host), as many as a foreground batch's otherwise.
    ///
    /// Why: the inserts are the server's work, which this process cannot lower in priority. One
    /// statement of 500 rows is a few milliseconds of one server backend's CPU; on a machine whose
    /// cores also answer key operations, answers queued behind that burst made the tail.
    /// Statements of 100, in one transaction, leave a round trip between bursts a fifth as long:
    /// the p99 of a cached Unwrap at concurrency 16 about halved (6.0–6.4 to 2.7–3.5 ms), and
    /// throughput against SQLite's rose by about five points (docs/operations.md, "The shipper's
    /// statements on PostgreSQL"). A server elsewhere takes no cores from the answers, and there
    /// each extra round trip would only hold the audit order lock, which every replica's inserts
    /// share, a little longer.
    static func backgroundAuditRowsPerStatement(_ configuration: StoreConfiguration) -> Int {
        switch configuration {
        case .sqlite: auditRowsPerStatement(.sqlite)
        case .postgres(let settings): PostgresSettings.isLoopback(settings.host) ? 100 : auditRowsPerStatement(.postgres)
        }
    }

    public func auditRecords(tenant: TenantID, from: Date, to: Date, limit: Int) async throws -> [AuditRecord] {
        try await self.backend.withReadTransaction { session in
            try await session.query(
                """
                SELECT \(Self.auditColumns) FROM audit_records
                WHERE tenant_id = ? AND time_us >= ? AND time_us < ? ORDER BY time_us, seq LIMIT ?
                """,
                [.text(tenant.rawValue), .integer(self.micros(from)), .integer(self.micros(to)), .integer(Int64(limit))]
            ).map(Self.auditRecord(from:))
        }
    }

    // MARK: - Change feed

    public func changes(after sequence: Int64, limit: Int) async throws -> [ChangeEvent] {
        try await self.backend.withReadTransaction { session in
            try await session.query(
                "SELECT seq, kind, entity_id, version, at_us FROM change_feed WHERE seq > ? ORDER BY seq LIMIT ?",
                [.integer(sequence), .integer(Int64(limit))]
            ).map { row in
                guard let kind = ChangeEvent.Kind(rawValue: try row.text("kind")) else {
                    throw BrokerError(.storeFailure, "unknown change kind")
                }
                return ChangeEvent(
                    sequence: try row.integer("seq"), kind: kind, entityID: try row.text("entity_id"),
                    version: RecordVersion(rawValue: try row.integer("version")), time: Self.date(try row.integer("at_us")))
            }
        }
    }

    public func latestChangeSequence() async throws -> Int64 {
        try await self.backend.withReadTransaction { session in
            try await session.query("SELECT COALESCE(MAX(seq), 0) AS seq FROM change_feed", []).first?.integer("seq") ?? 0
        }
    }

    public func changeFeed(after sequence: Int64, pollInterval: Duration) -> AsyncThrowingStream<ChangeEvent, any Error> {
        self.changeFeed(after: sequence, pollInterval: pollInterval, caughtUpWhileListening: nil)
    }

    /// `caughtUpWhileListening` (tests) is called after the first read that started after LISTEN
    /// was established, and again after each time it was established anew (a lost connection):
    /// from then on only a notification (or the poll) brings news. `listenRetryDelay`: the first
    /// wait before listening again after it ended (doubling while it keeps failing).
    func changeFeed(
        after sequence: Int64, pollInterval: Duration, listenRetryDelay: Duration = .milliseconds(500),
        caughtUpWhileListening: (@Sendable () -> Void)?
    ) -> AsyncThrowingStream<ChangeEvent, any Error> {
        let (events, output) = AsyncThrowingStream<ChangeEvent, any Error>.makeStream()
        let listening = ListenStarts()
        let task = Task {
            let (wakeups, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
            await withTaskGroup(of: Void.self) { group in
                if let notifications = self.backend.changeNotifications(retryDelay: listenRetryDelay) {
                    group.addTask {
                        for await starts in notifications {
                            listening.record(starts)
                            wake.yield()
                        }
                    }
                }
                group.addTask {
                    // The fallback and, on SQLite, the only way: poll.
                    while (try? await Task.sleep(for: pollInterval)) != nil { wake.yield() }
                }
                wake.yield()
                var reported = 0
                var last = sequence
                for await _ in wakeups {
                    let starts = listening.starts
                    do {
                        while true {
                            let batch = try await self.changes(after: last, limit: 500)
                            for event in batch {
                                output.yield(event)
                                last = event.sequence
                            }
                            if batch.count < 500 { break }
                        }
                        if starts > reported {
                            reported = starts
                            caughtUpWhileListening?()
                        }
                    } catch {
                        // The next wake-up retries; a follower outlives a database blip.
                        self.logger.warning(
                            "reading the change feed failed", metadata: ["error": "\(String(reflecting: error))"])
                    }
                }
                group.cancelAll()
            }
            output.finish()
        }
        output.onTermination = { _ in task.cancel() }
        return events
    }
}

extension SQLBrokerStore {
    /// Runs raw SQL in a transaction. Tests only: they break the schema on purpose to make flushes
    /// fail, or plant a newer schema version.
    package func executeForTesting(_ sql: String) async throws {
        try await self.backend.withTransaction { session in
            _ = try await session.query(sql, [])
        }
    }

    /// Runs `body` inside a write transaction that writes nothing. Tests only: the store's other
    /// writes wait for it (SQLite's write lock), as they would behind a long transaction.
    package func holdingWriteTransactionForTesting(_ body: @escaping @Sendable () async throws -> Void) async throws {
        try await self.backend.withTransaction { _ in try await body() }
    }

    /// Runs a raw query and returns how many rows it gave. Tests only: they act on the server's
    /// own views (its backends, for one).
    package func rowCountForTesting(_ sql: String) async throws -> Int {
        try await self.backend.withTransaction { session in
            try await session.query(sql, []).count
        }
    }
}

/// How many times the change feed's LISTEN has been established, as last heard.
private final class ListenStarts: Sendable {
    private let value = Mutex(0)
    func record(_ starts: Int) { self.value.withLock { $0 = max($0, starts) } }
    var starts: Int { self.value.withLock { $0 } }
}
