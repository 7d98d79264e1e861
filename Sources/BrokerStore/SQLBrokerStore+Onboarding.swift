import FedBrokerCore
import Foundation

/// Onboarding, caller management and audit queries: what the admin API needs of the store.
extension SQLBrokerStore {
    public func registerTenant(
        _ registration: TenantRegistration, bindingValue: String, idempotency: RegistrationIdempotency?, actor: String
    ) async throws -> RegistrationResult {
        let now = self.clock.now
        return try await self.backend.withTransaction { session in
            // The placement lock also serializes registrations, so two requests with the same
            // Idempotency-Key (or the same customer tenant) cannot both pass the checks below.
            try await session.lock(.slotAllocation)
            if let idempotency {
                let rows = try await session.query(
                    "SELECT tenant_id, request_fingerprint FROM tenant_onboarding WHERE idempotency_key = ?",
                    [.text(idempotency.key)])
                if let row = rows.first {
                    guard try row.optionalText("request_fingerprint") == idempotency.fingerprint else {
                        throw BrokerError(
                            .idempotencyKeyReused, "this Idempotency-Key was used for a different registration")
                    }
                    let id = try Self.tenantID(try row.text("tenant_id"))
                    guard let tenant = try await self.fetchTenant(session, id, forUpdate: false),
                        let onboarding = try await self.fetchOnboarding(session, id)
                    else { throw BrokerError(.storeFailure, "an idempotency key names a tenant that is gone") }
                    return RegistrationResult(tenant: tenant, onboarding: onboarding, created: false)
                }
            }
            try await self.checkUnregistered(session, registration)
            guard let slotID = try await self.placeTenant(session) else {
                throw BrokerError(
                    .noActiveSlot, "no active FIC slot to place the tenant on: an SRE must add and activate one")
            }
            let tenant = try await self.insertTenant(session, registration, slot: slotID, at: now)
            _ = try await session.query(
                """
                INSERT INTO tenant_onboarding (tenant_id, binding_value, idempotency_key, request_fingerprint)
                VALUES (?, ?, ?, ?)
                """,
                [.text(tenant.id.rawValue), .text(bindingValue), .text(idempotency?.key), .text(idempotency?.fingerprint)])
            try await self.audit(
                session, actor: actor, tenant: tenant.id, operation: "tenant.registered",
                detail: "slot=\(slotID) customer_tenant=\(tenant.entraTenantID) key=\(tenant.key)", at: now)
            try await self.recordChange(session, .tenant, tenant.id.rawValue, tenant.version, at: now)
            return RegistrationResult(
                tenant: tenant, onboarding: TenantOnboarding(bindingValue: bindingValue), created: true)
        }
    }

    public func onboarding(_ id: TenantID) async throws -> TenantOnboarding? {
        try await self.backend.withReadTransaction { session in try await self.fetchOnboarding(session, id) }
    }

    public func onboardings(_ ids: [TenantID]) async throws -> [TenantID: TenantOnboarding] {
        guard !ids.isEmpty else { return [:] }
        return try await self.backend.withReadTransaction { session in
            var found: [TenantID: TenantOnboarding] = [:]
            // One statement per chunk, well under either database's bind limit.
            for chunk in stride(from: 0, to: ids.count, by: 500).map({ ids[$0..<min($0 + 500, ids.count)] }) {
                let rows = try await session.query(
                    """
                    SELECT tenant_id, \(Self.onboardingColumns) FROM tenant_onboarding
                    WHERE tenant_id IN (\(Array(repeating: "?", count: chunk.count).joined(separator: ", ")))
                    """, chunk.map { .text($0.rawValue) })
                for row in rows {
                    let id = try Self.tenantID(try row.text("tenant_id"))
                    found[id] = try Self.onboarding(from: row, id)
                }
            }
            return found
        }
    }

    public func recordValidation(
        _ id: TenantID, expectedVersion: RecordVersion, result: ValidationRecord, actor: String
    ) async throws -> Tenant {
        let json = try Self.validationJSON(result)
        return try await self.updateTenant(id, expectedVersion: expectedVersion, actor: actor) { session, tenant in
            try await self.applyValidation(session, &tenant, result, json: json)
        }
    }

