import FedBrokerCore
import Foundation
import Testing

@testable import BrokerStore

/// The store's half of access recovery: the shared re-probe schedule, schema 4's renamed states,
/// and the per-caller context policy.
@Suite struct AccessRecoveryStoreTests {
    let schedule = try! AccessReprobeSchedule(minimumSeconds: 60, maximumSeconds: 900)

    /// An active tenant that has just lost access (at the database clock's now).
    func lostTenant(_ store: SQLBrokerStore, _ n: Int = 1) async throws -> Tenant {
        var tenant = try await store.registerTenant(makeRegistration(n), actor: "onboarding")
        tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .validationSucceeded, actor: "a")
        tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .activate, actor: "a")
        return try await store.transitionTenant(
            tenant.id, expectedVersion: tenant.version, event: .accessLost(.roleRemoved), actor: "fedbroker")
    }

    @Test("The first probe is due a minimum after the loss, then the schedule backs off", arguments: StoreKind.allCases)
    func scheduleFollowsTheLoss(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            try await makeActiveSlots(store, 1...1)
            let tenant = try await lostTenant(store)
            let lostAt = database.clock.now
            #expect(try await store.claimAccessProbe(tenant.id, schedule: schedule) == .notDue(until: lostAt.addingTimeInterval(60)))
            database.clock.advance(by: 60)
            let first = try await store.claimAccessProbe(tenant.id, schedule: schedule)
            #expect(first == .probeNow(attempt: 1, nextProbeAt: lostAt.addingTimeInterval(60 + 120)))
            // The probe failed; asking again before the next due time finds nothing to do.
            database.clock.advance(by: 119)
            #expect(try await store.claimAccessProbe(tenant.id, schedule: schedule) == .notDue(until: lostAt.addingTimeInterval(180)))
            database.clock.advance(by: 1)
            #expect(try await store.claimAccessProbe(tenant.id, schedule: schedule) == .probeNow(attempt: 2, nextProbeAt: lostAt.addingTimeInterval(180 + 240)))
        }
    }

    @Test("Replicas asking at the same time get one probe between them", arguments: StoreKind.allCases)
    func oneReplicaProbes(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            try await makeActiveSlots(store, 1...1)
            let tenant = try await lostTenant(store)
            database.clock.advance(by: 61)
            let claims = try await withReplicas(4, of: database) { replicas in
                try await withThrowingTaskGroup(of: AccessProbeClaim.self) { group in
                    for replica in replicas + [store] {
                        group.addTask { [schedule] in try await replica.claimAccessProbe(tenant.id, schedule: schedule) }
                    }
                    return try await group.reduce(into: [AccessProbeClaim]()) { $0.append($1) }
                }
            }
            let probes = claims.filter { if case .probeNow = $0 { true } else { false } }
            #expect(probes.count == 1, "\(claims)")
            #expect(claims.count == 5)
        }
    }

    @Test("Only access_lost tenants are probed: a suspended or recovered tenant is not, and its schedule is forgotten",
          arguments: StoreKind.allCases)
    func onlyAccessLost(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            try await makeActiveSlots(store, 1...2)
            var suspended = try await lostTenant(store, 1)
            database.clock.advance(by: 61)
            #expect(try await store.claimAccessProbe(suspended.id, schedule: schedule) != .notLost)
            suspended = try await store.transitionTenant(
                suspended.id, expectedVersion: suspended.version, event: .suspend, reason: "incident 12", actor: "staff:a")
            database.clock.advance(by: 3_600)
            #expect(try await store.claimAccessProbe(suspended.id, schedule: schedule) == .notLost)

            var recovered = try await lostTenant(store, 2)
            recovered = try await store.transitionTenant(
                recovered.id, expectedVersion: recovered.version, event: .accessRestored, actor: "fedbroker")
            #expect(try await store.claimAccessProbe(recovered.id, schedule: schedule) == .notLost)
            let rows = try await store.backend.withReadTransaction { session in
                try await session.query("SELECT tenant_id FROM tenant_access_probes", []).count
            }
            #expect(rows == 0)

            // Losing access again starts a new episode: first probe a minimum after the new loss.
            recovered = try await store.transitionTenant(
                recovered.id, expectedVersion: recovered.version, event: .accessLost(.keyDisabled), actor: "fedbroker")
            #expect(
                try await store.claimAccessProbe(recovered.id, schedule: schedule)
                    == .notDue(until: database.clock.now.addingTimeInterval(60)))
        }
    }

    @Test("The role-propagation window starts when a tenant becomes servable or changes its key, not at a slot move or a validation",
          arguments: StoreKind.allCases)
    func keyAccessWindow(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            try await makeActiveSlots(store, 1...2)
            var tenant = try await store.registerTenant(makeRegistration(1), actor: "onboarding")
            #expect(tenant.keyAccessChangedAt == database.clock.now)
            database.clock.advance(by: 10)
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .validationSucceeded, actor: "a")
            #expect(tenant.keyAccessChangedAt == database.clock.now.addingTimeInterval(-10), "a validation is no new grant")
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .activate, actor: "a")
            let activated = database.clock.now
            #expect(tenant.keyAccessChangedAt == activated)
            database.clock.advance(by: 100)
            let otherSlot = tenant.slotID == slotID(1) ? slotID(2) : slotID(1)
            tenant = try await store.assignTenant(tenant.id, expectedVersion: tenant.version, to: otherSlot, actor: "sre")
            #expect(tenant.slotID == otherSlot)
            #expect(tenant.updatedAt == database.clock.now)
            #expect(tenant.keyAccessChangedAt == activated, "an SRE's slot move must not reopen the window")
            #expect(try await store.tenant(tenant.id).keyAccessChangedAt == activated, "as stored")
            database.clock.advance(by: 100)
            let newVersion = try KeyReference(vaultURL: tenant.key.vaultURL, keyName: tenant.key.keyName, keyVersion: "0123456789abcdef0123456789abcdef")
            tenant = try await store.changeTenantKey(tenant.id, expectedVersion: tenant.version, to: newVersion, actor: "staff")
            #expect(tenant.keyAccessChangedAt == database.clock.now, "a key change does")
            database.clock.advance(by: 100)
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .accessLost(.roleRemoved), actor: "fedbroker")
            #expect(tenant.keyAccessChangedAt == database.clock.now.addingTimeInterval(-100))
            database.clock.advance(by: 100)
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .accessRestored, actor: "fedbroker")
            #expect(tenant.keyAccessChangedAt == database.clock.now, "access found again: the role was just granted again")
            #expect(try await store.tenant(tenant.id).keyAccessChangedAt == database.clock.now)
        }
    }

    @Test("A loss keeps what the broker observed as the tenant's reason; an operator's suspension keeps theirs",
          arguments: StoreKind.allCases)
    func reasons(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await makeActiveSlots(store, 1...1)
            var tenant = try await store.registerTenant(makeRegistration(1), bindingValue: "fbb-1", idempotency: nil, actor: "staff:a").tenant
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .validationSucceeded, actor: "a")
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .activate, actor: "a")
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .accessLost(.applicationRemoved), actor: "fedbroker")
            #expect(try await store.onboarding(tenant.id)?.suspensionReason == "application_removed")
            tenant = try await store.transitionTenant(
                tenant.id, expectedVersion: tenant.version, event: .suspend, reason: "customer asked", actor: "staff:a")
            #expect(try await store.onboarding(tenant.id)?.suspensionReason == "customer asked")
            let operations = try await store.auditRecords(tenant: tenant.id, from: .distantPast, to: .distantFuture, limit: 20).map(\.operation)
            #expect(operations.suffix(2) == ["tenant.access_lost.application_removed", "tenant.suspended"])
        }
    }

    @Test("A caller's context policy is stored, updated and audited", arguments: StoreKind.allCases)
    func requireContext(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let grants = [CallerGrant(operations: [.unwrap], tenants: .all)]
            let created = try await store.createCaller(Caller(id: "billing", identity: "billing-api", grants: grants, requireContext: true), actor: "sre")
            #expect(try await store.caller("billing").requireContext)
            #expect(try await store.caller(identity: "billing-api")?.requireContext == true)
            var changed = created
            changed.requireContext = false
            _ = try await store.updateCaller(changed, actor: "sre")
            #expect(try await store.caller("billing").requireContext == false)
            #expect(try await store.callers().map(\.requireContext) == [false])
            let details = try await store.auditEntries(AuditQuery(operation: "caller.updated")).compactMap(\.record.detail)
            #expect(details.count == 1)
            #expect(details.first?.contains("before={identity=\"billing-api\" enabled=true require_context=true") == true, "\(details)")
            #expect(details.first?.contains("after={identity=\"billing-api\" enabled=true require_context=false") == true, "\(details)")
            // A caller created without saying is not held to it.
            _ = try await store.createCaller(Caller(id: "reports", identity: "reports-api", grants: grants), actor: "sre")
            #expect(try await store.caller("reports").requireContext == false)
        }
    }

    @Test("Schema 4 renames the states of existing rows: suspended → access_lost, then disabled → suspended",
          arguments: StoreKind.allCases)
    func migrationRenamesStates(kind: StoreKind) async throws {
        try await withStore(kind, migrate: false) { store, _ in
            let dialect: SQLDialect = kind == .postgres ? .postgres : .sqlite
            let upToThree = EmbeddedMigrations.migrations(for: dialect).filter { $0.version <= 3 }
            #expect(upToThree.map(\.version) == [1, 2, 3])
            // The database as a fedbroker of schema 3 left it: one tenant the customer cut off, one
            // an operator disabled (with its onboarding row), one active, one caller.
            try await store.backend.withTransaction { session in
                try await session.execute(
                    """
                    CREATE TABLE fedbroker_schema_migrations (
                        version INTEGER PRIMARY KEY, file TEXT NOT NULL, checksum TEXT NOT NULL, applied_at_us BIGINT NOT NULL)
                    """)
                for migration in upToThree {
                    for statement in migration.statements { try await session.execute(statement) }
                    _ = try await session.query(
                        "INSERT INTO fedbroker_schema_migrations (version, file, checksum, applied_at_us) VALUES (?, ?, ?, 0)",
                        [.integer(Int64(migration.version)), .text(migration.file), .text(migration.checksum)])
                }
                for (n, state) in [(1, "suspended"), (2, "disabled"), (3, "active")] {
                    _ = try await session.query(
                        """
                        INSERT INTO tenants (id, entra_tenant_id, display_name, geo, vault_url, key_name, key_version, state,
                            was_activated, slot_id, created_at_us, updated_at_us, version)
                        VALUES (?, ?, ?, 'europe', 'https://c.vault.azure.net', 'cmk', NULL, ?, ?, NULL, 0, 7000000, 3)
                        """,
                        [.text("customer-\(n)"), .text("00000000-0000-0000-0000-00000000000\(n)"), .text("Customer \(n)"), .text(state), .bool(true)])
                }
                _ = try await session.query(
                    "INSERT INTO tenant_onboarding (tenant_id, binding_value, suspension_reason) VALUES ('customer-2', 'fbb-2', 'billing hold')", [])
                _ = try await session.query(
                    """
                    INSERT INTO callers (id, identity, grants_json, enabled, created_at_us, updated_at_us, version)
                    VALUES ('billing', 'billing-api', '[]', ?, 0, 0, 1)
                    """, [.bool(true)])
            }
            let report = try await store.migrate()
            #expect(report.previousVersion == 3)
            #expect(report.applied == ["0004_access_recovery.sql", "0005_key_access_changed_at.sql"])
            let states = try await store.tenants().map { "\($0.id)=\($0.state.rawValue)" }
            #expect(states == ["customer-1=access_lost", "customer-2=suspended", "customer-3=active"])
            // Schema 5: the role-propagation window of existing rows starts where it did before,
            // at their last update.
            #expect(try await store.tenants().allSatisfy { $0.keyAccessChangedAt == Date(timeIntervalSince1970: 7) })
            #expect(try await store.onboarding(TenantID(rawValue: "customer-2")!)?.suspensionReason == "billing hold")
            #expect(try await store.caller("billing").requireContext == false)
            // The new constraint admits the new states and nothing else.
            await expectBrokerError(.invalidData) {
                try await store.executeForTesting("UPDATE tenants SET state = 'disabled' WHERE id = 'customer-3'")
            }
            // The rebuilt table still enforces its keys (SQLite rebuilt it; PostgreSQL altered it),
            // and the onboarding row still references it.
            await expectBrokerError(.uniqueConflict) {
                try await store.executeForTesting(
                    """
                    INSERT INTO tenants (id, entra_tenant_id, display_name, geo, vault_url, key_name, state, was_activated,
                        created_at_us, updated_at_us, key_access_changed_at_us, version)
                    VALUES ('customer-9', '00000000-0000-0000-0000-000000000001', 'Again', 'europe', 'https://d.vault.azure.net',
                        'cmk', 'registered', \(kind == .postgres ? "false" : "0"), 0, 0, 0, 1)
                    """)
            }
            await expectBrokerError(.invalidData) {
                try await store.executeForTesting("DELETE FROM tenants WHERE id = 'customer-2'")
            }
        }
    }
}
