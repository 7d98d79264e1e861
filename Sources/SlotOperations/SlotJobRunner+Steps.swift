import AzureIdentity
import BrokerStore
import FedBrokerCore
import Foundation
import Logging

extension SlotJobRunner {
    /// Runs the job's current step and returns the job as saved after it. Every step first looks
    /// at what is already done (a replica that died after the effect but before the save left it
    /// so) and only then acts.
    func runStep(_ job: SlotJob) async throws -> SlotJob {
        switch job.step {
        case .createCredential: return try await createCredential(job)
        case .proveCredential: return try await proveCredential(job)
        case .activate: return try await activate(job)
        case .startDrain: return try await startDrain(job)
        case .moveTenants: return try await moveTenants(job)
        case .awaitTokenExpiry: return try await awaitTokenExpiry(job)
        case .deleteCredential: return try await deleteCredential(job)
        case .retire: return try await retire(job)
        case .done: return try await advance(job, "done")
        }
    }

    // MARK: add

    func createCredential(_ job: SlotJob) async throws -> SlotJob {
        guard let target = job.targetSlot, let identity = job.targetIdentity else {
            throw SlotJobStepFailure("the job names no new slot or identity")
        }
        var slot = try await findSlot(target)
        if slot == nil {
            // Recorded first, under the store's 20-slot check, so Graph never gets a 21st.
            let slotIdentity = try FICSlotIdentity(
                applicationID: configuration.applicationID, managedIdentityClientID: identity.clientID,
                managedIdentityPrincipalID: identity.principalID, issuer: configuration.issuer, subject: identity.principalID)
            do {
                slot = try await store.createSlot(target, identity: slotIdentity, actor: job.createdBy)
            } catch let error as BrokerError where error.code == .uniqueConflict {
                slot = try await findSlot(target)  // recorded meanwhile (this step, run before): check it below
            }
        }
        guard let slot else { throw SlotJobStepFailure("slot \(target) could not be recorded") }
        guard slot.identity.managedIdentityClientID.lowercased() == identity.clientID else {
            throw SlotJobStepFailure("slot \(target) already exists for another managed identity")
        }
        guard slot.state != .retired else { throw SlotJobStepFailure("slot \(target) is retired; choose another name") }
        do {
            try await graph.ensureCredential(
                name: target.rawValue, issuer: slot.identity.issuer, subject: slot.identity.subject, deadline: deadline())
        } catch let failure as SlotJobStepFailure {
            if slot.state == .provisioning {
                // Graph refused for good: the slot gives its place among the 20 back.
                _ = try? await store.transitionSlot(slot.id, expectedVersion: slot.version, event: .abandon, actor: job.createdBy)
            }
            throw failure
        }
        return try await advance(job, "credential \(target) exists in Graph; proving it")
    }

    func proveCredential(_ job: SlotJob) async throws -> SlotJob {
        guard let target = job.targetSlot, let slot = try await findSlot(target) else {
            throw SlotJobStepFailure("the new slot is not in the store")
        }
        guard slot.state == .provisioning else { return try await advance(job, "slot \(target) is \(slot.state) already") }
        // From when this step (re)started: a resumed or re-submitted add waits the whole window again.
        let until = max(slot.createdAt, clock.now).addingTimeInterval(configuration.propagationSeconds)
        let source = sources.provingSource(forClientID: slot.identity.managedIdentityClientID, propagatingUntil: until)
        var job = job
        var attempt = 0
        while true {
            try Task.checkCancellation()
            attempt += 1
            do {
                let assertion = try await source.assertion(deadline: deadline())
                _ = try await tokens.exchange.exchange(
                    tenantID: configuration.isvTenantID, resource: configuration.proofResource, assertion: assertion.token,
                    deadline: deadline())
                return try await advance(job, "a token was issued through the new credential (attempt \(attempt))")
            } catch AzureIdentityError.entra(let refusal) where refusal.kind == .noMatchingFederatedCredential {
                let code = refusal.code.map { "AADSTS\($0)" } ?? refusal.error
                guard clock.now < until else {
                    throw SlotJobStepFailure(
                        "no token through the new credential within \(Int(configuration.propagationSeconds)) s (\(code), \(attempt) attempts); slot \(target) stays provisioning. Check that \(slot.identity.managedIdentityPrincipalID) is the identity's principal (object) id, then run the add again to resume"
                    )
                }
                job.message = "waiting for the credential to propagate: attempt \(attempt) got \(code); retrying until \(Self.timestamp(until))"
                job = try await save(job)
                try await clock.sleep(seconds: max(0.05, min(Double(min(attempt, 5)) * 2, until.timeIntervalSince(clock.now))))
            }
        }
    }

    func activate(_ job: SlotJob) async throws -> SlotJob {
        guard let target = job.targetSlot, let slot = try await findSlot(target) else {
            throw SlotJobStepFailure("the new slot is not in the store")
        }
        if slot.state == .provisioning {
            _ = try await store.transitionSlot(slot.id, expectedVersion: slot.version, event: .activate, actor: job.createdBy)
        } else if slot.state != .active {
            throw SlotJobStepFailure("slot \(target) is \(slot.state); it cannot be activated")
        }
        return try await advance(job, "slot \(target) is active")
    }

