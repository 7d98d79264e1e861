import FedBrokerCore
import Foundation
import Testing

/// The slot jobs' plans and their bookkeeping, without I/O. The expected step lists are written
/// from docs/runbooks (add: create, prove, activate; drain: stop placing, move; retire: wait,
/// delete, mark retired; rotate: all of them), not copied from the implementation.
@Suite struct SlotJobPlanTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let identity = try! SlotJobIdentity(
        clientID: "AAAAAAAA-1111-2222-3333-444444444444", principalID: "bbbbbbbb-1111-2222-3333-444444444444")

    @Test func eachKindRunsTheDocumentedSteps() {
        #expect(SlotJobKind.add.steps.map(\.rawValue) == ["create_credential", "prove_credential", "activate"])
        #expect(SlotJobKind.drain.steps.map(\.rawValue) == ["start_drain", "move_tenants"])
        #expect(SlotJobKind.retire.steps.map(\.rawValue) == ["await_token_expiry", "delete_credential", "retire"])
        #expect(
            SlotJobKind.rotate.steps.map(\.rawValue) == [
                "create_credential", "prove_credential", "activate", "start_drain", "move_tenants", "await_token_expiry",
                "delete_credential", "retire",
            ])
    }

    @Test func aJobWalksItsStepsToSucceeded() throws {
        var job = try SlotJob.new(
            .rotate, source: FICSlotID(rawValue: "fic-1"), target: FICSlotID(rawValue: "fic-3"), identity: identity, createdBy: "staff:x",
            at: now)
        #expect(job.step == .createCredential)
        #expect(job.currentSlot?.rawValue == "fic-3", "the first steps act on the new slot")
        var visited: [SlotJobStep] = []
        while job.state == .running {
            visited.append(job.step)
            job = job.advanced(at: now.addingTimeInterval(Double(visited.count)), message: "ok")
        }
        #expect(visited == SlotJobKind.rotate.steps)
        #expect(job.state == .succeeded)
        #expect(job.step == .done)
        #expect(job.finishedAt == now.addingTimeInterval(8))
    }

    @Test func aFailedJobStaysAtItsStepWithABoundedReason() throws {
        let job = try SlotJob.new(.drain, source: FICSlotID(rawValue: "fic-1"), target: nil, identity: nil, createdBy: "s", at: now)
            .advanced(at: now, message: "draining")
        let failed = job.failed(at: now, reason: String(repeating: "r", count: 2000))
        #expect(failed.state == .failed)
        #expect(failed.step == .moveTenants)
        #expect(failed.currentSlot?.rawValue == "fic-1")
        #expect(failed.message.count == 512)
        #expect(failed.state.isFinished)
    }

    @Test func argumentsAreCheckedBeforeAJobExists() {
        #expect(throws: BrokerError(.invalidArgument, "")) {
            try SlotJob.new(.drain, source: nil, target: nil, identity: nil, createdBy: "s", at: now)
        }
        #expect(throws: BrokerError(.invalidArgument, "")) {
            try SlotJob.new(.add, source: nil, target: FICSlotID(rawValue: "fic-2"), identity: nil, createdBy: "s", at: now)
        }
        #expect(throws: BrokerError(.invalidArgument, "")) {
            try SlotJob.new(
                .rotate, source: FICSlotID(rawValue: "fic-2"), target: FICSlotID(rawValue: "fic-2"), identity: identity, createdBy: "s",
                at: now)
        }
        #expect(throws: BrokerError(.invalidArgument, "")) {
            try SlotJobIdentity(clientID: "not-a-guid", principalID: "bbbbbbbb-1111-2222-3333-444444444444")
        }
        #expect(throws: BrokerError(.invalidArgument, "")) {
            try SlotJobIdentity(clientID: "aaaaaaaa-1111-2222-3333-44444444444/", principalID: "bbbbbbbb-1111-2222-3333-444444444444")
        }
    }

    @Test func identitiesAreLowercasedAndIDsStrict() throws {
        #expect(identity.clientID == "aaaaaaaa-1111-2222-3333-444444444444")
        let id = SlotJobID.generate()
        #expect(SlotJobID(rawValue: id.rawValue) == id)
        #expect(SlotJobID(rawValue: "job_../../etc/passwd") == nil)
        #expect(SlotJobID(rawValue: "job_" + String(repeating: "g", count: 32)) == nil)
    }

    @Test func retireWaitsTheLongestTokenLifetimeAfterTheSlotEmptied() throws {
        let job = try SlotJob.new(.retire, source: FICSlotID(rawValue: "fic-1"), target: nil, identity: nil, createdBy: "s", at: now)
        #expect(job.retireNotBefore(drainedAt: now, maximumTokenLifetime: 5400) == now.addingTimeInterval(5400))
        #expect(job.retireNotBefore(drainedAt: now, maximumTokenLifetime: -5) == now, "a negative lifetime never moves it earlier")
    }
}
