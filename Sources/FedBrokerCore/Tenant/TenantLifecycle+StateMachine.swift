/// The tenant lifecycle as a plain value: events in, a transition (with what the serving side must
/// do) out, illegal events rejected with `BrokerError.Code.illegalTenantTransition`.
///
/// Why a value type with no I/O: the store runs it inside its transaction on the state it just
/// read, and tests drive every (state, event) pair without a database.
public struct TenantLifecycle: Hashable, Sendable {
    /// What the serving side must do after a transition is committed.
    public enum ServingEffect: Hashable, Sendable {
        /// The tenant became servable: caches may be warmed.
        case startServing
        /// The tenant stopped being servable: drop cached data keys and tokens at once.
        case stopServing
        case none
    }

    /// One committed step, for the audit record and the serving side.
    public struct Transition: Hashable, Sendable {
        public let from: TenantState
        public let to: TenantState
        /// The audit operation name (`TenantEvent.name`, or `tenant.key_changed`).
        public let operation: String
        public let effect: ServingEffect
    }

    public private(set) var state: TenantState
    public private(set) var key: KeyReference
    /// Set by the first activation and never cleared: from then on the key's vault and name are
    /// locked (the CMEK promise that an active tenant's key is not swapped silently).
    public private(set) var wasActivated: Bool

    public init(state: TenantState = .registered, key: KeyReference, wasActivated: Bool = false) {
        self.state = state
        self.key = key
        self.wasActivated = wasActivated || state == .active || state == .accessLost
    }

    /// Applies `event`, or throws `illegalTenantTransition` and leaves the machine unchanged.
    public mutating func apply(_ event: TenantEvent) throws(BrokerError) -> Transition {
        let from = self.state
        let to: TenantState
        switch (from, event) {
        case (.registered, .validationSucceeded), (.validated, .validationSucceeded):
            to = .validated
        case (.validated, .activate):
            to = .active
            self.wasActivated = true
        case (.active, .accessLost):
            to = .accessLost
        case (.accessLost, .accessRestored):
            to = .active
        case (.registered, .suspend), (.validated, .suspend), (.active, .suspend), (.accessLost, .suspend):
            to = .suspended
        case (.suspended, .restore):
            // The operator's restore validates before it gets here (the machine does no I/O): an
            // activated tenant goes straight back to active, one never activated starts over.
            to = self.wasActivated ? .active : .registered
        case (.registered, .offboard), (.validated, .offboard), (.active, .offboard), (.accessLost, .offboard),
            (.suspended, .offboard):
            to = .offboarded
        default:
            throw BrokerError(.illegalTenantTransition, "\(event.name) is not allowed for a \(from) tenant")
        }
        self.state = to
        return Transition(from: from, to: to, operation: event.name, effect: Self.effect(from: from, to: to))
    }

    /// Replaces the key reference.
    ///
    /// Before activation any key may replace any other, and a validated tenant drops back to
    /// `registered` (the validation proved the old key). After activation only the version of the
    /// same vault and key may change (a customer rotating their key); anything else throws `keyLocked`.
    public mutating func changeKey(to newKey: KeyReference) throws(BrokerError) -> Transition {
        let from = self.state
        if from == .offboarded {
            throw BrokerError(.illegalTenantTransition, "an offboarded tenant's key cannot change")
        }
        if self.wasActivated {
            guard newKey.isSameKey(as: self.key) else {
                throw BrokerError(.keyLocked, "an activated tenant's key can only move to another version of the same key")
            }
            self.key = newKey
            return Transition(from: from, to: from, operation: "tenant.key_version_changed", effect: .none)
        }
        self.key = newKey
        let to: TenantState = from == .validated ? .registered : from
        self.state = to
        return Transition(from: from, to: to, operation: "tenant.key_changed", effect: .none)
    }

    private static func effect(from: TenantState, to: TenantState) -> ServingEffect {
        switch (from.isServable, to.isServable) {
        case (false, true): .startServing
        case (true, false): .stopServing
        default: .none
        }
    }
}
