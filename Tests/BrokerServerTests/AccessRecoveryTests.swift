import AzureEmulator
import AzureIdentity
import BrokerApp
import BrokerClient
import BrokerServer
import BrokerStore
import BrokerWire
import FedBrokerCore
import Foundation
import Testing
import FedBrokerTestSupport

/// Access lost and found again, end to end: the emulator (its role assignments changed the way a
/// customer's admin changes them), the broker as `BrokerApp` builds it (its own access-recovery
/// service, on short configured intervals), SQLite, and a caller over mTLS. Nobody on the ISV's
/// side acts between the loss and the recovery.
@Suite struct AccessRecoveryTests {
    let e2e = EndToEndTests()

    struct World {
        let emulator: AzureEmulator
        let app: BrokerApp
        let pki: LocalPKI
        let tenant: TenantID
        let customer: DefaultScenario.Customer
        let recovery: AccessRecovery.Configuration

        func client(_ name: String) throws -> LedgeredClient {
            LedgeredClient(
                FedBrokerClient(
                    configuration: .init(host: "127.0.0.1", port: app.port, tls: try pki.clientTLS(commonName: name), serverHostname: "localhost")))
        }
        func counter(_ name: String) -> Int { emulator.state.counters.snapshot[name] ?? 0 }
        func state() async throws -> TenantState { try await app.store.tenant(tenant).state }

        /// The customer's role assignment that lets our application use their key.
        func roleAssignment() throws -> Directory.RoleAssignment {
            let assignment = emulator.state.read { directory in
                directory.vaults[customer.vaultName.lowercased()]?.roleAssignments.first {
                    $0.principalId == customer.servicePrincipalObjectID.lowercased() && $0.removedFrom == nil
                }
            }
            guard let assignment else { throw FixtureError("the scenario grants the application no role on \(customer.vaultName)") }
            return assignment
        }