    public func restoreTenant(
        _ id: TenantID, expectedVersion: RecordVersion, event: TenantEvent, validation result: ValidationRecord, actor: String
    ) async throws -> Tenant {
        guard result.succeeded else {
            throw BrokerError(.invalidArgument, "tenant \(id) is restored only on a validation that passed")
        }
        let json = try Self.validationJSON(result)
        return try await self.updateTenant(id, expectedVersion: expectedVersion, actor: actor, changes: { session, tenant in
            // The transition first, so that a never-activated tenant, back at registered, is
            // validated by the record; the trail says it in that order.
            let restored = try await self.applyTransition(session, &tenant, event: event, reason: nil)
            let validated = try await self.applyValidation(session, &tenant, result, json: json)
            return [restored, validated]
        })
    }

    static func validationJSON(_ result: ValidationRecord) throws -> String {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(result), as: UTF8.self)
    }

    /// A validation's effect on the tenant (`registered` → `validated` when it passed) and its
    /// onboarding row; the caller's transaction writes the audit record it returns.
    private func applyValidation(
        _ session: any SQLSession, _ tenant: inout Tenant, _ result: ValidationRecord, json: String
    ) async throws -> (operation: String, detail: String) {
        let from = tenant.state
        if result.succeeded, tenant.state == .registered || tenant.state == .validated {
            _ = try tenant.lifecycle.apply(.validationSucceeded)
        }
        let updated = try await session.query(
            """
            UPDATE tenant_onboarding SET validation_json = ?, validated_at_us = ?, validation_succeeded = ?
            WHERE tenant_id = ? RETURNING tenant_id
            """,
            [.text(json), .integer(self.micros(result.time)), .bool(result.succeeded), .text(tenant.id.rawValue)])
        guard !updated.isEmpty else {
            throw BrokerError(.notFound, "tenant \(tenant.id) was not registered through onboarding")
        }
        let outcome = result.succeeded ? "passed" : "failed at \(result.failureCode ?? "unknown")"
        return ("tenant.validation", "validation \(outcome); \(from)->\(tenant.state)")
    }

    public func transitionTenant(
        _ id: TenantID, expectedVersion: RecordVersion, event: TenantEvent, reason: String?, actor: String
    ) async throws -> Tenant {
        try await self.updateTenant(id, expectedVersion: expectedVersion, actor: actor) { session, tenant in
            try await self.applyTransition(session, &tenant, event: event, reason: reason)
        }
    }

    /// A lifecycle event's effect on the tenant: its state, its slot (placed when it becomes
    /// active without one, freed when offboarded) and the reason kept with it.
    private func applyTransition(
        _ session: any SQLSession, _ tenant: inout Tenant, event: TenantEvent, reason: String?
    ) async throws -> (operation: String, detail: String) {
        let id = tenant.id
        let transition = try tenant.lifecycle.apply(event)
        if transition.to == .offboarded {
            tenant.slotID = nil  // frees its place; the audit trail keeps the history
        } else if transition.to == .active, tenant.slotID == nil {
            try await session.lock(.slotAllocation)
            tenant.slotID = try await self.placeTenant(session)
            if tenant.slotID == nil {
                throw BrokerError(.noActiveSlot, "cannot activate \(id): no active slot to serve it")
            }
        }
        // The reason goes with this transition and no other (a tenant registered before
        // onboarding existed has no row here, and needs none): the operator's words for a
        // suspension, what the broker observed for a loss of access.
        var kept = reason
        if kept == nil, case .accessLost(let observed) = event { kept = observed.rawValue }
        _ = try await session.query(
            "UPDATE tenant_onboarding SET suspension_reason = ? WHERE tenant_id = ?",
            [.text(kept), .text(id.rawValue)])
        let because = reason.map { " reason=\(Self.quoted($0))" } ?? ""
        return (transition.operation, "\(transition.from)->\(transition.to)\(because)")
    }

    public func tenants(matching query: TenantQuery) async throws -> [Tenant] {
        var conditions: [String] = []
        var binds: [SQLValue] = []
        if let state = query.state {
            conditions.append("state = ?")
            binds.append(.text(state.rawValue))
        }
        if let geo = query.geo {
            conditions.append("geo = ?")
            binds.append(.text(geo))
        }
        if let after = query.after {
            conditions.append("id > ?")
            binds.append(.text(after.rawValue))
        }
        binds.append(.integer(Int64(query.limit)))
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        return try await self.backend.withReadTransaction { [binds] session in
            try await session.query(
                "SELECT \(Self.tenantColumns) FROM tenants \(filter) ORDER BY id LIMIT ?", binds
            ).map(Self.tenant(from:))
        }
    }

    // MARK: Callers

    public func callers() async throws -> [Caller] {
        try await self.backend.withReadTransaction { session in
            try await session.query("SELECT \(Self.callerColumns) FROM callers ORDER BY id", []).map(Self.caller(from:))
        }
    }

    public func deleteCaller(_ id: String, expectedVersion: RecordVersion, actor: String) async throws {
        let now = self.clock.now
        try await self.backend.withTransaction { session in
            // Locked (PostgreSQL; SQLite's writer holds the database), so an update committed
            // between this read and the DELETE cannot leave the caller in place while the delete
            // is answered and audited; the DELETE's own rows are checked as well.
            guard
                let row = try await session.query(
                    "SELECT \(Self.callerColumns) FROM callers WHERE id = ?\(Self.forUpdate(session))", [.text(id)]
                ).first
            else { throw BrokerError(.notFound, "no caller \(id)") }
            let caller = try Self.caller(from: row)
            guard caller.version == expectedVersion else {
                throw BrokerError(.versionConflict, "caller \(id) is at \(caller.version), not \(expectedVersion)")
            }
            let deleted = try await session.query(
                "DELETE FROM callers WHERE id = ? AND version = ? RETURNING id", [.text(id), .integer(expectedVersion.rawValue)])
            guard !deleted.isEmpty else {
                throw BrokerError(.versionConflict, "caller \(id) changed while it was being deleted; read it again")
            }
            try await self.audit(
                session, actor: actor, tenant: nil, operation: "caller.deleted",
                detail: "caller=\(id) before=\(try Self.summary(caller))",
                at: now)
            // Followers re-read the caller, find it gone, and drop it from their caches.
            try await self.recordChange(session, .caller, id, expectedVersion.next, at: now)
        }
    }

    // MARK: Audit

    public func auditEntries(_ query: AuditQuery) async throws -> [AuditEntry] {
        var conditions = ["seq > ?"]
        var binds: [SQLValue] = [.integer(query.afterSequence)]
        if let tenant = query.tenant {
            conditions.append("tenant_id = ?")
            binds.append(.text(tenant.rawValue))
        }
        if let actor = query.actor {
            // Staff actors are recorded as `staff:<oid> (<name>)`: `staff:<oid>` finds them too.
            conditions.append("(actor = ? OR actor LIKE ? ESCAPE '!')")
            let escaped = actor.replacingOccurrences(of: "!", with: "!!").replacingOccurrences(of: "%", with: "!%")
                .replacingOccurrences(of: "_", with: "!_")
            binds += [.text(actor), .text(escaped + " (%")]
        }
        if let operation = query.operation {
            conditions.append("operation = ?")
            binds.append(.text(operation))
        }
        if let from = query.from {
            conditions.append("time_us >= ?")
            binds.append(.integer(self.micros(from)))
        }
        if let to = query.to {
            conditions.append("time_us < ?")
            binds.append(.integer(self.micros(to)))
        }
        binds.append(.integer(Int64(query.limit)))
        return try await self.backend.withReadTransaction { [conditions, binds] session in
            try await session.query(
                """
                SELECT seq, \(Self.auditColumns) FROM audit_records
                WHERE \(conditions.joined(separator: " AND ")) ORDER BY seq LIMIT ?
                """, binds
            ).map { AuditEntry(sequence: try $0.integer("seq"), record: try Self.auditRecord(from: $0)) }
        }
    }

    // MARK: Helpers

    /// Refuses a registration whose id or customer tenant is taken.
    func checkUnregistered(_ session: any SQLSession, _ registration: TenantRegistration) async throws {
        if try await self.fetchTenant(session, registration.id, forUpdate: false) != nil {
            throw BrokerError(.uniqueConflict, "tenant id \(registration.id) is already registered")
        }
        if let existing = try await self.fetchTenant(session, entraTenantID: registration.entraTenantID) {
            throw BrokerError(
                .uniqueConflict, "customer tenant \(registration.entraTenantID) is already registered as \(existing.id)")
        }
    }

    /// Writes a new tenant row, `registered`, on `slot`.
    func insertTenant(
        _ session: any SQLSession, _ registration: TenantRegistration, slot slotID: FICSlotID?, at now: Date
    ) async throws -> Tenant {
        let tenant = Tenant(
            id: registration.id, entraTenantID: registration.entraTenantID, displayName: registration.displayName,
            geo: registration.geo, lifecycle: TenantLifecycle(key: registration.key), slotID: slotID,
            createdAt: now, updatedAt: now, version: .initial)
        _ = try await session.query(
            """
            INSERT INTO tenants (id, entra_tenant_id, display_name, geo, vault_url, key_name, key_version, state,
                was_activated, slot_id, created_at_us, updated_at_us, key_access_changed_at_us, version)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .text(tenant.id.rawValue), .text(tenant.entraTenantID.rawValue), .text(tenant.displayName),
                .text(tenant.geo), .text(tenant.key.vaultURL), .text(tenant.key.keyName),
                .text(tenant.key.keyVersion), .text(tenant.state.rawValue), .bool(false),
                .text(slotID?.rawValue), .integer(self.micros(now)), .integer(self.micros(now)), .integer(self.micros(now)),
                .integer(tenant.version.rawValue),
            ])
        return tenant
    }

    static let onboardingColumns = "binding_value, validation_json, suspension_reason"

    func fetchOnboarding(_ session: any SQLSession, _ id: TenantID) async throws -> TenantOnboarding? {
        try await session.query(
            "SELECT \(Self.onboardingColumns) FROM tenant_onboarding WHERE tenant_id = ?", [.text(id.rawValue)]
        ).first.map { try Self.onboarding(from: $0, id) }
    }

    static func onboarding(from row: SQLRow, _ id: TenantID) throws -> TenantOnboarding {
        var validation: ValidationRecord?
        if let json = try row.optionalText("validation_json") {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            do {
                validation = try decoder.decode(ValidationRecord.self, from: Data(json.utf8))
            } catch {
                throw BrokerError(.storeFailure, "tenant \(id)'s recorded validation is unreadable", underlying: error)
            }
        }
        return TenantOnboarding(
            bindingValue: try row.text("binding_value"), lastValidation: validation,
            suspensionReason: try row.optionalText("suspension_reason"))
    }

    /// A caller as an audit detail shows it: identity, enabled, the context policy, grants.
    static func summary(_ caller: Caller) throws -> String {
        "{identity=\(quoted(caller.identity)) enabled=\(caller.enabled) require_context=\(caller.requireContext) grants=\(try encodeGrants(caller.grants))}"
    }

    /// A free-text value inside an audit detail, quoted and bounded so it cannot forge fields.
    static func quoted(_ text: String) -> String {
        let bounded = text.count > 200 ? String(text.prefix(200)) + "…" : text
        let escaped = bounded.unicodeScalars.map { scalar -> String in
            switch scalar {
            case "\"": return "\\\""
            case "\\": return "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f: return "\\u{\(String(scalar.value, radix: 16))}"
            default: return String(scalar)
            }
        }.joined()
        return "\"\(escaped)\""
    }
}
