import FedBrokerCore
import Foundation
import Testing

@testable import BrokerStore

/// Concurrent writers through separate store instances (separate pools on PostgreSQL, separate
/// connections on SQLite), so the database, not an in-process lock, has to keep the invariants.
@Suite struct RaceTests {
    static let writers = 4

    @Test("Racing registrations of the same customer tenant: exactly one wins, the rest are unique conflicts",
          arguments: StoreKind.allCases)
    func registrationRace(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            try await makeActiveSlots(store, 1...2)
            let entra = EntraTenantID(UUID())
            let attempts = 24
            let outcomes = try await withReplicas(Self.writers, of: database) { stores in
              await withTaskGroup(of: BrokerError.Code?.self) { group in
                for n in 0..<attempts {
                    let writer = stores[n % stores.count]
                    group.addTask {
                        do {
                            _ = try await writer.registerTenant(makeRegistration(n, entra: entra), actor: "race-\(n)")
                            return nil
                        } catch let error as BrokerError { return error.code } catch { return .storeFailure }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
              }
            }
            #expect(outcomes.filter { $0 == nil }.count == 1, "\(outcomes)")
            #expect(outcomes.filter { $0 == .uniqueConflict }.count == attempts - 1, "\(outcomes)")
            #expect(try await store.tenants().count == 1)
            let winner = try #require(try await store.tenant(entraTenantID: entra))
            let audit = try await store.auditRecords(tenant: winner.id, from: .distantPast, to: .distantFuture, limit: 10)
            #expect(audit.count == 1, "only the winner's registration is audited")
        }
    }

    @Test("Racing slot creations: never more than 20 non-retired slots", arguments: StoreKind.allCases)
    func slotCreationRace(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            let attempts = 45
            let outcomes = try await withReplicas(Self.writers, of: database) { stores in
              await withTaskGroup(of: BrokerError.Code?.self) { group in
                for n in 0..<attempts {
                    let writer = stores[n % stores.count]
                    group.addTask {
                        do {
                            _ = try await writer.createSlot(FICSlotID(rawValue: "race-\(n)")!, identity: makeIdentity(n), actor: "sre")
                            return nil
                        } catch let error as BrokerError { return error.code } catch { return .storeFailure }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
              }
            }
            #expect(outcomes.filter { $0 == nil }.count == FICSlot.maximumNonRetiredPerApplication, "\(outcomes)")
            #expect(outcomes.filter { $0 == .slotLimitReached }.count == attempts - 20, "\(outcomes)")
            #expect(try await store.slots().filter { $0.state.countsTowardsLimit }.count == 20)
        }
    }

    @Test("Racing moves of the same tenants: each move either commits or loses on its version; no tenant is ever on two slots or none",
          arguments: StoreKind.allCases)
    func moveRace(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            try await makeActiveSlots(store, 1...4)
            let tenantCount = 6
            for n in 1...tenantCount { _ = try await store.registerTenant(makeRegistration(n), actor: "a") }
            let rounds = 3
            let committed = try await withReplicas(Self.writers, of: database) { stores in
            var committed = 0
            for _ in 0..<rounds {
                let snapshot = try await store.tenants()
                // Every writer tries to move every tenant, from the same read, to a different slot.
                let results = await withTaskGroup(of: Bool.self) { group in
                    for tenant in snapshot {
                        for (index, writer) in stores.enumerated() {
                            group.addTask {
                                do {
                                    _ = try await writer.assignTenant(
                                        tenant.id, expectedVersion: tenant.version, to: slotID(index % 4 + 1), actor: "mover-\(index)")
                                    return true
                                } catch let error as BrokerError {
                                    #expect(error.code == .versionConflict, "\(String(reflecting: error))")
                                    return false
                                } catch {
                                    Issue.record("\(String(reflecting: error))")
                                    return false
                                }
                            }
                        }
                    }
                    return await group.reduce(into: [Bool]()) { $0.append($1) }
                }
                #expect(results.filter { $0 }.count == tenantCount, "exactly one move per tenant per round wins")
                committed += results.filter { $0 }.count
            }
            return committed
            }

            let tenants = try await store.tenants()
            #expect(tenants.allSatisfy { $0.slotID != nil })
            #expect(tenants.allSatisfy { $0.version == RecordVersion(rawValue: 1 + Int64(rounds)) })
            var onSlots: [TenantID] = []
            for n in 1...4 { onSlots += try await store.tenants(onSlot: slotID(n)) }
            #expect(onSlots.count == tenantCount, "every tenant on exactly one slot")
            #expect(Set(onSlots).count == tenantCount)
            let loads = try await store.slotLoads(applicationID: applicationID)
            #expect(loads.map(\.tenantCount).reduce(0, +) == tenantCount)
            var moves = 0
            for tenant in tenants {
                moves += try await store.auditRecords(tenant: tenant.id, from: .distantPast, to: .distantFuture, limit: 100)
                    .filter { $0.operation == "tenant.slot_assigned" }.count
            }
            #expect(moves == committed, "one audit record per committed move")
        }
    }
}

extension RaceTests {
    @Test("Registrations racing a drain: every registration succeeds, none committed after the drain lands on the draining slot",
          arguments: StoreKind.allCases)
    func registrationsRacingDrain(kind: StoreKind) async throws {
        for round in 0..<3 {
            try await withStore(kind) { store, database in
                let slots = try await makeActiveSlots(store, 1...2)
                let draining = slots[0]
                let attempts = 24
                let outcomes = try await withReplicas(Self.writers, of: database) { stores in
                    await withTaskGroup(of: BrokerError.Code?.self) { group in
                        for n in 0..<attempts {
                            let writer = stores[n % stores.count]
                            group.addTask {
                                do {
                                    _ = try await writer.registerTenant(makeRegistration(round * 100 + n), actor: "race-\(n)")
                                    return nil
                                } catch let error as BrokerError { return error.code } catch { return .storeFailure }
                            }
                            if n == attempts / 3 {
                                group.addTask {
                                    do {
                                        _ = try await store.transitionSlot(
                                            draining.id, expectedVersion: draining.version, event: .drain, actor: "sre")
                                        return nil
                                    } catch let error as BrokerError { return error.code } catch { return .storeFailure }
                                }
                            }
                        }
                        return await group.reduce(into: []) { $0.append($1) }
                    }
                }
                #expect(outcomes.allSatisfy { $0 == nil }, "\(outcomes)")
                #expect(try await store.slot(draining.id).state == .draining)
                // Without the shared lock a placement can pick the slot, then find it draining and
                // leave the tenant with no slot although slot 2 is active.
                #expect(try await store.tenants().allSatisfy { $0.slotID != nil }, "a tenant was left without a slot")
                let feed = try await store.changes(after: 0, limit: 1000)
                let drainSequence = try #require(
                    feed.first { $0.kind == .slot && $0.entityID == draining.id.rawValue && $0.version == draining.version.next }
                ).sequence
                let onDraining = Set(try await store.tenants(onSlot: draining.id).map(\.rawValue))
                let lateOnDraining = feed.filter {
                    $0.kind == .tenant && $0.sequence > drainSequence && onDraining.contains($0.entityID)
                }
                #expect(lateOnDraining.isEmpty, "registered after the drain, yet placed on the draining slot: \(lateOnDraining)")
            }
        }
    }

