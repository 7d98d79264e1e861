import AdminAPIModel
import AdminClient
import AzureEmulator
import BrokerApp
import BrokerClient
import BrokerStore
import FedBrokerCore
import FedBrokerTestSupport
import Foundation
import Testing

/// SREs' slot jobs through the admin API, run by the broker's own runner against the emulated
/// Graph and Entra over real sockets: add (with and past FIC propagation), drain with a tenant
/// whose proof fails, rotation under load, and the refusals.
@Suite(.serialized) struct SlotOperationsTests {
    @Test func addCreatesTheCredentialProvesItAndActivatesTheSlot() async throws {
        try await AdminWorld.withSlotJobs { world in
            let sre = try await world.client("sre")
            let identity = try world.newIdentity("fedbroker-fic-new")
            let accepted = try await sre.addSlot(body: .json(.init(identityClientId: identity.clientId, principalId: identity.principalId)))
                .accepted
            #expect(accepted.headers.location?.hasPrefix("/v1/slot-jobs/job_") == true)
            let job = try await world.finished(try accepted.body.json, as: sre)
            #expect(job.state == .succeeded, "\(job.message)")
            let slotID = try #require(job.newSlotId)
            #expect(slotID == "fic-3", "named after the bootstrap slots fic-1 and fic-2")
            let slot = try await sre.getSlot(path: .init(slotId: slotID)).ok.body.json
            #expect(slot.state == .active)
            #expect(slot.identityClientId == identity.clientId)
            let credential = try #require(world.credentials().first { $0.subject == identity.principalId })
            #expect(credential.name == slotID)
            #expect(credential.issuer == "https://login.microsoftonline.com/\(world.scenario.isvTenantID)/v2.0")
            #expect(credential.audiences == ["api://AzureADTokenExchange"])
            // The job's trail: every step, by the SRE who asked.
            let steps = try await world.app.store.auditEntries(AuditQuery(operation: "slot.job.prove_credential"))
            #expect(steps.count == 1)
            #expect(steps.first?.record.actor.hasPrefix("staff:") == true)
            // The same identity again is a conflict, not a second slot.
            let again = try await sre.addSlot(body: .json(.init(identityClientId: identity.clientId, principalId: identity.principalId)))
            guard case .default(let status, _) = again else { Issue.record("a second add of the identity was accepted"); return }
            #expect(status == 409)
        }
    }

    @Test func addWaitsOutThePropagationOfTheNewCredential() async throws {
        try await AdminWorld.withSlotJobs(propagationSeconds: 60) { world in
            // Long enough that the first proof comes inside it even on a loaded CI machine.
            world.emulator.state.updateSettings { $0.ficPropagationSeconds = 6 }
            let sre = try await world.client("sre")
            let identity = try world.newIdentity("fedbroker-fic-slow")
            let job = try await world.finished(
                try sre.addSlot(body: .json(.init(identityClientId: identity.clientId, principalId: identity.principalId))).accepted.body.json,
                as: sre)
            #expect(job.state == .succeeded, "\(job.message)")
            // At least one exchange met AADSTS70021 before the credential propagated.
            let proof = try #require(try await world.app.store.auditEntries(AuditQuery(operation: "slot.job.prove_credential")).first)
            let attempt = try #require(proof.record.detail?.split(separator: "attempt ").last?.prefix { $0.isNumber })
            #expect((Int(attempt) ?? 0) >= 2, "\(proof.record.detail ?? "")")
        }
    }

