import FedBrokerCore
import Foundation

/// Row mapping and the steps every mutation shares (audit record, change-feed entry, versioned update).
extension SQLBrokerStore {
    enum RowLock {
        case none, share, update
    }

    static let tenantColumns = """
        id, entra_tenant_id, display_name, geo, vault_url, key_name, key_version, state, was_activated, slot_id, \
        created_at_us, updated_at_us, key_access_changed_at_us, version
        """
    static let slotColumns = """
        id, application_id, managed_identity_client_id, managed_identity_principal_id, issuer, subject, audience, \
        state, created_at_us, updated_at_us, version
        """
    static let callerColumns = "id, identity, grants_json, enabled, require_context, version"
    static let auditColumns = """
        id, time_us, actor, tenant_id, operation, key_version, outcome, error_code, latency_us, request_id, \
        client_request_id, detail
        """

    // MARK: Time

    func micros(_ date: Date) -> Int64 { Self.micros(date) }
    /// Clamped, not trapping: a query bound comes from a caller (`GET /v1/audit?from=…` accepts any
    /// ISO 8601 year), and a date past year 292,277 or before −290,308 has no Int64 count.
    static func micros(_ date: Date) -> Int64 {
        let value = (date.timeIntervalSince1970 * 1_000_000).rounded()
        return Int64(exactly: value) ?? (value > 0 ? .max : .min)
    }
    static func date(_ micros: Int64) -> Date { Date(timeIntervalSince1970: Double(micros) / 1_000_000) }

    // MARK: Locking clauses

    static func forUpdate(_ session: any SQLSession) -> String {
        session.dialect == .postgres ? " FOR UPDATE" : ""
    }

    static func clause(_ lock: RowLock, _ session: any SQLSession) -> String {
        guard session.dialect == .postgres else { return "" }  // SQLite writers hold the database lock
        switch lock {
        case .none: return ""
        case .share: return " FOR SHARE"
        case .update: return " FOR UPDATE"
        }
    }

    // MARK: Reads

    func fetchTenant(_ session: any SQLSession, _ id: TenantID, forUpdate: Bool) async throws -> Tenant? {
        try await session.query(
            "SELECT \(Self.tenantColumns) FROM tenants WHERE id = ?\(forUpdate ? Self.forUpdate(session) : "")",
            [.text(id.rawValue)]
        ).first.map(Self.tenant(from:))
    }

    func fetchTenant(_ session: any SQLSession, entraTenantID: EntraTenantID) async throws -> Tenant? {
        try await session.query(
            "SELECT \(Self.tenantColumns) FROM tenants WHERE entra_tenant_id = ?", [.text(entraTenantID.rawValue)]
        ).first.map(Self.tenant(from:))
    }

    func fetchSlot(_ session: any SQLSession, _ id: FICSlotID, lock: RowLock) async throws -> FICSlot? {
        try await session.query(
            "SELECT \(Self.slotColumns) FROM fic_slots WHERE id = ?\(Self.clause(lock, session))", [.text(id.rawValue)]
        ).first.map(Self.slot(from:))
    }

    func fetchSlotLoads(_ session: any SQLSession, applicationID: String?) async throws -> [PartitionPlanner.SlotLoad] {
        let filter = applicationID == nil ? "" : "WHERE s.application_id = ?"
        return try await session.query(
            """
            SELECT s.id AS id, s.state AS state,
                (SELECT COUNT(*) FROM tenants t WHERE t.slot_id = s.id) AS tenant_count
            FROM fic_slots s \(filter) ORDER BY s.id
            """,
            applicationID.map { [.text($0)] } ?? []
        ).map { row in
            PartitionPlanner.SlotLoad(
                id: try Self.slotID(try row.text("id")), state: try Self.slotState(try row.text("state")),
                tenantCount: Int(try row.integer("tenant_count")))
        }
    }

