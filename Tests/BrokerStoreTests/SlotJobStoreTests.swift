import FedBrokerCore
import Foundation
import Testing

@testable import BrokerStore

/// Slot jobs and replica heartbeats, against PostgreSQL and SQLite alike: one open job at a
/// time, one lease holder at a time, a dead holder's lease taken over, progress saved only by
/// the holder.
@Suite struct SlotJobStoreTests {
    func drainJob(_ store: SQLBrokerStore, _ database: TestDatabase, slot: Int = 1) throws -> SlotJob {
        try SlotJob.new(.drain, source: slotID(slot), target: nil, identity: nil, createdBy: "staff:sre", at: database.clock.now)
    }

    @Test("A job is recorded with its audit; a second open job is refused with jobInProgress", arguments: StoreKind.allCases)
    func oneOpenJob(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            let job = try await store.createSlotJob(try drainJob(store, database))
            #expect(try await store.slotJob(job.id) == job)
            #expect(try await store.slotJobs(limit: 10).map(\.id) == [job.id])
            await expectBrokerError(.jobInProgress) {
                _ = try await store.createSlotJob(try self.drainJob(store, database, slot: 2))
            }
            let audit = try await store.auditEntries(AuditQuery(operation: "slot.job.created"))
            #expect(audit.count == 1)
            #expect(audit.first?.record.detail?.contains(job.id.rawValue) == true)
        }
    }

    @Test("One lease holder at a time; an expired lease is taken over and the takeover audited", arguments: StoreKind.allCases)
    func leases(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            #expect(try await store.claimSlotJob(owner: "a", leaseSeconds: 10) == nil, "no open job: nothing to claim")
            let job = try await store.createSlotJob(try drainJob(store, database))
            let claimed = try #require(try await store.claimSlotJob(owner: "a", leaseSeconds: 10))
            #expect(claimed.id == job.id)
            #expect(try await store.claimSlotJob(owner: "b", leaseSeconds: 10) == nil, "a's lease is live")
            database.clock.advance(by: 8)
            #expect(try await store.renewSlotJobLease(job.id, owner: "a", leaseSeconds: 10), "the holder renews")
            #expect(try await !store.renewSlotJobLease(job.id, owner: "b", leaseSeconds: 10), "only the holder renews")
            database.clock.advance(by: 5)
            #expect(try await store.claimSlotJob(owner: "b", leaseSeconds: 10) == nil, "the renewal moved the expiry past the first one")
            database.clock.advance(by: 6)
            let takenOver = try #require(try await store.claimSlotJob(owner: "b", leaseSeconds: 10))
            #expect(takenOver.id == job.id)
            await expectBrokerError(.leaseLost) {
                _ = try await store.saveSlotJob(claimed, owner: "a", leaseSeconds: 10, audit: nil)
            }
            #expect(try await !store.renewSlotJobLease(job.id, owner: "a", leaseSeconds: 10), "a lost lease is not renewed")
            let audit = try await store.auditEntries(AuditQuery(operation: "slot.job.taken_over"))
            #expect(audit.count == 1)
            #expect(audit.first?.record.detail?.contains("previous_owner=a") == true)
        }
    }

    @Test("Progress is saved by the holder with its audit; a stale version is refused; finishing frees the one open slot", arguments: StoreKind.allCases)
    func progress(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            _ = try await store.createSlotJob(try drainJob(store, database))
            var job = try #require(try await store.claimSlotJob(owner: "a", leaseSeconds: 10))
            job.progress = SlotJobProgress(total: 3, moved: 1, failed: 1, left: 1)
            job.failures = [SlotJobFailure(tenant: "customer-2", reason: String(repeating: "x", count: 1000))]
            job.message = "moving"
            let saved = try await store.saveSlotJob(
                job, owner: "a", leaseSeconds: 10, audit: SlotJobAuditEntry(operation: "slot.job.tenant_not_moved", detail: "why", failed: true))
            #expect(saved.version == job.version.next)
            let read = try await store.slotJob(job.id)
            #expect(read.progress == SlotJobProgress(total: 3, moved: 1, failed: 1, left: 1))
            #expect(read.failures.first?.reason.count == 256, "failure reasons are bounded")
            await expectBrokerError(.versionConflict) {
                _ = try await store.saveSlotJob(job, owner: "a", leaseSeconds: 10, audit: nil)
            }
            let done = saved.advanced(at: database.clock.now, message: "next").advanced(at: database.clock.now, message: "done")
            #expect(done.state == .succeeded)
            _ = try await store.saveSlotJob(done, owner: "a", leaseSeconds: 10, audit: nil)
            #expect(try await store.claimSlotJob(owner: "a", leaseSeconds: 10) == nil, "a finished job is not open")
            let next = try await store.createSlotJob(try drainJob(store, database, slot: 2))
            #expect(next.state == .running)
            let failures = try await store.auditEntries(AuditQuery(operation: "slot.job.tenant_not_moved"))
            #expect(failures.first?.record.outcome == .failure(code: "slot_job_step_failed"))
        }
    }

    @Test("Two replicas claiming at once: exactly one gets the job", arguments: StoreKind.allCases)
    func concurrentClaims(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            _ = try await store.createSlotJob(try drainJob(store, database))
            let winners = try await withReplicas(4, of: database) { stores in
                try await withThrowingTaskGroup(of: Bool.self) { group in
                    for (index, replica) in stores.enumerated() {
                        group.addTask { try await replica.claimSlotJob(owner: "r\(index)", leaseSeconds: 30) != nil }
                    }
                    return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
                }
            }
            #expect(winners == 1)
        }
    }

    @Test("Heartbeats count the live replicas; a silent one stops counting; a removed one at once", arguments: StoreKind.allCases)
    func heartbeats(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            let start = database.clock.now
            #expect(try await store.heartbeat(replica: "a", startedAt: start, liveWithin: 15) == 1)
            #expect(try await store.heartbeat(replica: "b", startedAt: start, liveWithin: 15) == 2)
            database.clock.advance(by: 10)
            #expect(try await store.heartbeat(replica: "a", startedAt: start, liveWithin: 15) == 2)
            database.clock.advance(by: 10)
            #expect(try await store.heartbeat(replica: "a", startedAt: start, liveWithin: 15) == 1, "b missed its beats")
            _ = try await store.heartbeat(replica: "b", startedAt: start, liveWithin: 15)
            try await store.removeReplica("b")
            #expect(try await store.heartbeat(replica: "a", startedAt: start, liveWithin: 15) == 1)
        }
    }
}
