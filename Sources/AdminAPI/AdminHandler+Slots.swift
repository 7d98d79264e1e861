import AdminAPIModel
import FedBrokerCore
import Foundation
import Logging
import SlotOperations

/// FIC slots and the SRE jobs on them. A write records a job and answers 202 at once: the job
/// runs on whichever replica holds its lease, and `/v1/slot-jobs/{id}` shows its progress.
extension AdminHandler {
    func listSlots(_ input: Operations.ListSlots.Input) async throws -> Operations.ListSlots.Output {
        let slots = try await store.slots()
        // Every slot's tenant count in one read (slots belong to the one application).
        var counts: [FICSlotID: Int] = [:]
        if let applicationID = environment.applicationClientID {
            for load in try await store.slotLoads(applicationID: applicationID) { counts[load.id] = load.tenantCount }
        }
        let items = slots.map { Self.schema($0, tenantCount: counts[$0.id] ?? 0) }
        return .ok(.init(body: .json(.init(items: items, limit: FICSlot.maximumNonRetiredPerApplication))))
    }

    func getSlot(_ input: Operations.GetSlot.Input) async throws -> Operations.GetSlot.Output {
        let id = try Self.slotID(input.path.slotId)
        let slot = try await store.slot(id)
        return .ok(.init(body: .json(Self.schema(slot, tenantCount: try await store.tenants(onSlot: id).count))))
    }

    func addSlot(_ input: Operations.AddSlot.Input) async throws -> Operations.AddSlot.Output {
        guard case .json(let body) = input.body else { throw AdminProblem.badRequest("expected application/json") }
        let identity = try Self.jobIdentity(client: body.identityClientId, principal: body.principalId)
        let job = try await submit(.add(identity: identity, name: try body.name.map(Self.slotID)))
        return .accepted(.init(headers: .init(location: "/v1/slot-jobs/\(job.id)"), body: .json(Self.schema(job))))
    }

    func drainSlot(_ input: Operations.DrainSlot.Input) async throws -> Operations.DrainSlot.Output {
        let job = try await submit(.drain(try Self.slotID(input.path.slotId)))
        return .accepted(.init(headers: .init(location: "/v1/slot-jobs/\(job.id)"), body: .json(Self.schema(job))))
    }

    func retireSlot(_ input: Operations.RetireSlot.Input) async throws -> Operations.RetireSlot.Output {
        let job = try await submit(.retire(try Self.slotID(input.path.slotId)))
        return .accepted(.init(headers: .init(location: "/v1/slot-jobs/\(job.id)"), body: .json(Self.schema(job))))
    }

    func rotateSlot(_ input: Operations.RotateSlot.Input) async throws -> Operations.RotateSlot.Output {
        guard case .json(let body) = input.body else { throw AdminProblem.badRequest("expected application/json") }
        let identity = try Self.jobIdentity(client: body.identityClientId, principal: body.principalId)
        let job = try await submit(
            .rotate(try Self.slotID(input.path.slotId), to: identity, name: try body.name.map(Self.slotID)))
        return .accepted(.init(headers: .init(location: "/v1/slot-jobs/\(job.id)"), body: .json(Self.schema(job))))
    }

    func listSlotJobs(_ input: Operations.ListSlotJobs.Input) async throws -> Operations.ListSlotJobs.Output {
        let jobs = try await store.slotJobs(limit: try Self.limit(input.query.limit))
        return .ok(.init(body: .json(.init(items: jobs.map(Self.schema)))))
    }

    func getSlotJob(_ input: Operations.GetSlotJob.Input) async throws -> Operations.GetSlotJob.Output {
        guard let id = SlotJobID(rawValue: input.path.jobId) else {
            throw AdminProblem.notFound("no slot job with that id (job ids are job_ and 32 hex digits)")
        }
        return .ok(.init(body: .json(Self.schema(try await store.slotJob(id)))))
    }

    private func submit(_ request: SlotJobSubmission.Request) async throws -> SlotJob {
        let actor = try self.actor
        guard let applicationID = environment.applicationClientID else {
            throw AdminProblem.invalid("no application client id is configured; slots belong to it")
        }
        let job = try await SlotJobSubmission.submit(request, applicationID: applicationID, store: store, actor: actor, now: clock.now)
        logger.notice(
            "slot job submitted",
            metadata: [
                "fb.job": "\(job.id)", "fb.kind": "\(job.kind.rawValue)", "fb.slot": "\(job.sourceSlot?.rawValue ?? "-")",
                "fb.newSlot": "\(job.targetSlot?.rawValue ?? "-")", "fb.actor": "\(logActor)",
            ])
        slotJobSubmitted()
        return job
    }

    static func slotID(_ raw: String) throws(AdminProblem) -> FICSlotID {
        guard let id = FICSlotID(rawValue: raw) else { throw .invalid("a slot name is 3-120 characters of [A-Za-z0-9_-]") }
        return id
    }

    static func jobIdentity(client: String, principal: String) throws(AdminProblem) -> SlotJobIdentity {
        do {
            return try SlotJobIdentity(clientID: client, principalID: principal)
        } catch {
            throw AdminProblem(error)
        }
    }

    static func schema(_ slot: FICSlot, tenantCount: Int) -> Components.Schemas.Slot {
        .init(
            id: slot.id.rawValue, state: .init(rawValue: slot.state.rawValue) ?? .retired,
            identityClientId: slot.identity.managedIdentityClientID, principalId: slot.identity.managedIdentityPrincipalID,
            issuer: slot.identity.issuer, subject: slot.identity.subject, tenantCount: tenantCount, createdAt: slot.createdAt,
            updatedAt: slot.updatedAt, version: slot.version.rawValue)
    }

    static func schema(_ job: SlotJob) -> Components.Schemas.SlotJob {
        .init(
            id: job.id.rawValue, kind: .init(rawValue: job.kind.rawValue) ?? .add, state: .init(rawValue: job.state.rawValue) ?? .failed,
            step: job.step.rawValue, steps: job.kind.steps.map(\.rawValue), slotId: job.sourceSlot?.rawValue,
            newSlotId: job.targetSlot?.rawValue, identityClientId: job.targetIdentity?.clientID,
            progress: .init(total: job.progress.total, moved: job.progress.moved, failed: job.progress.failed, left: job.progress.left),
            failures: job.failures.map { .init(tenantId: $0.tenant, reason: $0.reason) }, message: job.message,
            createdBy: job.createdBy, createdAt: job.createdAt, updatedAt: job.updatedAt, finishedAt: job.finishedAt,
            drainedAt: job.drainedAt)
    }
}
