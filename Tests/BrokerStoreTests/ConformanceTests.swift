import FedBrokerCore
import Foundation
import Testing

@testable import BrokerStore

/// The `BrokerStore` contract, run against PostgreSQL and SQLite alike.
@Suite struct ConformanceTests {
    @Test("Register, read back by id and by Entra tenant; the change is audited and in the feed",
          arguments: StoreKind.allCases)
    func registerAndRead(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            try await makeActiveSlots(store, 1...1)
            let registration = makeRegistration(1)
            let tenant = try await store.registerTenant(registration, actor: "onboarding@isv")
            #expect(tenant.version == .initial)
            #expect(tenant.state == .registered)
            #expect(tenant.slotID == slotID(1))
            #expect(tenant.createdAt == database.clock.now)

            let read = try await store.tenant(registration.id)
            #expect(read == tenant)
            #expect(try await store.tenant(entraTenantID: registration.entraTenantID) == tenant)
            #expect(try await store.tenants() == [tenant])
            await expectBrokerError(.notFound) { _ = try await store.tenant(TenantID(rawValue: "nobody")!) }

            let audit = try await store.auditRecords(
                tenant: tenant.id, from: .distantPast, to: .distantFuture, limit: 10)
            #expect(audit.map(\.operation) == ["tenant.registered"])
            #expect(audit.first?.actor == "onboarding@isv")
            let changes = try await store.changes(after: 0, limit: 100)
            #expect(changes.last?.kind == .tenant)
            #expect(changes.last?.entityID == "customer-1")
        }
    }

    @Test("A second registration of the same customer tenant, or of the same id, is a unique conflict",
          arguments: StoreKind.allCases)
    func uniqueConflicts(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let first = makeRegistration(1)
            _ = try await store.registerTenant(first, actor: "a")
            await expectBrokerError(.uniqueConflict) {
                _ = try await store.registerTenant(makeRegistration(2, entra: first.entraTenantID), actor: "a")
            }
            var sameID = makeRegistration(3)
            sameID.id = first.id
            await expectBrokerError(.uniqueConflict) { _ = try await store.registerTenant(sameID, actor: "a") }
            #expect(try await store.tenants().count == 1)
        }
    }

    @Test("Lifecycle through the store: versions advance, stale versions and illegal events change nothing",
          arguments: StoreKind.allCases)
    func lifecycleAndVersions(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            try await makeActiveSlots(store, 1...1)
            let registered = try await store.registerTenant(makeRegistration(1), actor: "a")
            database.clock.advance(by: 60)
            let validated = try await store.transitionTenant(
                registered.id, expectedVersion: registered.version, event: .validationSucceeded, actor: "a")
            #expect(validated.version == registered.version.next)
            #expect(validated.updatedAt == database.clock.now)

            await expectBrokerError(.versionConflict) {
                _ = try await store.transitionTenant(registered.id, expectedVersion: registered.version, event: .activate, actor: "a")
            }
            await expectBrokerError(.illegalTenantTransition) {
                _ = try await store.transitionTenant(validated.id, expectedVersion: validated.version, event: .accessRestored, actor: "a")
            }
            #expect(try await store.tenant(validated.id) == validated, "failed updates leave the record as it was")

            let active = try await store.transitionTenant(validated.id, expectedVersion: validated.version, event: .activate, actor: "a")
            #expect(active.state == .active)
            let lost = try await store.transitionTenant(
                active.id, expectedVersion: active.version, event: .accessLost(.keyDisabled), actor: "fedbroker")
            #expect(lost.state == .accessLost)
            #expect(lost.lifecycle.wasActivated)

            let audit = try await store.auditRecords(tenant: active.id, from: .distantPast, to: .distantFuture, limit: 50)
            #expect(audit.map(\.operation) == [
                "tenant.registered", "tenant.validated", "tenant.activated", "tenant.access_lost.key_disabled",
            ], "one audit record per committed change, none for refused ones")
        }
    }

    @Test("An activated tenant's key cannot be swapped; its version can", arguments: StoreKind.allCases)
    func keyLock(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await makeActiveSlots(store, 1...1)
            var tenant = try await store.registerTenant(makeRegistration(1), actor: "a")
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .validationSucceeded, actor: "a")
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .activate, actor: "a")
            let other = try KeyReference(vaultURL: "https://attacker.vault.azure.net", keyName: "cmk")
            let current = tenant
            await expectBrokerError(.keyLocked) {
                _ = try await store.changeTenantKey(current.id, expectedVersion: current.version, to: other, actor: "a")
            }
            let rotated = try KeyReference(vaultURL: tenant.key.vaultURL, keyName: tenant.key.keyName, keyVersion: "v2")
            tenant = try await store.changeTenantKey(tenant.id, expectedVersion: tenant.version, to: rotated, actor: "a")
            #expect(try await store.tenant(tenant.id).key == rotated)
        }
    }

    @Test("Slots: 20 non-retired per application; retiring frees a place; other applications are separate",
          arguments: StoreKind.allCases)
    func slotLimit(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            for n in 1...20 { _ = try await store.createSlot(slotID(n), identity: makeIdentity(n), actor: "sre") }
            await expectBrokerError(.slotLimitReached) {
                _ = try await store.createSlot(slotID(21), identity: makeIdentity(21), actor: "sre")
            }
            _ = try await store.createSlot(slotID(40), identity: makeIdentity(40, application: "other-app"), actor: "sre")
            await expectBrokerError(.uniqueConflict) {
                _ = try await store.createSlot(slotID(1), identity: makeIdentity(1, application: "other-app"), actor: "sre")
            }
            let provisioning = try await store.slot(slotID(1))
            _ = try await store.transitionSlot(provisioning.id, expectedVersion: provisioning.version, event: .abandon, actor: "sre")
            _ = try await store.createSlot(slotID(21), identity: makeIdentity(21), actor: "sre")
            #expect(try await store.slots().filter { $0.identity.applicationID == applicationID && $0.state != .retired }.count == 20)
        }
    }

    @Test("Slot lifecycle through the store; a slot with tenants cannot retire", arguments: StoreKind.allCases)
    func slotLifecycle(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            var slot = try await store.createSlot(slotID(1), identity: makeIdentity(1), actor: "sre")
            #expect(slot.state == .provisioning)
            #expect(try await store.registerTenant(makeRegistration(1), actor: "a").slotID == nil, "nothing active to place on")
            slot = try await store.transitionSlot(slot.id, expectedVersion: slot.version, event: .activate, actor: "sre")
            let stale = slot.version
            slot = try await store.transitionSlot(slot.id, expectedVersion: slot.version, event: .drain, actor: "sre")
            await expectBrokerError(.versionConflict) {
                _ = try await store.transitionSlot(slotID(1), expectedVersion: stale, event: .undrain, actor: "sre")
            }
            slot = try await store.transitionSlot(slot.id, expectedVersion: slot.version, event: .undrain, actor: "sre")
            let tenant = try await store.registerTenant(makeRegistration(2), actor: "a")
            #expect(tenant.slotID == slot.id)
            slot = try await store.transitionSlot(slot.id, expectedVersion: slot.version, event: .drain, actor: "sre")
            let draining = slot
            await expectBrokerError(.slotNotEmpty) {
                _ = try await store.transitionSlot(draining.id, expectedVersion: draining.version, event: .retire, actor: "sre")
            }
            await expectBrokerError(.illegalSlotTransition) {
                _ = try await store.transitionSlot(draining.id, expectedVersion: draining.version, event: .activate, actor: "sre")
            }
        }
    }

    @Test("Placement spreads tenants evenly over active slots only; drain plan empties a slot, which can then retire",
          arguments: StoreKind.allCases)
    func placementAndDrain(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await makeActiveSlots(store, 1...3)
            _ = try await store.createSlot(slotID(4), identity: makeIdentity(4), actor: "sre")  // provisioning
            for n in 1...10 { _ = try await store.registerTenant(makeRegistration(n), actor: "a") }
            var loads = try await store.slotLoads(applicationID: applicationID)
            #expect(loads.map(\.tenantCount) == [4, 3, 3, 0])

            var draining = try await store.slot(slotID(1))
            draining = try await store.transitionSlot(draining.id, expectedVersion: draining.version, event: .drain, actor: "sre")
            _ = try await store.registerTenant(makeRegistration(11), actor: "a")
            loads = try await store.slotLoads(applicationID: applicationID)
            #expect(loads.first?.tenantCount == 4, "a draining slot takes no new tenants")

            let moves = try PartitionPlanner.drainPlan(
                draining: draining.id, tenants: try await store.tenants(onSlot: draining.id), slots: loads)
            #expect(moves.count == 4)
            for move in moves {
                let tenant = try await store.tenant(move.tenant)
                _ = try await store.assignTenant(tenant.id, expectedVersion: tenant.version, to: move.to, actor: "drain-job")
            }
            #expect(try await store.tenants(onSlot: draining.id).isEmpty)
            loads = try await store.slotLoads(applicationID: applicationID)
            #expect(loads.map(\.tenantCount) == [0, 6, 5, 0])
            let retired = try await store.transitionSlot(draining.id, expectedVersion: draining.version, event: .retire, actor: "sre")
            #expect(retired.state == .retired)

            let moved = try await store.auditRecords(tenant: moves[0].tenant, from: .distantPast, to: .distantFuture, limit: 10)
            #expect(moved.last?.operation == "tenant.slot_assigned")
            #expect(moved.last?.detail == "from=\(moves[0].from) to=\(moves[0].to)")
        }
    }

    @Test("Tenants go only to active slots that exist", arguments: StoreKind.allCases)
    func assignmentRules(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await makeActiveSlots(store, 1...1)
            _ = try await store.createSlot(slotID(2), identity: makeIdentity(2), actor: "sre")
            let tenant = try await store.registerTenant(makeRegistration(1), actor: "a")
            await expectBrokerError(.slotNotAssignable) {
                _ = try await store.assignTenant(tenant.id, expectedVersion: tenant.version, to: slotID(2), actor: "a")
            }
            await expectBrokerError(.notFound) {
                _ = try await store.assignTenant(tenant.id, expectedVersion: tenant.version, to: slotID(9), actor: "a")
            }
            #expect(try await store.tenant(tenant.id).slotID == slotID(1))
        }
    }

    @Test("Offboarding frees the tenant's slot; an offboarded tenant cannot be reassigned", arguments: StoreKind.allCases)
    func offboarding(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await makeActiveSlots(store, 1...1)
            var tenant = try await store.registerTenant(makeRegistration(1), actor: "a")
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .offboard, actor: "a")
            #expect(tenant.slotID == nil)
            #expect(try await store.tenants(onSlot: slotID(1)).isEmpty)
            let offboarded = tenant
            await expectBrokerError(.illegalTenantTransition) {
                _ = try await store.assignTenant(offboarded.id, expectedVersion: offboarded.version, to: slotID(1), actor: "a")
            }
        }
    }

    @Test("Callers and grants round-trip; updates are versioned; identities are unique", arguments: StoreKind.allCases)
    func callers(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let tenantA = TenantID(rawValue: "a")!
            let caller = Caller(id: "billing", identity: "spiffe://isv/billing", grants: [
                CallerGrant(operations: [.wrap, .unwrap], tenants: .only([tenantA])),
                CallerGrant(operations: [.keyStatus], tenants: .all),
            ])
            let saved = try await store.createCaller(caller, actor: "admin")
            #expect(saved.version == .initial)
            #expect(try await store.caller("billing") == saved)
            #expect(try await store.caller(identity: "spiffe://isv/billing") == saved)
            #expect(try await store.caller(identity: "spiffe://isv/nobody") == nil)

            var update = saved
            update.grants.append(CallerGrant(operations: [.rewrap], tenants: .all))
            let updated = try await store.updateCaller(update, actor: "admin")
            #expect(updated.version == saved.version.next)
            #expect(try await store.caller("billing").isAllowed(.rewrap, for: tenantA))
            await expectBrokerError(.versionConflict) { _ = try await store.updateCaller(update, actor: "admin") }
            await expectBrokerError(.uniqueConflict) {
                _ = try await store.createCaller(Caller(id: "other", identity: "spiffe://isv/billing", grants: []), actor: "admin")
            }
            // Creating a caller that exists never overwrites its grants, even at the version it has.
            await expectBrokerError(.uniqueConflict) {
                _ = try await store.createCaller(Caller(id: "billing", identity: "spiffe://isv/billing", grants: []), actor: "admin")
            }
            #expect(try await store.caller("billing") == updated)
            await expectBrokerError(.notFound) {
                _ = try await store.updateCaller(Caller(id: "nobody", identity: "spiffe://isv/nobody", grants: []), actor: "admin")
            }
            // A stale version loses on the affected-row check, whatever the grants say.
            var stale = saved
            stale.grants = []
            await expectBrokerError(.versionConflict) { _ = try await store.updateCaller(stale, actor: "admin") }
            #expect(try await store.caller("billing").isAllowed(.rewrap, for: tenantA))
            await expectBrokerError(.notFound) { _ = try await store.caller("nobody") }
        }
    }

    @Test("Audit: every field round-trips; queries select by tenant and [from, to); re-sent batches don't duplicate",
          arguments: StoreKind.allCases)
    func auditQueries(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            let a = TenantID(rawValue: "tenant-a")!, b = TenantID(rawValue: "tenant-b")!
            let start = database.clock.now
            let records = (0..<30).map { (n: Int) -> AuditRecord in
                let tenant: TenantID = n % 2 == 0 ? a : b
                let outcome: AuditRecord.Outcome = n % 5 == 0 ? .failure(code: "vault_forbidden") : .success
                let detail: String? = n == 0 ? nil : "d\(n)"
                return AuditRecord(
                    time: start.addingTimeInterval(Double(n)), actor: "svc-\(n % 3)", tenantID: tenant,
                    operation: n % 3 == 0 ? "unwrap" : "wrap", keyVersion: "kv\(n)", outcome: outcome,
                    latencyMicroseconds: Int64(1000 + n), requestID: "req-\(n)", clientRequestID: UUID().uuidString,
                    detail: detail)
            }
            try await store.appendAudit(records)
            try await store.appendAudit(Array(records[0..<10]))  // a retried batch

            let all = try await store.auditRecords(tenant: a, from: .distantPast, to: .distantFuture, limit: 100)
            #expect(all == records.filter { $0.tenantID == a }, "exactly once, in time order, every field intact")
            let window = try await store.auditRecords(
                tenant: a, from: start.addingTimeInterval(4), to: start.addingTimeInterval(10), limit: 100)
            #expect(window.map(\.requestID) == ["req-4", "req-6", "req-8"], "from is inclusive, to exclusive")
            let limited = try await store.auditRecords(tenant: b, from: .distantPast, to: .distantFuture, limit: 2)
            #expect(limited.map(\.requestID) == ["req-1", "req-3"])
        }
    }

    @Test("Audit: a batch larger than one SQLite statement (450 records of one instant, NULLs mixed in) keeps its order and its NULLs",
          arguments: StoreKind.allCases)
    func auditBatchOrder(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            let tenant = TenantID(rawValue: "tenant-a")!
            let instant = database.clock.now
            // PostgreSQL takes the batch as arrays (unnest) and SQLite as 200-row statements: both
            // must store the records in batch order (seq) and keep NULL apart from the empty text.
            let records = (0..<450).map { (n: Int) -> AuditRecord in
                AuditRecord(
                    time: instant, actor: "svc", tenantID: tenant, operation: "unwrap",
                    keyVersion: n % 3 == 0 ? nil : "kv\(n)", outcome: n % 7 == 0 ? .failure(code: "vault_forbidden") : .success,
                    latencyMicroseconds: Int64(n), requestID: "r-\(n)",
                    clientRequestID: n % 4 == 0 ? nil : (n % 4 == 1 ? "" : "c\(n)"), detail: n % 5 == 0 ? nil : "d\(n)")
            }
            try await store.appendAudit(records)
            let stored = try await store.auditRecords(tenant: tenant, from: .distantPast, to: .distantFuture, limit: 1_000)
            #expect(stored.map(\.requestID) == records.map(\.requestID), "in the order the batch had")
            #expect(stored == records, "every field, NULL and empty text alike, as written")
        }
    }

    @Test("Change feed: one event per committed change, in order, none for refused changes", arguments: StoreKind.allCases)
    func changeFeedOrder(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            #expect(try await store.latestChangeSequence() == 0)
            let slots = try await makeActiveSlots(store, 1...1)
            let tenant = try await store.registerTenant(makeRegistration(1), actor: "a")
            await expectBrokerError(.illegalTenantTransition) {
                _ = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .activate, actor: "a")
            }
            let changes = try await store.changes(after: 0, limit: 100)
            #expect(changes.map(\.kind) == [.slot, .slot, .tenant])
            #expect(changes.map(\.version) == [.initial, slots[0].version, .initial])
            #expect(changes.map(\.sequence) == changes.map(\.sequence).sorted())
            #expect(try await store.latestChangeSequence() == changes.last?.sequence)
            #expect(try await store.changes(after: changes[1].sequence, limit: 100) == [changes[2]])
        }
    }

    @Test("Change feed stream: a follower in another store instance hears of a commit (NOTIFY on PostgreSQL, polling on SQLite)",
          arguments: StoreKind.allCases)
    func changeFeedStream(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            try await withReplicas(1, of: database) { replicas in
            let follower = replicas[0]
            // On PostgreSQL the poll interval is an hour: the event can only arrive through LISTEN/NOTIFY.
            let (caughtUp, caughtUpSignal) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
            let feed = follower.changeFeed(
                after: try await follower.latestChangeSequence(),
                pollInterval: kind == .postgres ? .seconds(3600) : .milliseconds(20),
                caughtUpWhileListening: { caughtUpSignal.yield() })
            if kind == .postgres {
                // Commit only once the follower listens and has caught up after LISTEN, so exactly
                // one change, committed afterwards, can reach it only through pg_notify.
                _ = try await withDeadline(seconds: 20, "the follower listening") { () async -> Bool in
                    for await _ in caughtUp { return true }
                    return false
                }
            }
            _ = try await store.createSlot(
                FICSlotID(rawValue: "feed-1")!, identity: makeIdentity(1, application: "app-1"), actor: "sre")
            // The feed reads in a task of its own from the start; events wait in the stream.
            let first_ = try await withDeadline(seconds: 20, "a change-feed event") { () async throws -> ChangeEvent? in
                for try await event in feed { return event }
                return nil
            }
            #expect(first_?.kind == .slot)
            #expect(first_?.entityID == "feed-1")
            }
        }
    }

    @Test("Change feed on PostgreSQL: a follower whose LISTEN connection is killed listens again, and hears the next commit through NOTIFY")
    func changeFeedListensAgain() async throws {
        try await withStore(.postgres) { store, database in
            try await withReplicas(1, of: database) { replicas in
                let follower = replicas[0]
                let (caughtUp, caughtUpSignal) = AsyncStream<Void>.makeStream()
                // The poll interval is an hour: after the kill, only a new LISTEN can bring the event.
                let feed = follower.changeFeed(
                    after: try await follower.latestChangeSequence(), pollInterval: .seconds(3600), listenRetryDelay: .milliseconds(20),
                    caughtUpWhileListening: { caughtUpSignal.yield() })
                let killed = try await withDeadline(seconds: 30, "the follower listening, then listening again") { () async throws -> Int in
                    var killed = 0
                    var starts = 0
                    for await _ in caughtUp {
                        starts += 1
                        if starts == 2 { break }
                        killed = try await store.rowCountForTesting(
                            "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'")
                    }
                    return killed
                }
                #expect(killed == 1, "exactly the follower's LISTEN connection was terminated")
                _ = try await store.createSlot(
                    FICSlotID(rawValue: "feed-after-relisten")!, identity: makeIdentity(1, application: "app-1"), actor: "sre")
                let event = try await withDeadline(seconds: 20, "a change-feed event after LISTEN came back") { () async throws -> ChangeEvent? in
                    for try await event in feed { return event }
                    return nil
                }
                #expect(event?.entityID == "feed-after-relisten")
            }
        }
    }

    @Test("Errors: an unreachable PostgreSQL and an unopenable SQLite path are databaseUnavailable")
    func databaseDown() async throws {
        let port = try closedLoopbackPort()
        await expectBrokerError(.databaseUnavailable) {
            _ = try await SQLBrokerStore.open(
                StoreConfiguration(databaseURL: "postgres://postgres@127.0.0.1:\(port)/postgres?sslmode=disable"),
                logger: TestDatabase.logger)
        }
        await expectBrokerError(.databaseUnavailable) {
            _ = try await SQLBrokerStore.open(StoreConfiguration(databaseURL: "sqlite:/proc/fedbroker/broker.db"), logger: TestDatabase.logger)
        }
    }

    @Test("Database URLs parse; passwords never show")
    func databaseURLs() throws {
        guard case .postgres(let settings) = try StoreConfiguration(databaseURL: "postgres://fb:s3cret@db:6543/broker?sslmode=require")
        else { Issue.record("not postgres"); return }
        #expect(settings.host == "db")
        #expect(settings.port == 6543)
        #expect(settings.username == "fb")
        #expect(settings.password == "s3cret")
        #expect(settings.database == "broker")
        #expect(settings.sslMode == .require)
        #expect(!"\(StoreConfiguration.postgres(settings))".contains("s3cret"))
        guard case .sqlite(let path) = try StoreConfiguration(databaseURL: "sqlite:///var/lib/fb/broker.db") else {
            Issue.record("not sqlite"); return
        }
        #expect(path == "/var/lib/fb/broker.db")
        guard case .sqlite(let bare) = try StoreConfiguration(databaseURL: "data/broker.db") else { Issue.record("not sqlite"); return }
        #expect(bare == "data/broker.db")
        #expect(throws: BrokerError(.invalidArgument, "")) { try StoreConfiguration(databaseURL: "mysql://x/y") }
        #expect(throws: BrokerError(.invalidArgument, "")) { try StoreConfiguration(databaseURL: "postgres://db/x?sslmode=bogus") }
    }
}

