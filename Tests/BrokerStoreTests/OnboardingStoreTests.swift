import FedBrokerCore
import Foundation
import Testing

@testable import BrokerStore

/// What the admin API asks of the store, against PostgreSQL and SQLite alike.
@Suite struct OnboardingStoreTests {
    @Test("Onboarding registration needs an active slot: none, and nothing is stored", arguments: StoreKind.allCases)
    func noActiveSlot(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            await expectBrokerError(.noActiveSlot) {
                _ = try await store.registerTenant(makeRegistration(1), bindingValue: "fbb-1", idempotency: nil, actor: "staff:a")
            }
            let stored = try await store.tenants()
            #expect(stored.isEmpty)
        }
    }

    @Test("An Idempotency-Key replays its tenant for the same request and refuses a different one", arguments: StoreKind.allCases)
    func idempotency(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await makeActiveSlots(store, 1...1)
            let key = RegistrationIdempotency(key: "k-1", fingerprint: "f-1")
            let first = try await store.registerTenant(makeRegistration(1), bindingValue: "fbb-1", idempotency: key, actor: "staff:a")
            #expect(first.created)
            #expect(first.onboarding.bindingValue == "fbb-1")
            // A retry builds a new registration (new id, new binding value): the first one comes back.
            let replay = try await store.registerTenant(makeRegistration(2), bindingValue: "fbb-2", idempotency: key, actor: "staff:a")
            #expect(!replay.created)
            #expect(replay.tenant == first.tenant)
            #expect(replay.onboarding.bindingValue == "fbb-1")
            await expectBrokerError(.idempotencyKeyReused) {
                _ = try await store.registerTenant(
                    makeRegistration(3), bindingValue: "fbb-3", idempotency: .init(key: "k-1", fingerprint: "other"), actor: "staff:a")
            }
            #expect(try await store.tenants().count == 1)
        }
    }

    @Test("A validation is recorded; success moves registered to validated, failure changes no state", arguments: StoreKind.allCases)
    func validations(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            try await makeActiveSlots(store, 1...1)
            var tenant = try await store.registerTenant(makeRegistration(1), bindingValue: "fbb-1", idempotency: nil, actor: "staff:a").tenant
            let step = ValidationRecord.Step(name: "binding tag", ok: false, milliseconds: 0, detail: "missing", code: "BINDING_TAG_MISSING", responsible: "customer")
            let failed = ValidationRecord(succeeded: false, time: database.clock.now, slotID: tenant.slotID, steps: [step])
            tenant = try await store.recordValidation(tenant.id, expectedVersion: tenant.version, result: failed, actor: "staff:a")
            #expect(tenant.state == .registered)
            #expect(try await store.onboarding(tenant.id)?.lastValidation?.failureCode == "BINDING_TAG_MISSING")
            let passed = ValidationRecord(succeeded: true, time: database.clock.now, slotID: tenant.slotID, steps: [])
            tenant = try await store.recordValidation(tenant.id, expectedVersion: tenant.version, result: passed, actor: "staff:a")
            #expect(tenant.state == .validated)
            let onboarding = try #require(try await store.onboarding(tenant.id))
            #expect(onboarding.allowsActivation(now: database.clock.now, freshness: 60))
            #expect(!onboarding.allowsActivation(now: database.clock.now.addingTimeInterval(61), freshness: 60))
            await expectBrokerError(.versionConflict) {
                _ = try await store.recordValidation(tenant.id, expectedVersion: .initial, result: passed, actor: "staff:a")
            }
            let audit = try await store.auditEntries(AuditQuery(tenant: tenant.id, operation: "tenant.validation"))
            #expect(audit.count == 2)
        }
    }

    @Test("An operator's reason is kept with the transition and cleared by the next one", arguments: StoreKind.allCases)
    func suspensionReason(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await makeActiveSlots(store, 1...1)
            var tenant = try await store.registerTenant(makeRegistration(1), bindingValue: "fbb-1", idempotency: nil, actor: "staff:a").tenant
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .suspend, reason: "billing hold\n", actor: "staff:a")
            #expect(tenant.state == .suspended)
            #expect(try await store.onboarding(tenant.id)?.suspensionReason == "billing hold\n")
            let detail = try await store.auditEntries(AuditQuery(tenant: tenant.id, operation: "tenant.suspended")).first?.record.detail
            #expect(detail?.contains(#"reason="billing hold\u{a}""#) == true, "\(detail ?? "")")
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .offboard, reason: nil, actor: "staff:a")
            #expect(tenant.slotID == nil)
            #expect(try await store.onboarding(tenant.id)?.suspensionReason == nil)
        }
    }

    @Test("Restore is one transaction: back to active with its validation recorded and both audited, or nothing at all",
          arguments: StoreKind.allCases)
    func restoreIsAtomic(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            try await makeActiveSlots(store, 1...1)
            var tenant = try await store.registerTenant(makeRegistration(1), bindingValue: "fbb-1", idempotency: nil, actor: "staff:a").tenant
            let passed = ValidationRecord(succeeded: true, time: database.clock.now, slotID: tenant.slotID, steps: [])
            tenant = try await store.recordValidation(tenant.id, expectedVersion: tenant.version, result: passed, actor: "staff:a")
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .activate, reason: nil, actor: "staff:a")
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .suspend, reason: "hold", actor: "staff:a")

            // The validation's half fails (its onboarding row is gone): the transition's half must
            // not stay behind, or the client would get an error for a tenant already serving.
            try await store.executeForTesting("DELETE FROM tenant_onboarding WHERE tenant_id = '\(tenant.id.rawValue)'")
            await expectBrokerError(.notFound) {
                _ = try await store.restoreTenant(tenant.id, expectedVersion: tenant.version, event: .restore, validation: passed, actor: "staff:b")
            }
            #expect(try await store.tenant(tenant.id).state == .suspended)
            #expect(try await store.tenant(tenant.id).version == tenant.version)
            #expect(try await store.auditEntries(AuditQuery(tenant: tenant.id, actor: "staff:b")).isEmpty)

            // With the row back, the same call restores it, and both records are in the trail.
            try await store.executeForTesting(
                "INSERT INTO tenant_onboarding (tenant_id, binding_value) VALUES ('\(tenant.id.rawValue)', 'fbb-1')")
            let restored = try await store.restoreTenant(tenant.id, expectedVersion: tenant.version, event: .restore, validation: passed, actor: "staff:b")
            #expect(restored.state == .active)
            #expect(try await store.onboarding(tenant.id)?.suspensionReason == nil)
            #expect(try await store.onboarding(tenant.id)?.lastValidation?.succeeded == true)
            let trail = try await store.auditEntries(AuditQuery(tenant: tenant.id, actor: "staff:b")).map(\.record.operation)
            #expect(trail == ["tenant.restored", "tenant.validation"], "in sequence order, the transition first: \(trail)")
            await expectBrokerError(.invalidArgument) {
                let failed = ValidationRecord(succeeded: false, time: database.clock.now, slotID: restored.slotID, steps: [])
                _ = try await store.restoreTenant(restored.id, expectedVersion: restored.version, event: .restore, validation: failed, actor: "staff:b")
            }
        }
    }

    @Test("Tenant pages filter by state and geo and continue after the last id", arguments: StoreKind.allCases)
    func tenantPages(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await makeActiveSlots(store, 1...1)
            for n in 1...5 { _ = try await store.registerTenant(makeRegistration(n), bindingValue: "fbb-\(n)", idempotency: nil, actor: "a") }
            let first = try await store.tenants(matching: TenantQuery(limit: 2))
            #expect(first.map(\.id.rawValue) == ["customer-1", "customer-2"])
            let second = try await store.tenants(matching: TenantQuery(after: first.last?.id, limit: 2))
            #expect(second.map(\.id.rawValue) == ["customer-3", "customer-4"])
            #expect(try await store.tenants(matching: TenantQuery(state: .active)).isEmpty)
            #expect(try await store.tenants(matching: TenantQuery(state: .registered, geo: "europe")).count == 5)
            #expect(try await store.tenants(matching: TenantQuery(geo: "japan")).isEmpty)
        }
    }

    @Test("Audit pages: by actor (staff:<oid> finds 'staff:<oid> (name)', and LIKE wildcards are literal), by operation, by sequence",
          arguments: StoreKind.allCases)
    func auditPages(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await makeActiveSlots(store, 1...1)
            _ = try await store.registerTenant(makeRegistration(1), bindingValue: "b", idempotency: nil, actor: "staff:oid-1 (Ann)")
            _ = try await store.registerTenant(makeRegistration(2), bindingValue: "b", idempotency: nil, actor: "staff:oid-2 (Bob)")
            _ = try await store.registerTenant(makeRegistration(3), bindingValue: "b", idempotency: nil, actor: "staff:oid_1 (Eve)")
            let ann = try await store.auditEntries(AuditQuery(actor: "staff:oid-1"))
            #expect(ann.map(\.record.actor) == ["staff:oid-1 (Ann)"])
            #expect(try await store.auditEntries(AuditQuery(actor: "staff:oid-1 (Ann)")).count == 1)
            #expect(try await store.auditEntries(AuditQuery(actor: "staff:oid_1")).map(\.record.actor) == ["staff:oid_1 (Eve)"])
            #expect(try await store.auditEntries(AuditQuery(actor: "staff:oid%")).isEmpty)
            let registered = try await store.auditEntries(AuditQuery(operation: "tenant.registered", limit: 2))
            #expect(registered.count == 2)
            let rest = try await store.auditEntries(AuditQuery(operation: "tenant.registered", afterSequence: registered.last!.sequence))
            #expect(rest.map(\.record.tenantID?.rawValue) == ["customer-3"])
            // Bounds come from callers (GET /v1/audit?from=…) and may lie past what Int64
            // microseconds hold (year 292,277); they clamp instead of trapping.
            let farFuture = Date(timeIntervalSince1970: 1e16)  // about year 316,889,355
            let farPast = Date(timeIntervalSince1970: -1e16)
            #expect(SQLBrokerStore.micros(farFuture) == .max)
            #expect(SQLBrokerStore.micros(farPast) == .min)
            #expect(try await store.auditEntries(AuditQuery(from: farFuture)).isEmpty)
            #expect(try await store.auditEntries(AuditQuery(operation: "tenant.registered", from: farPast, to: farFuture)).count == 3)
        }
    }

    @Test("Callers are listed by id and removed only at their version", arguments: StoreKind.allCases)
    func callers(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let b = try await store.createCaller(Caller(id: "b", identity: "svc-b", grants: []), actor: "staff:a")
            var a = try await store.createCaller(Caller(id: "a", identity: "svc-a", grants: []), actor: "staff:a")
            a.enabled = false
            _ = try await store.updateCaller(a, actor: "staff:a")
            // Who changed what, before and after.
            let change = try #require(try await store.auditEntries(AuditQuery(operation: "caller.updated")).first?.record)
            #expect(change.actor == "staff:a")
            #expect(change.detail?.contains(#"before={identity="svc-a" enabled=true"#) == true, "\(change.detail ?? "")")
            #expect(change.detail?.contains(#"after={identity="svc-a" enabled=false"#) == true, "\(change.detail ?? "")")
            #expect(try await store.callers().map(\.id) == ["a", "b"])
            await expectBrokerError(.versionConflict) { try await store.deleteCaller("b", expectedVersion: b.version.next, actor: "staff:a") }
            await expectBrokerError(.notFound) { try await store.deleteCaller("zzz", expectedVersion: .initial, actor: "staff:a") }
            try await store.deleteCaller("b", expectedVersion: b.version, actor: "staff:a")
            #expect(try await store.callers().map(\.id) == ["a"])
            #expect(try await store.caller(identity: "svc-b") == nil)
            #expect(try await store.auditEntries(AuditQuery(operation: "caller.deleted")).count == 1)
        }
    }
}
