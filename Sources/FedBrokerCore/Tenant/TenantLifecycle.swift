/// Where a tenant stands in its life with the broker.
///
/// ```
/// registered --validationSucceeded--> validated --activate--> active <--accessRevoked/accessRestored--> suspended
///      any but offboarded --disable--> disabled --enable--> registered (never activated) | suspended (activated)
///      any but offboarded --offboard--> offboarded (terminal)
/// ```
public enum TenantState: String, CaseIterable, Hashable, Codable, Sendable, CustomStringConvertible {
    /// Onboarding staff entered the customer's key; nothing has been proven yet.
    case registered
    /// A wrap/unwrap round trip and the preconditions passed for the registered key.
    case validated
    /// Served. The key's identity (vault and name) is now locked.
    case active
    /// The customer revoked access (key disabled, role removed, app removed): detected, not typed in.
    case suspended
    /// Turned off by the ISV.
    case disabled
    /// Gone for good; the record stays for the audit trail.
    case offboarded

    public var description: String { self.rawValue }

    /// Whether key operations may be performed for a tenant in this state.
    public var isServable: Bool { self == .active }
}

/// Why a tenant was suspended. Each is something fedbroker observed at the customer's vault or
/// directory, never an operator's choice (that is `disable`).
public enum SuspensionReason: String, CaseIterable, Hashable, Codable, Sendable {
    case keyDisabled = "key_disabled"
    case keyNotFound = "key_not_found"
    case roleRemoved = "role_removed"
    case applicationRemoved = "application_removed"
}

/// What happened to a tenant: the inputs of the lifecycle state machine.
public enum TenantEvent: Hashable, Sendable {
    case validationSucceeded
    case activate
    case accessRevoked(SuspensionReason)
    case accessRestored
    case disable
    case enable
    case offboard

    /// The stable name recorded in the audit trail.
    public var name: String {
        switch self {
        case .validationSucceeded: "tenant.validated"
        case .activate: "tenant.activated"
        case .accessRevoked(let reason): "tenant.suspended.\(reason.rawValue)"
        case .accessRestored: "tenant.restored"
        case .disable: "tenant.disabled"
        case .enable: "tenant.enabled"
        case .offboard: "tenant.offboarded"
        }
    }
}
