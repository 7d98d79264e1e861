import Foundation

extension SlotJobKind {
    /// The steps a job of this kind runs, in order.
    ///
    /// Why rotate is add + drain + retire and not a swap of identities on one slot: a slot's FIC
    /// cannot be edited in place without a window where neither identity works, while two FICs
    /// side by side let every tenant move only once its new slot is proven.
    public var steps: [SlotJobStep] {
        switch self {
        case .add: [.createCredential, .proveCredential, .activate]
        case .drain: [.startDrain, .moveTenants]
        case .retire: [.awaitTokenExpiry, .deleteCredential, .retire]
        case .rotate:
            [.createCredential, .proveCredential, .activate, .startDrain, .moveTenants, .awaitTokenExpiry, .deleteCredential, .retire]
        }
    }

    /// Whether the job needs a new identity (add, rotate) or an existing slot to work on.
    public var needsTargetIdentity: Bool { self == .add || self == .rotate }
    public var needsSourceSlot: Bool { self != .add }
}

extension SlotJob {
    /// A new job at its first step. Checks the arguments the kind needs, so a job row is never
    /// written that no replica could run.
    public static func new(
        _ kind: SlotJobKind, id: SlotJobID = .generate(), source: FICSlotID?, target: FICSlotID?,
        identity: SlotJobIdentity?, createdBy: String, at now: Date
    ) throws(BrokerError) -> SlotJob {
        if kind.needsSourceSlot, source == nil {
            throw BrokerError(.invalidArgument, "a \(kind.rawValue) job needs the slot to work on")
        }
        if kind.needsTargetIdentity, identity == nil || target == nil {
            throw BrokerError(.invalidArgument, "a \(kind.rawValue) job needs the new identity's client id and principal id")
        }
        if let source, let target, source == target {
            throw BrokerError(.invalidArgument, "the new slot must have another name than \(source)")
        }
        return SlotJob(
            id: id, kind: kind, step: kind.steps[0], sourceSlot: kind.needsSourceSlot ? source : nil,
            targetSlot: kind.needsTargetIdentity ? target : nil, targetIdentity: kind.needsTargetIdentity ? identity : nil,
            message: "queued", createdBy: createdBy, createdAt: now, updatedAt: now)
    }

    /// The step after the current one (`.done` after the last).
    public var nextStep: SlotJobStep {
        let steps = kind.steps
        guard let index = steps.firstIndex(of: step), index + 1 < steps.count else { return .done }
        return steps[index + 1]
    }

    /// The job with its current step finished: at the next step, or succeeded after the last.
    public func advanced(at now: Date, message: String) -> SlotJob {
        var job = self
        job.step = nextStep
        job.message = String(message.prefix(512))
        job.updatedAt = now
        if job.step == .done {
            job.state = .succeeded
            job.finishedAt = now
        }
        return job
    }

    /// The job stopped at its current step for `reason`; the step stays recorded, so an SRE sees
    /// where it stopped.
    public func failed(at now: Date, reason: String) -> SlotJob {
        var job = self
        job.state = .failed
        job.message = String(reason.prefix(512))
        job.updatedAt = now
        job.finishedAt = now
        return job
    }

    /// When `awaitTokenExpiry` may end: `maximumTokenLifetime` after the source slot's last
    /// tenant left (a token issued through the slot just before may still be in use until then).
    public func retireNotBefore(drainedAt: Date, maximumTokenLifetime: Double) -> Date {
        drainedAt.addingTimeInterval(max(0, maximumTokenLifetime))
    }

    /// The slot the current step works on.
    public var currentSlot: FICSlotID? { step.actsOnTarget ? targetSlot : sourceSlot }
}