    // MARK: drain

    func startDrain(_ job: SlotJob) async throws -> SlotJob {
        guard let sourceID = job.sourceSlot, let slot = try await findSlot(sourceID) else {
            throw SlotJobStepFailure("the slot to drain is not in the store")
        }
        switch slot.state {
        case .active:
            _ = try await store.transitionSlot(slot.id, expectedVersion: slot.version, event: .drain, actor: job.createdBy)
        case .draining: break
        case .provisioning, .retired:
            throw SlotJobStepFailure("slot \(sourceID) is \(slot.state); only an active or draining slot can be drained")
        }
        return try await advance(job, "slot \(sourceID) is draining: no new tenant is placed on it")
    }

    func moveTenants(_ job: SlotJob) async throws -> SlotJob {
        guard let sourceID = job.sourceSlot else { throw SlotJobStepFailure("the job names no slot to drain") }
        var job = job
        let failed = Set(job.failures.map(\.tenant))
        let onSlot = try await store.tenants(onSlot: sourceID)
        let remaining = onSlot.filter { !failed.contains($0.rawValue) }
        if job.progress.total == 0 { job.progress.total = onSlot.count }
        job.progress.left = remaining.count
        let moves: [PartitionPlanner.Move]
        if job.kind == .rotate, let target = job.targetSlot {
            // A rotation replaces the slot's identity: its tenants all go to the new slot, so the
            // partition stays as it was.
            moves = remaining.sorted().map { PartitionPlanner.Move(tenant: $0, from: sourceID, to: target) }
        } else {
            let loads = try await store.slotLoads(applicationID: configuration.applicationID)
            do {
                moves = try PartitionPlanner.drainPlan(draining: sourceID, tenants: remaining, slots: loads)
            } catch {
                throw SlotJobStepFailure("\(Self.describe(error)): add a slot first (fedbroker slot add)")
            }
        }
        let pause = configuration.movesPerSecond > 0 ? 1 / configuration.movesPerSecond : 0
        let movedBefore = job.progress.moved
        for move in moves {
            try Task.checkCancellation()
            let started = clock.now
            var entry: SlotJobAuditEntry?
            do {
                try await self.move(move, actor: job.createdBy)
                job.progress.moved += 1
                job.drainedAt = clock.now  // the retire wait counts from the last tenant that left
            } catch let refusal as SlotJobStepFailure {
                job.progress.failed += 1
                if job.failures.count < SlotJob.maximumRecordedFailures {
                    job.failures.append(SlotJobFailure(tenant: move.tenant.rawValue, reason: refusal.reason))
                }
                entry = SlotJobAuditEntry(
                    operation: "slot.job.tenant_not_moved", tenant: move.tenant, detail: "to=\(move.to) reason=\(refusal.reason)",
                    failed: true)
                logger.warning(
                    "tenant not moved: its proof through the new slot failed; it stays where it is",
                    metadata: ["fb.job": "\(job.id)", "fb.tenant": "\(move.tenant)", "fb.slot": "\(move.to)", "fb.reason": "\(refusal.reason)"])
            }
            job.progress.left = max(0, job.progress.left - 1)
            job.message = "moving tenants off \(sourceID): \(job.progress.moved) moved, \(job.progress.failed) failed, \(job.progress.left) left"
            job = try await save(job, audit: entry)
            let wait = pause - clock.now.timeIntervalSince(started)
            if wait > 0 { try await clock.sleep(seconds: wait) }
        }
        let still = try await store.tenants(onSlot: sourceID)
        if still.isEmpty {
            job.drainedAt = job.drainedAt ?? clock.now
            return try await advance(job, "every tenant left \(sourceID): \(job.progress.moved) moved")
        }
        // A pass that moved nobody would move nobody again (the job keeps at most
        // `maximumRecordedFailures` failures, so the skip list alone cannot end it).
        let recorded = Set(job.failures.map(\.tenant))
        if job.progress.moved == movedBefore || still.allSatisfy({ recorded.contains($0.rawValue) }) {
            throw SlotJobStepFailure(
                "\(still.count) tenant(s) could not be moved and stay on \(sourceID) (see the job's failures); fix them and run `fedbroker slot drain \(sourceID)` again"
            )
        }
        return job  // some moved and some remain (moved back, or failures past the recorded ones): another pass
    }

