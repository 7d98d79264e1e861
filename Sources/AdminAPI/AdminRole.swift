/// The app roles of the admin API's Entra application, as they appear in the token's `roles` claim.
public enum AdminRole: String, CaseIterable, Hashable, Sendable, Codable {
    /// Register, validate, activate, change a tenant's key.
    case tenantsOnboard = "Tenants.Onboard"
    /// Suspend, restore, offboard.
    case tenantsSuspend = "Tenants.Suspend"
    /// Create, change and remove internal callers.
    case callersManage = "Callers.Manage"
    /// Read the audit trail.
    case auditRead = "Audit.Read"
    /// FIC slot work (the SRE operations).
    case slotsOperate = "Slots.Operate"
}