    @Test("Racing deletes and updates of one caller version: exactly one wins, and a delete answered is a delete done",
          arguments: StoreKind.allCases)
    func callerDeleteRace(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            try await withReplicas(Self.writers, of: database) { stores in
                for round in 0..<12 {
                    let id = "race-caller-\(round)"
                    let created = try await store.createCaller(
                        Caller(id: id, identity: "spiffe://isv/\(id)", grants: [CallerGrant(operations: [.unwrap], tenants: .all)]),
                        actor: "staff")
                    // Two deletes and two updates of the same version, each through its own pool.
                    let outcomes = await withTaskGroup(of: (delete: Bool, code: BrokerError.Code?).self) { group in
                        for n in 0..<4 {
                            let writer = stores[n % stores.count]
                            group.addTask {
                                do {
                                    if n % 2 == 0 {
                                        try await writer.deleteCaller(id, expectedVersion: created.version, actor: "staff-\(n)")
                                    } else {
                                        var changed = created
                                        changed.enabled = false
                                        _ = try await writer.updateCaller(changed, actor: "staff-\(n)")
                                    }
                                    return (n % 2 == 0, nil)
                                } catch let error as BrokerError { return (n % 2 == 0, error.code) } catch { return (n % 2 == 0, .storeFailure) }
                            }
                        }
                        return await group.reduce(into: []) { $0.append($1) }
                    }
                    let winners = outcomes.filter { $0.code == nil }
                    #expect(winners.count == 1, "round \(round): \(outcomes)")
                    #expect(outcomes.allSatisfy { $0.code == nil || $0.code == .versionConflict || $0.code == .notFound }, "\(outcomes)")
                    let deletions = try await store.auditEntries(AuditQuery(operation: "caller.deleted")).filter {
                        $0.record.detail?.hasPrefix("caller=\(id) ") == true
                    }
                    if winners.first?.delete == true {
                        await expectBrokerError(.notFound) { _ = try await store.caller(id) }
                        #expect(deletions.count == 1, "round \(round): one delete answered, \(deletions.count) audited")
                    } else {
                        #expect(try await store.caller(id).version == created.version.next, "round \(round)")
                        #expect(deletions.isEmpty, "round \(round): the update won, yet a delete was audited")
                    }
                }
            }
        }
    }

    @Test("Audit sequences commit in order: a reader paging by sequence never passes one that a transaction still open commits later",
          .timeLimit(.minutes(2)), arguments: [StoreKind.postgres])
    func auditSequencesCommitInOrder(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            try await withReplicas(1, of: database) { replicas in
                let early = AuditRecord(time: database.clock.now, actor: "staff:a", tenantID: nil, operation: "order.early", outcome: .success)
                let late = AuditRecord(time: database.clock.now, actor: "svc", tenantID: nil, operation: "order.late", outcome: .success)
                let (inserted, insertedSink) = AsyncStream.makeStream(of: Void.self)
                let (gate, gateSink) = AsyncStream.makeStream(of: Void.self)
                // An admin transaction draws its audit sequence, then is slow to commit.
                let slow = Task {
                    try await store.backend.withTransaction { session in
                        try await store.insertAudit(session, [early])
                        insertedSink.yield()
                        for await _ in gate { break }
                    }
                }
                var insertedIterator = inserted.makeAsyncIterator()
                await insertedIterator.next()
                // Another replica's shipper inserts meanwhile.
                let shipper = Task { try await replicas[0].appendAudit([late]) }
                // Either it finished (and drew a later sequence, committed first) or it waits on
                // the order lock (in this test's database: others run beside it on the server); a
                // reader pages in between.
                let key = AdvisoryLockKey.auditOrder.rawValue
                let waiting = """
                    SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1
                        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                        AND classid = \(UInt32(truncatingIfNeeded: key >> 32)) AND objid = \(UInt32(truncatingIfNeeded: key))
                    """
                var settled = false
                let until = ContinuousClock.now + .seconds(60)
                while !settled, ContinuousClock.now < until {
                    let blocked = try await store.rowCountForTesting(waiting) > 0
                    let finished = try await store.auditEntries(AuditQuery(operation: "order.late")).count == 1
                    settled = blocked || finished
                    if !settled { await Task.yield() }
                }
                try #require(settled, "the shipper neither finished nor waited on the order lock")
                let firstPage = try await store.auditEntries(AuditQuery(afterSequence: 0, limit: 1000))
                    .filter { $0.record.operation.hasPrefix("order.") }
                gateSink.yield()
                try await slow.value
                try await shipper.value
                let cursor = firstPage.last?.sequence ?? 0
                let rest = try await store.auditEntries(AuditQuery(afterSequence: cursor, limit: 1000))
                    .filter { $0.record.operation.hasPrefix("order.") }
                let seen = (firstPage + rest).map(\.record.operation)
                #expect(Set(seen) == ["order.early", "order.late"], "a reader resuming from \(cursor) saw only \(seen)")
            }
        }
    }
}