extension ConformanceTests {
    @Test("Reads do not queue behind an open write transaction (the authorization read path)",
          arguments: StoreKind.allCases)
    func readsDoNotWaitForWriters(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await makeActiveSlots(store, 1...1)
            let registered = try await store.registerTenant(makeRegistration(1), actor: "a")
            let (held, holding) = AsyncStream<Void>.makeStream()
            let (release, releasing) = AsyncStream<Void>.makeStream()
            let writer = Task {
                try await store.backend.withTransaction { session in
                    _ = try await session.query("UPDATE tenants SET display_name = ? WHERE id = ?",
                                                [.text("renamed"), .text(registered.id.rawValue)])
                    holding.yield()
                    for await _ in release { break }
                }
            }
            for await _ in held { break }
            // The writer holds SQLite's write lock (and the row lock on PostgreSQL) until released.
            let read = try await withDeadline(seconds: 5, "a read during an open write transaction") {
                try await store.tenant(registered.id)
            }
            #expect(read.displayName == registered.displayName, "reads the last commit")
            let caller = try await withDeadline(seconds: 5, "a caller lookup during an open write transaction") {
                try await store.caller(identity: "spiffe://nobody")
            }
            #expect(caller == nil)
            releasing.yield()
            try await writer.value
            #expect(try await store.tenant(registered.id).displayName == "renamed")
        }
    }
}

/// A loopback TCP port that was free a moment ago: bound, then closed, so nothing listens on it.
func closedLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EMFILE) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw POSIXError(.EADDRINUSE) }
    return Int(UInt16(bigEndian: address.sin_port))
}