    @Test func aCredentialThatDoesNotPropagateInTimeLeavesTheSlotProvisioning() async throws {
        try await AdminWorld.withSlotJobs(propagationSeconds: 1) { world in
            world.emulator.state.updateSettings { $0.ficPropagationSeconds = 600 }
            let sre = try await world.client("sre")
            let identity = try world.newIdentity("fedbroker-fic-stuck")
            let job = try await world.finished(
                try sre.addSlot(body: .json(.init(identityClientId: identity.clientId, principalId: identity.principalId))).accepted.body.json,
                as: sre)
            #expect(job.state == .failed)
            #expect(job.step == "prove_credential")
            #expect(job.message.contains("stays provisioning"), "\(job.message)")
            #expect(job.message.contains("AADSTS70021"), "\(job.message)")
            let slot = try await sre.getSlot(path: .init(slotId: try #require(job.newSlotId))).ok.body.json
            #expect(slot.state == .provisioning)
            // Given up: retire deletes its credential and frees its place among the 20.
            let retired = try await world.finished(try await sre.retireSlot(path: .init(slotId: slot.id)).accepted.body.json, as: sre)
            #expect(retired.state == .succeeded, "\(retired.message)")
            #expect(try await sre.getSlot(path: .init(slotId: slot.id)).ok.body.json.state == .retired)
            #expect(!world.credentials().contains { $0.subject == identity.principalId }, "its FIC is deleted")
        }
    }

    @Test func aTenantWhoseProofFailsStaysWhereItIsAndIsReported() async throws {
        try await AdminWorld.withSlotJobs { world in
            let tenants = try await world.activeTenants(4, prefix: "dr")
            let onFirst = try await world.app.store.tenants(onSlot: try FICSlotID(validating: "fic-1"))
            #expect(onFirst.count == 2)
            let blocked = try #require(onFirst.first)
            let blockedTenant = try await world.app.store.tenant(blocked)
            world.emulator.state.setConditionalAccessBlock(
                tenantID: blockedTenant.entraTenantID.rawValue, appID: world.scenario.appClientID, blocked: true)
            let sre = try await world.client("sre")
            let job = try await world.finished(try sre.drainSlot(path: .init(slotId: "fic-1")).accepted.body.json, as: sre)
            #expect(job.state == .failed)
            #expect(job.progress.moved == 1)
            #expect(job.progress.failed == 1)
            #expect(job.failures.map(\.tenantId) == [blocked.rawValue])
            #expect(job.failures.first?.reason.contains("AADSTS53003") == true, "\(job.failures)")
            #expect(try await world.app.store.tenants(onSlot: try FICSlotID(validating: "fic-1")) == [blocked])
            #expect(try await world.app.store.tenants(onSlot: try FICSlotID(validating: "fic-2")).count == tenants.count - 1)
            let reported = try await world.app.store.auditEntries(AuditQuery(tenant: blocked, operation: "slot.job.tenant_not_moved"))
            #expect(reported.count == 1)
        }
    }

    @Test func refusalsComeBeforeAnyJobExists() async throws {
        try await AdminWorld.withSlotJobs(runJobs: false) { world in
            _ = try await world.activeTenants(2, prefix: "rf")
            let sre = try await world.client("sre")
            guard case .default(let active, _) = try await sre.retireSlot(path: .init(slotId: "fic-1")) else {
                Issue.record("an active slot was retired"); return
            }
            #expect(active == 409)
            guard case .default(let missing, _) = try await sre.retireSlot(path: .init(slotId: "fic-9")) else {
                Issue.record("a missing slot was retired"); return
            }
            #expect(missing == 404)
            let auditor = try await world.client("auditor")
            guard case .default(let forbidden, _) = try await auditor.drainSlot(path: .init(slotId: "fic-1")) else {
                Issue.record("an auditor started a drain"); return
            }
            #expect(forbidden == 403)
            // With jobs not running here, the first job stays open and a second one is refused.
            _ = try await sre.drainSlot(path: .init(slotId: "fic-1")).accepted
            guard case .default(let busy, let problem) = try await sre.drainSlot(path: .init(slotId: "fic-2")) else {
                Issue.record("a second job was accepted while one is open"); return
            }
            #expect(busy == 409)
            #expect(try problem.body.applicationProblemJson.code == "job_in_progress")
            let jobs = try await sre.listSlotJobs().ok.body.json.items
            #expect(jobs.count == 1)
            #expect(jobs.first?.state == .running)
        }
    }

    /// The issue's rotation test: GenerateDataKey and Unwrap for 50 tenants over 2 slots while
    /// `rotate` moves every tenant of fic-1 to a new identity.
    @Test func rotationUnderLoadFailsNoRequestAndRetiresTheOldCredential() async throws {
        try await AdminWorld.withSlotJobs { world in
            let tenants = try await world.activeTenants(50, prefix: "ld")
            let store = world.app.store
            let oldSlot = try FICSlotID(validating: "fic-1")
            let onOld = try await store.tenants(onSlot: oldSlot)
            #expect(onOld.count == 25)
            let oldIdentity = try await store.slot(oldSlot).identity
            _ = try await store.createCaller(
                Caller(id: "load", identity: LocalPKI.callerIdentity("load"), grants: [CallerGrant(operations: Set(KeyOperation.allCases), tenants: .all)]),
                actor: "test")
            let broker = try world.broker("load")
            let tally = LoadTally()
            let load = tally.generate(on: broker, tenants: tenants, workers: 6)
            let sre = try await world.client("sre")
            let identity = try world.newIdentity("fedbroker-fic-rotated")
            let before = tally.succeeded
            let accepted = try await sre.rotateSlot(
                path: .init(slotId: "fic-1"), body: .json(.init(identityClientId: identity.clientId, principalId: identity.principalId))
            ).accepted.body.json
            let job = try await world.finished(accepted, as: sre, seconds: 240)
            let during = tally.succeeded - before
            tally.stop()
            await load.value
            await broker.close()

            #expect(job.state == .succeeded, "\(job.step): \(job.message)")
            #expect(tally.failures.isEmpty, "\(tally.failures)")
            #expect(during > 0, "the load ran while the slot rotated")
            let newSlot = try FICSlotID(validating: try #require(job.newSlotId))
            #expect(Set(try await store.tenants(onSlot: newSlot)) == Set(onOld), "every tenant of fic-1 ends on the new slot")
            #expect(try await store.tenants(onSlot: oldSlot).isEmpty)
            #expect(try await store.slot(oldSlot).state == .retired)
            #expect(try await store.slot(newSlot).state == .active)
            #expect(!world.credentials().contains { $0.subject == oldIdentity.subject }, "the old FIC is deleted in Graph")
            #expect(world.credentials().contains { $0.subject == identity.principalId })
            // No tenant on two slots, none without one.
            let all = try await store.tenants()
            #expect(all.allSatisfy { $0.slotID != nil && $0.slotID != oldSlot })
            #expect(job.progress.moved == 25)
        }
    }
}
