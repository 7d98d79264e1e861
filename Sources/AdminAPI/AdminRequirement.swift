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
        "listSlots": .anyStaff, "getSlot": .anyStaff, "listSlotJobs": .anyStaff, "getSlotJob": .anyStaff,
        "addSlot": .role(.slotsOperate), "drainSlot": .role(.slotsOperate), "retireSlot": .role(.slotsOperate),
        "rotateSlot": .role(.slotsOperate),
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