    /// The slot a tenant should go to now, or `nil` when no slot is active. Caller holds `.slotAllocation`.
    func placeTenant(_ session: any SQLSession) async throws -> FICSlotID? {
        let loads = try await self.fetchSlotLoads(session, applicationID: nil)
        guard let chosen = try? PartitionPlanner.placement(among: loads) else { return nil }
        // Share-lock it so it cannot start draining before we commit.
        guard let slot = try await self.fetchSlot(session, chosen, lock: .share), slot.state.acceptsTenants else {
            return nil
        }
        return chosen
    }

    // MARK: Writes

    /// Reads a tenant for update, checks the version, lets `change` mutate it, writes it with the
    /// version bumped, and records the audit entry and change event, all in one transaction.
    func updateTenant(
        _ id: TenantID,
        expectedVersion: RecordVersion,
        actor: String,
        change: @escaping @Sendable (any SQLSession, inout Tenant) async throws -> (operation: String, detail: String)
    ) async throws -> Tenant {
        try await self.updateTenant(id, expectedVersion: expectedVersion, actor: actor) { session, tenant in
            [try await change(session, &tenant)]
        }
    }

    /// As above, for a change that is several steps of the trail (a restore: the transition, then
    /// the validation it rests on), audited in that order with one time.
    func updateTenant(
        _ id: TenantID,
        expectedVersion: RecordVersion,
        actor: String,
        changes: @escaping @Sendable (any SQLSession, inout Tenant) async throws -> [(operation: String, detail: String)]
    ) async throws -> Tenant {
        let now = self.clock.now
        return try await self.backend.withTransaction { session in
            guard var tenant = try await self.fetchTenant(session, id, forUpdate: true) else {
                throw BrokerError(.notFound, "no tenant \(id)")
            }
            guard tenant.version == expectedVersion else {
                throw BrokerError(.versionConflict, "tenant \(id) is at \(tenant.version), not \(expectedVersion)")
            }
            let before = tenant
            let entries = try await changes(session, &tenant)
            tenant.updatedAt = now
            if Self.startsKeyAccess(from: before, to: tenant) { tenant.keyAccessChangedAt = now }
            tenant.version = expectedVersion.next
            let updated = try await session.query(
                """
                UPDATE tenants SET display_name = ?, geo = ?, vault_url = ?, key_name = ?, key_version = ?, state = ?,
                    was_activated = ?, slot_id = ?, updated_at_us = ?, key_access_changed_at_us = ?, version = ?
                WHERE id = ? AND version = ? RETURNING id
                """,
                [
                    .text(tenant.displayName), .text(tenant.geo), .text(tenant.key.vaultURL), .text(tenant.key.keyName),
                    .text(tenant.key.keyVersion), .text(tenant.state.rawValue), .bool(tenant.lifecycle.wasActivated),
                    .text(tenant.slotID?.rawValue), .integer(self.micros(now)), .integer(self.micros(tenant.keyAccessChangedAt)),
                    .integer(tenant.version.rawValue), .text(id.rawValue), .integer(expectedVersion.rawValue),
                ])
            guard !updated.isEmpty else {
                throw BrokerError(.versionConflict, "tenant \(id) changed concurrently")
            }
            for entry in entries {
                try await self.audit(session, actor: actor, tenant: id, operation: entry.operation, detail: entry.detail, at: now)
            }
            try await self.recordChange(session, .tenant, id.rawValue, tenant.version, at: now)
            return tenant
        }
    }

    /// Whether a change begins a new window in which the customer's role grant may still be on its
    /// way to Key Vault (`Tenant.keyAccessChangedAt`): the tenant became servable, or its key changed.
    static func startsKeyAccess(from before: Tenant, to after: Tenant) -> Bool {
        after.key != before.key || (after.state.isServable && !before.state.isServable)
    }

    /// The audit record of an administrative change, written in the change's own transaction.
    func audit(
        _ session: any SQLSession, actor: String, tenant: TenantID?, operation: String, detail: String, at time: Date
    ) async throws {
        try await self.insertAudit(
            session,
            [
                AuditRecord(
                    time: time, actor: actor, tenantID: tenant, operation: operation, outcome: .success, detail: detail)
            ])
    }

    static func withoutNUL(_ text: String?) -> String? {
        guard let text, text.utf8.contains(0) else { return text }
        return String(text.unicodeScalars.filter { $0 != "\u{0}" }.map(Character.init))
    }