    /// Moves one tenant once a token for its directory came through the new slot. A tenant that
    /// is not being served (registered, suspended, …) moves without proof: nothing depends on its
    /// slot until its next validation, which goes through the new slot.
    func move(_ move: PartitionPlanner.Move, actor: String) async throws {
        for _ in 0..<3 {
            let tenant: Tenant
            do {
                tenant = try await store.tenant(move.tenant)
            } catch let error as BrokerError where error.code == .notFound {
                return  // offboarded and removed meanwhile
            }
            guard tenant.slotID == move.from else { return }  // moved already (a resumed step)
            if tenant.state == .active || tenant.state == .validated {
                guard let target = try await findSlot(move.to), target.state.acceptsTenants else {
                    throw SlotJobStepFailure("slot \(move.to) no longer accepts tenants")
                }
                let source = sources.source(forClientID: target.identity.managedIdentityClientID)
                do {
                    _ = try await tokens.token(
                        tenantID: tenant.entraTenantID.rawValue, source: source, resource: configuration.vaultResource,
                        deadline: deadline())
                } catch let error as AzureIdentityError where Self.refusesTenant(error) {
                    throw SlotJobStepFailure("no token for the tenant's directory through \(move.to): \(error.code) \(Self.describe(error))")
                }
                // Anything else (IMDS or Entra unavailable, throttled, a deadline) is not about the
                // tenant: it goes up, and the step is retried with backoff.
            }
            do {
                _ = try await store.assignTenant(tenant.id, expectedVersion: tenant.version, to: move.to, actor: actor)
                return
            } catch let error as BrokerError where error.code == .versionConflict {
                continue  // the tenant changed meanwhile (a validation, a suspension): read it again
            } catch let error as BrokerError where error.code == .illegalTenantTransition || error.code == .slotNotAssignable {
                throw SlotJobStepFailure("the store refused the move: \(error.message)")
            }
        }
        throw SlotJobStepFailure("the tenant kept changing while it was being moved")
    }

    // MARK: retire

    func awaitTokenExpiry(_ job: SlotJob) async throws -> SlotJob {
        guard let sourceID = job.sourceSlot, let slot = try await findSlot(sourceID) else {
            throw SlotJobStepFailure("the slot to retire is not in the store")
        }
        if slot.state == .retired { return try await advance(job, "slot \(sourceID) is retired already") }
        if slot.state == .provisioning {
            // Never active: no tenant was ever served through it, so no token of theirs waits.
            return try await advance(job, "slot \(sourceID) never became active; nothing to wait for")
        }
        guard slot.state == .draining else {
            throw SlotJobStepFailure("slot \(sourceID) is \(slot.state); only a drained slot can be retired (fedbroker slot drain \(sourceID))")
        }
        let left = try await store.tenants(onSlot: sourceID).count
        guard left == 0 else {
            throw SlotJobStepFailure("slot \(sourceID) still has \(left) tenant(s); drain it first (fedbroker slot drain \(sourceID))")
        }
        var job = job
        let drainedAt: Date
        if let own = job.drainedAt {
            drainedAt = own
        } else {
            let earlier = try await store.slotJobs(limit: 200).filter { $0.sourceSlot == sourceID }.compactMap(\.drainedAt).max()
            drainedAt = max(earlier ?? slot.updatedAt, slot.updatedAt)
            job.drainedAt = drainedAt
        }
        let notBefore = job.retireNotBefore(drainedAt: drainedAt, maximumTokenLifetime: configuration.maximumTokenLifetime)
        if clock.now < notBefore {
            job.message = "waiting until \(Self.timestamp(notBefore)) for tokens issued through \(sourceID) to expire"
            job = try await save(job)
            while clock.now < notBefore {
                try await clock.sleep(seconds: min(5, notBefore.timeIntervalSince(clock.now)))
            }
        }
        return try await advance(job, "no token issued through \(sourceID) is still valid")
    }

    func deleteCredential(_ job: SlotJob) async throws -> SlotJob {
        guard let sourceID = job.sourceSlot, let slot = try await findSlot(sourceID) else {
            throw SlotJobStepFailure("the slot to retire is not in the store")
        }
        switch slot.state {
        case .retired: break
        case .provisioning, .draining:
            // Checked again right before the delete: nothing may have put a tenant on it since.
            let left = try await store.tenants(onSlot: sourceID).count
            guard left == 0 else { throw SlotJobStepFailure("slot \(sourceID) has \(left) tenant(s) again; its credential stays") }
            try await graph.deleteCredentials(issuer: slot.identity.issuer, subject: slot.identity.subject, deadline: deadline())
        case .active:
            throw SlotJobStepFailure("slot \(sourceID) is active again; its credential stays")
        }
        return try await advance(job, "the credential of \(sourceID) is deleted in Graph")
    }

    func retire(_ job: SlotJob) async throws -> SlotJob {
        guard let sourceID = job.sourceSlot, let slot = try await findSlot(sourceID) else {
            throw SlotJobStepFailure("the slot to retire is not in the store")
        }
        if slot.state != .retired {
            let event: FICSlotEvent = slot.state == .provisioning ? .abandon : .retire
            _ = try await store.transitionSlot(slot.id, expectedVersion: slot.version, event: event, actor: job.createdBy)
        }
        return try await advance(job, "slot \(sourceID) is retired")
    }

    /// Entra refusing this tenant for good (Conditional Access, no consent, …), as opposed to
    /// Entra or IMDS being unavailable, which says nothing about the tenant.
    static func refusesTenant(_ error: AzureIdentityError) -> Bool {
        switch error {
        case .entra(let refusal): !refusal.isRetryable
        case .tokenFile, .malformedResponse: true
        case .isvTenant: false  // our own identity's trouble, not the tenant's
        case .imds, .transport, .deadlineExceeded: false
        }
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}
