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

/// What an operation asks of its caller.
public enum AdminRequirement: Hashable, Sendable, CustomStringConvertible {
    /// Health probes: no token.
    case none
    /// Any staff member holding at least one of the admin API's app roles (reading tenants and
    /// callers). A bare token of the ISV's tenant is not enough: without "assignment required"
    /// on the application, every user of the tenant can get one.
    case anyStaff
    case role(AdminRole)

    /// Each operation of the OpenAPI document (by operationId) and what it requires. The
    /// document's `x-fedbroker-role` says the same, and a test holds the two together. An
    /// operation missing here is refused to everyone: a new route is closed until it is listed.
    public static let byOperation: [String: AdminRequirement] = [
        "livez": .none, "readyz": .none,
        "registerTenant": .role(.tenantsOnboard), "listTenants": .anyStaff, "getTenant": .anyStaff,
        "validateTenant": .role(.tenantsOnboard), "activateTenant": .role(.tenantsOnboard),
        "setTenantKey": .role(.tenantsOnboard),
        "suspendTenant": .role(.tenantsSuspend), "restoreTenant": .role(.tenantsSuspend),
        "offboardTenant": .role(.tenantsSuspend),
        "createCaller": .role(.callersManage), "listCallers": .anyStaff, "getCaller": .anyStaff,
        "updateCaller": .role(.callersManage), "deleteCaller": .role(.callersManage),
        "queryAudit": .role(.auditRead),
    ]

    /// The value `x-fedbroker-role` carries in the document.
    public var description: String {
        switch self {
        case .none: "none"
        case .anyStaff: "any"
        case .role(let role): role.rawValue
        }
    }
}

/// The staff member behind a request, from their validated token (or the local socket).
public struct StaffPrincipal: Hashable, Sendable {
    /// The user's object id in the ISV's tenant (`oid`).
    public var objectID: String
    /// Their display name (`name`), bounded and stripped of control characters.
    public var name: String
    public var roles: Set<AdminRole>

    public init(objectID: String, name: String, roles: Set<AdminRole>) {
        self.objectID = objectID
        self.name = name
        self.roles = roles
    }

    /// How admin actions name this person in the audit trail.
    public var auditActor: String { "staff:\(self.objectID) (\(self.name))" }

    public func satisfies(_ requirement: AdminRequirement) -> Bool {
        switch requirement {
        case .none: true
        case .anyStaff: !self.roles.isEmpty
        case .role(let role): self.roles.contains(role)
        }
    }

    /// The principal of the request being handled (set by the authentication middleware).
    @TaskLocal public static var current: StaffPrincipal?
}