    /// One audit record as the values of `auditColumns`, in order: the one mapping both stores'
    /// inserts use. PostgreSQL text cannot hold NUL (22021 would fail the whole batch), and request
    /// ids and details come from callers, so NUL bytes are dropped on both stores alike.
    static func auditValues(_ record: AuditRecord) -> [SQLValue] {
        let (outcome, code): (String, String?) =
            switch record.outcome {
            case .success: ("success", nil)
            case .failure(let code): ("failure", code)
            }
        let clean = Self.withoutNUL
        return [
            .text(record.id.lowercaseText), .integer(Self.micros(record.time)), .text(clean(record.actor)),
            .text(clean(record.tenantID?.rawValue)), .text(clean(record.operation)), .text(clean(record.keyVersion)),
            .text(outcome), .text(clean(code)), .integer(record.latencyMicroseconds), .text(clean(record.requestID)),
            .text(clean(record.clientRequestID)), .text(clean(record.detail)),
        ]
    }

    func insertAudit(_ session: any SQLSession, _ records: [AuditRecord]) async throws {
        guard !records.isEmpty else { return }
        if session.dialect == .postgres { return try await self.insertAuditColumns(session, records) }
        let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        var binds: [SQLValue] = []
        binds.reserveCapacity(records.count * 12)
        for record in records { binds += Self.auditValues(record) }
        _ = try await session.query(
            """
            INSERT INTO audit_records (\(Self.auditColumns))
            VALUES \(Array(repeating: row, count: records.count).joined(separator: ", "))
            ON CONFLICT (id) DO NOTHING
            """,
            binds)
    }

    /// PostgreSQL: the batch as twelve arrays, one per column, turned back into rows by `unnest`.
    /// postgres-nio still sends it as an unnamed statement the server parses and plans for every
    /// batch, but one of 12 parameters, where a multi-row `VALUES` of 200 rows had 2,400, each
    /// encoded and typed on its own (`bench --parts audit-insert --database-url`). `ORDER BY ord`
    /// keeps `seq` in batch order, as `VALUES` did.
    ///
    /// The statement takes `auditOrder` itself (held to the commit, also when the statement is
    /// its own transaction): the join cannot give the insert a row, which then draws its `seq`,
    /// before both of its sides have given one, the lock's included, so sequences are drawn and
    /// committed one transaction at a time. SQLite has one writer, so its order is the same.
    private func insertAuditColumns(_ session: any SQLSession, _ records: [AuditRecord]) async throws {
        let rows = records.map(Self.auditValues)
        let columns = try (0..<(rows.first?.count ?? 0)).map { column in try SQLValue.array(rows.map { $0[column] }) }
        _ = try await session.query(
            """
            INSERT INTO audit_records (\(Self.auditColumns))
            SELECT \(Self.auditColumns) FROM (SELECT pg_advisory_xact_lock(?) AS locked) AS ordered, unnest(
                ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[],
                ?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[]
            ) WITH ORDINALITY AS batch (\(Self.auditColumns), ord)
            ORDER BY ord
            ON CONFLICT (id) DO NOTHING
            """,
            [.integer(AdvisoryLockKey.auditOrder.rawValue)] + columns)
    }

    /// Appends to the change feed (under the feed lock, so sequence numbers commit in order) and
    /// notifies listeners, who hear of it when the transaction commits.
    func recordChange(
        _ session: any SQLSession, _ kind: ChangeEvent.Kind, _ entityID: String, _ version: RecordVersion, at time: Date
    ) async throws {
        try await session.lock(.changeFeed)
        let rows = try await session.query(
            "INSERT INTO change_feed (kind, entity_id, version, at_us) VALUES (?, ?, ?, ?) RETURNING seq",
            [.text(kind.rawValue), .text(entityID), .integer(version.rawValue), .integer(Self.micros(time))])
        guard let sequence = try rows.first?.integer("seq") else {
            throw BrokerError(.storeFailure, "the change feed returned no sequence")
        }
        try await session.notifyChange(sequence: sequence)
    }

    // MARK: Row mapping

