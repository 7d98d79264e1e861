/// A FIC slot's state.
///
/// ```
/// provisioning --activate--> active --drain--> draining --retire--> retired
///      |                       ^------undrain----'
///      '--------------------abandon-------------------------------> retired
/// ```
public enum FICSlotState: String, CaseIterable, Hashable, Codable, Sendable, CustomStringConvertible {
    /// The managed identity and FIC are being created; not yet proven to work.
    case provisioning
    /// Serves its tenants and accepts new ones.
    case active
    /// Serves its tenants but accepts no new ones; its tenants are being moved away.
    case draining
    /// Its FIC was deleted; it serves no one and no longer counts towards the 20.
    case retired

    public var description: String { self.rawValue }

    /// Whether tenants assigned to the slot may be served through it (invariant 1).
    public var isServing: Bool { self == .active || self == .draining }
    /// Whether new tenants may be placed on the slot.
    public var acceptsTenants: Bool { self == .active }
    /// Whether it counts towards the per-application limit.
    public var countsTowardsLimit: Bool { self != .retired }
}

/// What an SRE or the rotation job does to a slot.
public enum FICSlotEvent: String, CaseIterable, Hashable, Sendable {
    /// The identity exchange was proven end to end.
    case activate
    /// Stop placing tenants here and start moving them away.
    case drain
    /// Cancel a drain.
    case undrain
    /// Delete the FIC; only once no tenant is assigned.
    case retire
    /// Give up on a slot that never became active.
    case abandon

    /// The stable name recorded in the audit trail.
    public var name: String { "slot.\(self.rawValue)" }
}

extension FICSlotState {
    /// The state after `event`, given how many tenants are still assigned to the slot.
    ///
    /// - Throws: `illegalSlotTransition` for an event the state does not allow, `slotNotEmpty` when
    ///   retiring a slot that still has tenants (they would lose service: invariant 1).
    public func applying(_ event: FICSlotEvent, assignedTenants: Int) throws(BrokerError) -> FICSlotState {
        switch (self, event) {
        case (.provisioning, .activate), (.draining, .undrain):
            return .active
        case (.active, .drain):
            return .draining
        case (.draining, .retire), (.provisioning, .abandon):
            guard assignedTenants == 0 else {
                throw BrokerError(.slotNotEmpty, "the slot still serves \(assignedTenants) tenant(s); move them first")
            }
            return .retired
        default:
            throw BrokerError(.illegalSlotTransition, "\(event.name) is not allowed for a \(self) slot")
        }
    }
}