        /// Polls (every 50 ms, at most `seconds`) until the tenant is in `state`; returns how long it took.
        @discardableResult
        func waitFor(_ state: TenantState, within seconds: Double) async throws -> Double {
            let start = Date()
            while try await self.state() != state {
                guard Date().timeIntervalSince(start) < seconds else {
                    throw FixtureError("tenant \(tenant) did not become \(state) within \(seconds) s (it is \(try await self.state()))")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            return Date().timeIntervalSince(start)
        }

        /// Polls until the emulator has counted `count` more `name` requests than `base`.
        func waitForCounter(_ name: String, above base: Int, by count: Int, within seconds: Double) async throws {
            let start = Date()
            while counter(name) < base + count {
                guard Date().timeIntervalSince(start) < seconds else {
                    throw FixtureError("\(name) rose by \(counter(name) - base), not \(count), within \(seconds) s")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// `schedule`: the broker's own re-probe schedule (short, so the test sees it work).
    func withWorld(
        schedule: AccessReprobeSchedule = try! AccessReprobeSchedule(minimumSeconds: 0.2, maximumSeconds: 1),
        rolePropagationSeconds: Double = 0,
        journal: Bool = false,
        answerReserveSeconds: Double? = nil,
        _ body: (World) async throws -> Void
    ) async throws {
        let logger = TestLogging.logger(label: "access-recovery")
        try await RunningEmulator.with(logger: logger) { running in
            var service = BrokerService.Configuration(environment: running.environment)
            service.azureAttemptTimeout = 120
            // The role is removed right after activation here; in production a ForbiddenByRbac that
            // soon after activation is still taken for role propagation and retried.
            service.rolePropagationSeconds = rolePropagationSeconds
            service.answerReserveSeconds = answerReserveSeconds ?? service.answerReserveSeconds
            var configuration = BrokerAppConfiguration(
                store: .sqlite(path: running.directory.appendingPathComponent("broker.db").path), service: service)
            let pki = try LocalPKI()
            configuration.transport.tls = try pki.serverTLS()
            configuration.accessRecovery.schedule = schedule
            configuration.accessRecovery.probeTimeoutSeconds = 20
            if journal {
                configuration.auditJournal = .init(directory: running.directory.appendingPathComponent("journal").path)
            }
            let app = try await BrokerApp.build(configuration, signals: [], logger: logger)
            try await app.serving {
                let store = app.store
                try await running.activateSlots(in: store)
                let customer = running.scenario.customers[0]
                var tenant = try await store.registerTenant(
                    try TenantRegistration(
                        id: TenantID(rawValue: "customer-1")!, entraTenantID: EntraTenantID(validating: customer.tenantID),
                        displayName: "Customer 1", geo: "europe", key: KeyReference(vaultURL: customer.vaultURL, keyName: customer.keyName)),
                    actor: "onboarding")
                tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .validationSucceeded, actor: "onboarding")
                tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .activate, actor: "onboarding")
                _ = try await store.createCaller(
                    Caller(
                        id: "svc-a", identity: LocalPKI.callerIdentity("svc-a"),
                        grants: [CallerGrant(operations: Set(KeyOperation.allCases), tenants: .only([tenant.id]))]),
                    actor: "sre")
                try await body(
                    World(
                        emulator: running.emulator, app: app, pki: pki, tenant: tenant.id, customer: customer,
                        recovery: configuration.accessRecovery))
            }
        }
    }

    func deadline() -> Date { Date().addingTimeInterval(120) }

    @Test("Role removed: the tenant becomes access_lost. When the role is granted again, service resumes within the documented bound, with no operator")
    func roleRemovedThenGrantedAgain() async throws {
        try await withWorld { w in
            let client = try w.client("svc-a")
            let (plaintext, blob, _) = try await client.generateDataKey(tenant: w.tenant.rawValue, deadline: deadline())

            // The customer's admin removes the role: the next key operation is refused, and the
            // broker records the loss itself.
            let assignment = try w.roleAssignment()
            try w.emulator.state.removeRoleAssignment(vault: w.customer.vaultName, id: assignment.id)
            let status = await e2e.refusal { _ = try await client.generateDataKey(tenant: w.tenant.rawValue, deadline: deadline()) }
            #expect(status?.code == .permissionDenied)
            #expect(status?.reason == .accessRevokedByCustomer)
            try await w.waitFor(.accessLost, within: 30)

            // While the role is missing the broker keeps probing, and keeps the tenant where it is.
            let probesBefore = w.counter("keyvault.wrapkey")
            try await w.waitForCounter("keyvault.wrapkey", above: probesBefore, by: 2, within: 60)
            #expect(try await w.state() == .accessLost)

            // The customer grants the role again. No one at the ISV does anything.
            _ = try w.emulator.state.assignRole(
                vault: w.customer.vaultName, principalID: w.customer.servicePrincipalObjectID, keyName: assignment.keyScope)
            let took = try await w.waitFor(.active, within: 60)
            // docs/operations.md: once access works again, service resumes within
            // tenants.reprobeMaxSeconds plus the time one probe takes.
            #expect(took <= w.recovery.schedule.maximumSeconds + w.recovery.probeTimeoutSeconds, "took \(took) s")

            // Service is back: old blobs open and new keys are made, through the same client.
            #expect(try await client.unwrap(blob, deadline: deadline()) == plaintext)
            #expect(try await client.generateDataKey(tenant: w.tenant.rawValue, deadline: deadline()).plaintext.count == 32)

            // The audit trail shows the loss and the recovery, both by the broker itself.
            let records = try await w.app.store.auditRecords(tenant: w.tenant, from: .distantPast, to: .distantFuture, limit: 200)
            let lifecycle = records.filter { $0.operation.hasPrefix("tenant.") }.map { "\($0.operation) by \($0.actor)" }
            #expect(
                lifecycle == [
                    "tenant.registered by onboarding", "tenant.validated by onboarding", "tenant.activated by onboarding",
                    "tenant.access_lost.role_removed by fedbroker", "tenant.access_restored by fedbroker",
                ])
            await client.close()
        }
    }

    /// How a customer's directory refuses our application at the token exchange, and the reason
    /// the broker records for it: each names a different fix for the customer.
    enum DirectoryRefusal: String, CaseIterable, CustomTestStringConvertible {
        /// AADSTS7000112: the service principal disabled. Before, an SRE's `other`: answered
        /// IDENTITY_UNAVAILABLE on every call, and the tenant stayed active.
        case applicationDisabled = "application_disabled"
        /// AADSTS53003: a Conditional Access policy. Before, `application_removed`, whose runbook
        /// fix (consent again) lifts no policy.
        case conditionalAccess = "conditional_access"

        var testDescription: String { rawValue }

        func set(_ refusing: Bool, in w: World) throws {
            let appID = try #require(w.emulator.defaultScenario).appClientID
            switch self {
            case .applicationDisabled:
                try w.emulator.state.setServicePrincipalEnabled(tenantID: w.customer.tenantID, appID: appID, enabled: !refusing)
            case .conditionalAccess:
                w.emulator.state.setConditionalAccessBlock(tenantID: w.customer.tenantID, appID: appID, blocked: refusing)
            }
        }
    }

    @Test("The customer's directory refuses the application (AADSTS7000112 disabled, 53003 Conditional Access): access_lost at the token exchange with its own reason; undone, service resumes with no operator", arguments: DirectoryRefusal.allCases)
    func directoryRefusalThenUndone(_ refusal: DirectoryRefusal) async throws {
        try await withWorld { w in
            let client = try w.client("svc-a")
            // Before any call, so no token of the tenant is cached: a token already issued stays
            // good until it expires, in Azure as here.
            try refusal.set(true, in: w)
            let status = await e2e.refusal { _ = try await client.generateDataKey(tenant: w.tenant.rawValue, deadline: deadline()) }
            #expect(status?.code == .permissionDenied, "\(String(describing: status))")
            #expect(status?.reason == .accessRevokedByCustomer)
            try await w.waitFor(.accessLost, within: 30)

            try refusal.set(false, in: w)
            try await w.waitFor(.active, within: 60)
            #expect(try await client.generateDataKey(tenant: w.tenant.rawValue, deadline: deadline()).plaintext.count == 32)
            let records = try await w.app.store.auditRecords(tenant: w.tenant, from: .distantPast, to: .distantFuture, limit: 200)
            let lifecycle = records.filter { $0.operation.hasPrefix("tenant.access") }.map { "\($0.operation) by \($0.actor)" }
            #expect(lifecycle == ["tenant.access_lost.\(refusal.rawValue) by fedbroker", "tenant.access_restored by fedbroker"])
            await client.close()
        }
    }

    @Test("A burst of calls refused together records the loss of access once, and every caller gets the refusal", .timeLimit(.minutes(2)))
    func refusedBurstRecordsOnce() async throws {
        try await withWorld(journal: true) { w in
            let client = try w.client("svc-a")
            _ = try await client.generateDataKey(tenant: w.tenant.rawValue, deadline: deadline())
            let assignment = try w.roleAssignment()
            try w.emulator.state.removeRoleAssignment(vault: w.customer.vaultName, id: assignment.id)
            let before = w.app.service.lossRecordings.started

            // The store's write lock held: the first refusal's transition waits for it, so every
            // other refusal of the burst arrives while it is recorded.
            let (held, holding) = AsyncStream<Void>.makeStream()
            let (released, release) = AsyncStream<Void>.makeStream()
            defer { release.finish() }
            let holder = Task {
                defer { holding.finish() }
                try await w.app.store.holdingWriteTransactionForTesting {
                    holding.yield()
                    for await _ in released {}
                }
            }
            for await _ in held { break }
            let statuses = await withTaskGroup(of: WireStatus?.self) { group in
                for _ in 0..<8 {
                    group.addTask { await e2e.refusal { _ = try await client.generateDataKey(tenant: w.tenant.rawValue, deadline: Date().addingTimeInterval(6)) } }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            release.finish()
            try await holder.value
            #expect(statuses.count == 8)
            for status in statuses {
                #expect(status?.code == .permissionDenied, "\(String(describing: status))")
                #expect(status?.reason == .accessRevokedByCustomer)
            }
            // Before: eight transitions, one store write each, seven of them version conflicts
            // logged as `could not record that the tenant lost access`.
            #expect(w.app.service.lossRecordings.started - before == 1)
            // The callers left at their deadlines, before the lock was free; the recording did
            // not leave with them (before, it was the first caller's, and abandoned with it).
            try await w.waitFor(.accessLost, within: 30)
            await client.close()
        }
    }

    @Test("A loss of access decided on a record since replaced by an unrelated change is still recorded; one the tenant's own change overtook is not")
    func lossRecordedAtTheCurrentVersion() async throws {
        // No re-probe during the test: it would restore the tenant (its access works) under it.
        try await withWorld(schedule: try AccessReprobeSchedule(minimumSeconds: 600, maximumSeconds: 600)) { w in
            let store = w.app.store
            let stale = try await store.tenant(w.tenant)
            // A slot move and back: a new version, the same key access (as a cached record the
            // refusal was decided on would be, before the change feed replaces it).
            let home = try #require(stale.slotID)
            let other = try #require(try await store.slots().first { $0.state == .active && $0.id != home }, "the world has a second active slot")
            let moved = try await store.assignTenant(stale.id, expectedVersion: stale.version, to: other.id, actor: "sre")
            _ = try await store.assignTenant(moved.id, expectedVersion: moved.version, to: home, actor: "sre")
            await w.app.service.recordLoss(stale, reason: .roleRemoved, observedAt: Date(), until: Date().addingTimeInterval(10))
            // Before: a version conflict, logged, and the tenant left active.
            #expect(try await w.state() == .accessLost)

            // Restored since (a new key-access time): a refusal seen before that is not recorded.
            let lost = try await store.tenant(w.tenant)
            _ = try await store.transitionTenant(w.tenant, expectedVersion: lost.version, event: .accessRestored, actor: "fedbroker")
            await w.app.service.recordLoss(stale, reason: .roleRemoved, observedAt: Date(), until: Date().addingTimeInterval(10))
            #expect(try await w.state() == .active)

            // A validation that passed, its probe begun after the refusal was seen (the customer
            // repaired access, onboarding staff checked it): a new version under the same key
            // access. The stale refusal is not recorded.
            // (This world registers through the store, not the admin API: the onboarding row that
            // a validation writes to is added here.)
            try await store.executeForTesting(
                "INSERT INTO tenant_onboarding (tenant_id, binding_value) VALUES ('\(w.tenant.rawValue)', 'binding')")
            func validate(stepSeconds: Double) async throws -> Tenant {
                let before = try await store.tenant(w.tenant)
                let step = ValidationRecord.Step(name: "probe", ok: true, milliseconds: stepSeconds * 1000, detail: "ok")
                _ = try await store.recordValidation(
                    w.tenant, expectedVersion: before.version,
                    result: ValidationRecord(succeeded: true, time: Date(), slotID: before.slotID, steps: [step]), actor: "staff:a")
                return before
            }
            var refused = try await validate(stepSeconds: 0)  // a first validation, before anything was refused
            let refusedAt = Date().addingTimeInterval(-5)  // seen 5 s before the next validation's probe
            refused = try await validate(stepSeconds: 0.2)
            await w.app.service.recordLoss(refused, reason: .roleRemoved, observedAt: refusedAt, until: Date().addingTimeInterval(10))
            #expect(try await w.state() == .active, "a stale refusal undid a validation that passed after it")
            // One whose probe was under way when the refusal was seen does not count: recorded.
            // (A 10 s probe and a refusal 4 s ago: far enough from either side of the margin, and
            // from the stored time's whole seconds, that a delay here changes nothing.)
            refused = try await validate(stepSeconds: 10)
            await w.app.service.recordLoss(refused, reason: .roleRemoved, observedAt: Date().addingTimeInterval(-4), until: Date().addingTimeInterval(10))
            #expect(try await w.state() == .accessLost, "a refusal seen during the validation's probe was dropped")
            let lostAgain = try await store.tenant(w.tenant)
            _ = try await store.transitionTenant(w.tenant, expectedVersion: lostAgain.version, event: .accessRestored, actor: "fedbroker")

            // An operator's suspension after the refusal was seen: it stands.
            let seen = try await store.tenant(w.tenant)
            _ = try await store.transitionTenant(w.tenant, expectedVersion: seen.version, event: .suspend, reason: "maintenance", actor: "sre")
            await w.app.service.recordLoss(seen, reason: .roleRemoved, observedAt: Date(), until: Date().addingTimeInterval(10))
            #expect(try await w.state() == .suspended)
        }
    }

    @Test("A recording of a loss of access runs to its end when the call that started it is cancelled, and later calls join it", .timeLimit(.minutes(1)))
    func recordingOutlivesItsCaller() async throws {
        let recordings = AccessLossRecordings()
        let tenant = try #require(TenantID(rawValue: "customer-9"))
        let (gate, open) = AsyncStream<Void>.makeStream()
        let (ended, end) = AsyncStream<Void>.makeStream()
        // The call that starts it is cancelled, and gone, before the recording can end. (An
        // Unwrap's shared vault call is cancelled when its last waiter leaves.)
        let (never, keep) = AsyncStream<Void>.makeStream()
        defer { keep.finish() }
        let starter = Task {
            // Waits for its own cancellation (iterating a stream that never yields ends there),
            // so it starts the recording as a cancelled task.
            for await _ in never {}
            #expect(Task.isCancelled)
            return recordings.recording(tenant) {
                for await _ in gate {}  // would end at once in a task that inherited the cancellation
                if Task.isCancelled { Issue.record("the recording was cancelled with its starter") }
                end.finish()
            }.started
        }
        starter.cancel()
        #expect(await starter.value)
        let joined = recordings.recording(tenant) { Issue.record("a second recording started while the first ran") }
        #expect(!joined.started)
        open.finish()
        await joined.task.value
        for await _ in ended {}  // the first recording's body ran to its end
        #expect(recordings.started == 1)
        // Once it has ended, the next loss starts a recording of its own.
        #expect(recordings.recording(tenant) {}.started)
    }

    @Test("Each refusal of the application by the customer's directory names what the customer must undo")
    func refusalReasons() {
        func reason(_ code: Int, _ error: String) -> AccessLossReason? {
            BrokerService.accessLossReason(for: AADSTSError(httpStatus: 400, error: error, code: code, serviceDescription: ""))
        }
        #expect(reason(700016, "unauthorized_client") == .applicationRemoved)
        #expect(reason(7000112, "unauthorized_client") == .applicationDisabled)
        #expect(reason(53003, "invalid_grant") == .conditionalAccess)
        // Not the customer's refusal: no loss of access.
        #expect(reason(70021, "invalid_request") == nil)
        #expect(reason(7000215, "invalid_client") == nil)
    }

    @Test("A store whose writes wait does not hold a loss of access past the caller's deadline; the loss is recorded once the store takes writes", .timeLimit(.minutes(2)))
    func lossOfAccessWithinTheDeadline() async throws {
        // The journal keeps the refusal's audit record out of the store, so only the transition
        // to access_lost waits for the store's write lock here. The reserve is raised from its
        // 0.5 s: the answer's way back (its audit record's fdatasync, the TLS write, the client's
        // wake-up) once took longer than that in a full parallel run of the debug suite, and the
        // client gave up first. What the test proves does not depend on the margin's size.
        try await withWorld(journal: true, answerReserveSeconds: 1.5) { w in
            let client = try w.client("svc-a")
            let (_, blob, _) = try await client.generateDataKey(tenant: w.tenant.rawValue, deadline: deadline())
            let assignment = try w.roleAssignment()
            try w.emulator.state.removeRoleAssignment(vault: w.customer.vaultName, id: assignment.id)

            let (held, holding) = AsyncStream<Void>.makeStream()
            let (released, release) = AsyncStream<Void>.makeStream()
            defer { release.finish() }  // a failure below must not leave the store locked for the teardown
            let holder = Task {
                defer { holding.finish() }  // a holder that fails before holding must not leave the wait below hanging
                try await w.app.store.holdingWriteTransactionForTesting {
                    holding.yield()
                    for await _ in released {}
                }
            }
            for await _ in held { break }
            let before = w.app.service.lossRecordings.started
            let seconds = 6.0
            let started = Date()
            let status = await e2e.refusal { _ = try await client.generateDataKey(tenant: w.tenant.rawValue, deadline: Date().addingTimeInterval(seconds)) }
            // Before: the refusal waited for the transition, which waited for the lock, and
            // the caller's own deadline passed first (no status at all).
            #expect(status?.code == .permissionDenied, "\(String(describing: status))")
            #expect(status?.reason == .accessRevokedByCustomer)
            // The client gives up at its deadline by itself, so the status above is the proof;
            // the elapsed time only has to be sane (it includes this task's own resumption).
            #expect(Date().timeIntervalSince(started) < seconds + 1)
            #expect(try await w.state() == .active, "not recorded: the store's writes were waiting")
            // The same through Unwrap, whose vault call is shared by every caller of the blob and
            // runs to its own 30 s deadline: the refusal's store write is bounded by the caller's.
            let unwrapStarted = Date()
            let unwrapStatus = await e2e.refusal { _ = try await client.unwrap(blob, deadline: Date().addingTimeInterval(seconds)) }
            #expect(unwrapStatus?.code == .permissionDenied, "\(String(describing: unwrapStatus))")
            #expect(unwrapStatus?.reason == .accessRevokedByCustomer)
            #expect(Date().timeIntervalSince(unwrapStarted) < seconds + 1)
            release.finish()
            try await holder.value

            // The store takes writes again: the recording both calls waited for, which outlives
            // them (10 s at least), records the loss; later calls are refused as access_lost.
            try await w.waitFor(.accessLost, within: 30)
            let again = await e2e.refusal { _ = try await client.generateDataKey(tenant: w.tenant.rawValue, deadline: deadline()) }
            #expect(again?.code == .permissionDenied, "\(String(describing: again))")
            #expect(w.app.service.lossRecordings.started - before == 1, "the Unwrap joined the GenerateDataKey's recording")
            await client.close()
        }
    }

    @Test("An SRE's slot move does not reopen the role-propagation window: a role removed after it is a loss of access at once")
    func slotMoveKeepsTheRevocationImmediate() async throws {
        try await withWorld(rolePropagationSeconds: 600) { w in
            let client = try w.client("svc-a")
            // Activated longer ago than the window: as if it had been serving for a day (1 µs
            // after 1970; 0 would read as a row of the release before schema 5). Before any call,
            // so the broker reads the tenant as the store now has it, not from its cache.
            try await w.app.store.executeForTesting(
                "UPDATE tenants SET key_access_changed_at_us = 1 WHERE id = '\(w.tenant.rawValue)'")
            // Then an SRE moves it to another slot and back (a drain or a rotation moves every
            // tenant; back, so its calls keep the slot whose token exchange this world set up).
            var tenant = try await w.app.store.tenant(w.tenant)
            let home = try #require(tenant.slotID)
            let slots = try await w.app.store.slots().filter { $0.state == .active && $0.id != home }
            let target = try #require(slots.first, "the world has a second active slot")
            tenant = try await w.app.store.assignTenant(tenant.id, expectedVersion: tenant.version, to: target.id, actor: "sre")
            tenant = try await w.app.store.assignTenant(tenant.id, expectedVersion: tenant.version, to: home, actor: "sre")
            #expect(tenant.keyAccessChangedAt == Date(timeIntervalSince1970: 0.000001))
            #expect(Date().timeIntervalSince(tenant.updatedAt) < 60, "the record itself was just updated")
            // The first call reads the moved record (and proves the tenant is served).
            _ = try await client.generateDataKey(tenant: w.tenant.rawValue, deadline: deadline())

            let assignment = try w.roleAssignment()
            try w.emulator.state.removeRoleAssignment(vault: w.customer.vaultName, id: assignment.id)
            let status = await e2e.refusal { _ = try await client.generateDataKey(tenant: w.tenant.rawValue, deadline: deadline()) }
            // Measured from the record's last update (the move), this was a retryable
            // UNAVAILABLE for ten minutes, with the tenant's cached keys still served.
            #expect(status?.code == .permissionDenied, "\(String(describing: status))")
            #expect(status?.reason == .accessRevokedByCustomer)
            try await w.waitFor(.accessLost, within: 30)
        }
    }

    @Test("Within the role-propagation window of an activation, a ForbiddenByRbac is answered retryable and the tenant stays active")
    func refusalJustAfterActivationIsRetryable() async throws {
        try await withWorld(rolePropagationSeconds: 600) { w in
            let client = try w.client("svc-a")
            let assignment = try w.roleAssignment()
            try w.emulator.state.removeRoleAssignment(vault: w.customer.vaultName, id: assignment.id)
            do {
                _ = try await client.generateDataKey(tenant: w.tenant.rawValue, deadline: Date().addingTimeInterval(5))
                Issue.record("a key was made without the role")
            } catch let BrokerCallError.status(status) {
                #expect(status.code == .unavailable, "\(status)")
                #expect(status.reason == .accessRevokedByCustomer)
                #expect(status.retryable)
            } catch BrokerCallError.deadlineExceeded {
                // Retried (it is retryable) until the deadline: also not a revocation.
            }
            #expect(try await w.state() == .active, "activated moments ago: the role may still be on its way")
        }
    }

    @Test("A suspended tenant is never probed: an operator's suspension outlasts the customer's repair")
    func suspendedIsNotProbed() async throws {
        // The broker's own service waits an hour before its first probe, so only the pass below runs.
        try await withWorld(schedule: try AccessReprobeSchedule(minimumSeconds: 3_600, maximumSeconds: 3_600)) { w in
            let client = try w.client("svc-a")
            _ = try await client.generateDataKey(tenant: w.tenant.rawValue, deadline: deadline())
            let assignment = try w.roleAssignment()
            try w.emulator.state.removeRoleAssignment(vault: w.customer.vaultName, id: assignment.id)
            _ = try? await client.generateDataKey(tenant: w.tenant.rawValue, deadline: deadline())
            try await w.waitFor(.accessLost, within: 30)
            var tenant = try await w.app.store.tenant(w.tenant)

            // An operator suspends it while access is lost, and the customer then repairs access.
            tenant = try await w.app.store.transitionTenant(
                tenant.id, expectedVersion: tenant.version, event: .suspend, reason: "incident 12", actor: "staff:a")
            _ = try w.emulator.state.assignRole(
                vault: w.customer.vaultName, principalID: w.customer.servicePrincipalObjectID, keyName: assignment.keyScope)

            // A recovery pass, due or not, finds nothing to probe and sends nothing to the vault.
            var eager = w.recovery
            eager.schedule = try AccessReprobeSchedule(minimumSeconds: 0.001, maximumSeconds: 0.001)
            let recovery = AccessRecovery(service: w.app.service, configuration: eager, logger: TestLogging.logger(label: "pass"))
            let wrapsBefore = w.counter("keyvault.wrapkey")
            #expect(try await recovery.runPass() == nil)
            #expect(w.counter("keyvault.wrapkey") == wrapsBefore)
            #expect(try await w.state() == .suspended)
            await client.close()
        }
    }
}