    static func tenant(from row: SQLRow) throws -> Tenant {
        let key = try KeyReference(
            vaultURL: try row.text("vault_url"), keyName: try row.text("key_name"),
            keyVersion: try row.optionalText("key_version"))
        guard let state = TenantState(rawValue: try row.text("state")),
            let entra = EntraTenantID(rawValue: try row.text("entra_tenant_id"))
        else { throw BrokerError(.storeFailure, "a tenant row holds an unknown state or a malformed Entra tenant id") }
        return Tenant(
            id: try Self.tenantID(try row.text("id")), entraTenantID: entra, displayName: try row.text("display_name"),
            geo: try row.text("geo"),
            lifecycle: TenantLifecycle(state: state, key: key, wasActivated: try row.bool("was_activated")),
            slotID: try row.optionalText("slot_id").map(Self.slotID),
            createdAt: Self.date(try row.integer("created_at_us")), updatedAt: Self.date(try row.integer("updated_at_us")),
            // 0: written by a release before schema 5 (a rolling upgrade); its last update, as then.
            keyAccessChangedAt: try row.integer("key_access_changed_at_us") == 0
                ? Self.date(try row.integer("updated_at_us")) : Self.date(try row.integer("key_access_changed_at_us")),
            version: RecordVersion(rawValue: try row.integer("version")))
    }

    static func slot(from row: SQLRow) throws -> FICSlot {
        let identity = try FICSlotIdentity(
            applicationID: try row.text("application_id"),
            managedIdentityClientID: try row.text("managed_identity_client_id"),
            managedIdentityPrincipalID: try row.text("managed_identity_principal_id"), issuer: try row.text("issuer"),
            subject: try row.text("subject"), audience: try row.text("audience"))
        return FICSlot(
            id: try Self.slotID(try row.text("id")), identity: identity, state: try Self.slotState(try row.text("state")),
            createdAt: Self.date(try row.integer("created_at_us")), updatedAt: Self.date(try row.integer("updated_at_us")),
            version: RecordVersion(rawValue: try row.integer("version")))
    }

    static func caller(from row: SQLRow) throws -> Caller {
        let grants = try JSONDecoder().decode([CallerGrant].self, from: Data(try row.text("grants_json").utf8))
        return Caller(
            id: try row.text("id"), identity: try row.text("identity"), grants: grants, enabled: try row.bool("enabled"),
            requireContext: try row.bool("require_context"), version: RecordVersion(rawValue: try row.integer("version")))
    }

    static func auditRecord(from row: SQLRow) throws -> AuditRecord {
        guard let id = UUID(uuidString: try row.text("id")) else {
            throw BrokerError(.storeFailure, "an audit row has a malformed id")
        }
        let outcome: AuditRecord.Outcome =
            try row.text("outcome") == "success" ? .success : .failure(code: try row.optionalText("error_code") ?? "")
        return AuditRecord(
            id: id, time: Self.date(try row.integer("time_us")), actor: try row.text("actor"),
            tenantID: try row.optionalText("tenant_id").map(Self.tenantID), operation: try row.text("operation"),
            keyVersion: try row.optionalText("key_version"), outcome: outcome,
            latencyMicroseconds: try row.integer("latency_us"), requestID: try row.optionalText("request_id"),
            clientRequestID: try row.optionalText("client_request_id"), detail: try row.optionalText("detail"))
    }

    static func encodeGrants(_ grants: [CallerGrant]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(grants), as: UTF8.self)
    }

    static func tenantID(_ raw: String) throws -> TenantID {
        guard let id = TenantID(rawValue: raw) else { throw BrokerError(.storeFailure, "a row holds a malformed tenant id") }
        return id
    }

    static func slotID(_ raw: String) throws -> FICSlotID {
        guard let id = FICSlotID(rawValue: raw) else { throw BrokerError(.storeFailure, "a row holds a malformed slot id") }
        return id
    }

    static func slotState(_ raw: String) throws -> FICSlotState {
        guard let state = FICSlotState(rawValue: raw) else { throw BrokerError(.storeFailure, "a row holds an unknown slot state") }
        return state
    }
}
