import BrokerStore
import FedBrokerCore
import Foundation

/// Turns an SRE's request into a job row, refusing at once what could never run: a drain of a
/// slot that is not serving or has nowhere to send its tenants, the retire of a slot with
/// tenants, an identity that is already a slot, a 21st slot.
public enum SlotJobSubmission {
    /// What an SRE asked for.
    public enum Request: Sendable {
        case add(identity: SlotJobIdentity, name: FICSlotID?)
        case drain(FICSlotID)
        case retire(FICSlotID)
        case rotate(FICSlotID, to: SlotJobIdentity, name: FICSlotID?)
    }

    /// Checks the request against the store and records the job.
    /// - Throws: `BrokerError` (`notFound`, `illegalSlotTransition`, `slotNotEmpty`,
    ///   `noActiveSlot`, `slotLimitReached`, `uniqueConflict`, `jobInProgress`).
    public static func submit(
        _ request: Request, applicationID: String, store: any BrokerStore, actor: String, now: Date
    ) async throws -> SlotJob {
        let slots = try await store.slots().filter { $0.identity.applicationID == applicationID }
        func existing(_ id: FICSlotID) throws -> FICSlot {
            guard let slot = slots.first(where: { $0.id == id }) else { throw BrokerError(.notFound, "no slot \(id)") }
            return slot
        }
        func checkNew(_ identity: SlotJobIdentity, name: FICSlotID?) throws -> FICSlotID {
            // Running add again for a slot left provisioning resumes it.
            if let resumable = slots.first(where: {
                $0.state == .provisioning && $0.identity.managedIdentityClientID.lowercased() == identity.clientID
            }) {
                guard resumable.identity.managedIdentityPrincipalID.lowercased() == identity.principalID else {
                    throw BrokerError(
                        .uniqueConflict,
                        "slot \(resumable.id) is provisioning for this identity with another principal id; retire it (fedbroker slot retire \(resumable.id)) and add again")
                }
                return resumable.id
            }
            if let taken = slots.first(where: {
                $0.state != .retired
                    && ($0.identity.managedIdentityClientID.lowercased() == identity.clientID
                        || $0.identity.managedIdentityPrincipalID.lowercased() == identity.principalID)
            }) {
                throw BrokerError(.uniqueConflict, "managed identity \(identity.clientID) is already slot \(taken.id)")
            }
            try FICSlot.checkCanCreate(nonRetiredCount: slots.filter(\.state.countsTowardsLimit).count)
            if let name {
                guard !slots.contains(where: { $0.id == name }) else { throw BrokerError(.uniqueConflict, "slot \(name) already exists") }
                return name
            }
            return nextName(after: slots.map(\.id))
        }
        let job: SlotJob
        switch request {
        case .add(let identity, let name):
            let target = try checkNew(identity, name: name)
            job = try SlotJob.new(.add, source: nil, target: target, identity: identity, createdBy: actor, at: now)
        case .drain(let id):
            let slot = try existing(id)
            guard slot.state == .active || slot.state == .draining else {
                throw BrokerError(.illegalSlotTransition, "slot \(id) is \(slot.state); only an active or draining slot can be drained")
            }
            guard slots.contains(where: { $0.id != id && $0.state.acceptsTenants }) else {
                throw BrokerError(.noActiveSlot, "no other active slot to move \(id)'s tenants to; add one first (fedbroker slot add)")
            }
            job = try SlotJob.new(.drain, source: id, target: nil, identity: nil, createdBy: actor, at: now)
        case .retire(let id):
            let slot = try existing(id)
            // A slot left provisioning (its credential never proved itself) is given up the same way.
            guard slot.state == .draining || slot.state == .provisioning else {
                throw BrokerError(
                    .illegalSlotTransition, "slot \(id) is \(slot.state); only a drained (draining, empty) or provisioning slot can be retired")
            }
            let tenants = try await store.tenants(onSlot: id).count
            guard tenants == 0 else {
                throw BrokerError(.slotNotEmpty, "slot \(id) still has \(tenants) tenant(s); drain it first (fedbroker slot drain \(id))")
            }
            job = try SlotJob.new(.retire, source: id, target: nil, identity: nil, createdBy: actor, at: now)
        case .rotate(let id, let identity, let name):
            let slot = try existing(id)
            guard slot.state == .active || slot.state == .draining else {
                throw BrokerError(.illegalSlotTransition, "slot \(id) is \(slot.state); only an active or draining slot can be rotated")
            }
            let target = try checkNew(identity, name: name)
            job = try SlotJob.new(.rotate, source: id, target: target, identity: identity, createdBy: actor, at: now)
        }
        return try await store.createSlotJob(job)
    }

    /// `fic-N` for the smallest N above every existing `fic-N`.
    static func nextName(after ids: [FICSlotID]) -> FICSlotID {
        let numbers = ids.compactMap { id -> Int? in
            guard id.rawValue.hasPrefix("fic-") else { return nil }
            return Int(id.rawValue.dropFirst(4)).flatMap { $0 < 1_000_000 ? $0 : nil }
        }
        return FICSlotID(rawValue: "fic-\((numbers.max() ?? 0) + 1)")!
    }
}
