/// Where a tenant stands in its life with the broker.
///
/// ```
/// registered --validationSucceeded--> validated --activate--> active
/// active --accessLost(reason)--> access_lost      (detected by the broker, actor fedbroker)
/// access_lost --accessRestored--> active          (a re-probe succeeded, or an operator's restore after validation)
/// any but offboarded and suspended --suspend--> suspended             (an operator's decision)
/// suspended --restore--> registered (never activated) | active (activated; after validation)
/// any but offboarded --offboard--> offboarded     (terminal)
/// ```
///
/// Two ways of not being served are kept apart because they are undone differently:
/// `access_lost` is something the broker saw at the customer's side, so the broker looks again on
/// its own and serves as soon as access works; `suspended` is a person's decision, so only a
/// person lifts it, and no probe ever does.
public enum TenantState: String, CaseIterable, Hashable, Codable, Sendable, CustomStringConvertible {
    /// Onboarding staff entered the customer's key; nothing has been proven yet.
    case registered
    /// A wrap/unwrap round trip and the preconditions passed for the registered key.
    case validated
    /// Served. The key's identity (vault and name) is now locked.
    case active
    /// The customer's side refused the broker (key disabled, role removed, app removed): detected,
    /// not typed in. The broker probes again with backoff and serves again once access works.
    case accessLost = "access_lost"
    /// Stopped by an operator (billing hold, incident, customer request). Only an operator restores it.
    case suspended
    /// Gone for good; the record stays for the audit trail.
    case offboarded

    public var description: String { self.rawValue }

    /// Whether key operations may be performed for a tenant in this state.
    public var isServable: Bool { self == .active }
}

/// What the broker saw when it lost access to a tenant's key. Each is an observation at the
/// customer's vault or directory, never an operator's choice (that is `suspend`).
public enum AccessLossReason: String, CaseIterable, Hashable, Codable, Sendable {
    case keyDisabled = "key_disabled"
    case keyNotFound = "key_not_found"
    case roleRemoved = "role_removed"
    /// Entra answers AADSTS700016: our application has no service principal in the tenant (consent
    /// withdrawn, or the service principal deleted). The customer consents again.
    case applicationRemoved = "application_removed"
    /// AADSTS7000112: the service principal is there but disabled ("Enabled for users to sign-in"
    /// set to No). The customer enables it again; consenting again would not help, which is why it
    /// is a reason of its own.
    case applicationDisabled = "application_disabled"
    /// AADSTS53003: a Conditional Access policy of the customer's blocks our token. The customer
    /// excludes our service principal from the policy.
    case conditionalAccess = "conditional_access"
}

/// What happened to a tenant: the inputs of the lifecycle state machine.
public enum TenantEvent: Hashable, Sendable {
    case validationSucceeded
    case activate
    /// The broker saw the customer's side refuse it.
    case accessLost(AccessLossReason)
    /// Access works again: a re-probe's round trip succeeded, or an operator's validation did.
    case accessRestored
    /// An operator stops serving the tenant.
    case suspend
    /// An operator lifts a suspension (after a successful validation, for a tenant that was activated).
    case restore
    case offboard

    /// The stable name recorded in the audit trail.
    public var name: String {
        switch self {
        case .validationSucceeded: "tenant.validated"
        case .activate: "tenant.activated"
        case .accessLost(let reason): "tenant.access_lost.\(reason.rawValue)"
        case .accessRestored: "tenant.access_restored"
        case .suspend: "tenant.suspended"
        case .restore: "tenant.restored"
        case .offboard: "tenant.offboarded"
        }
    }
}
