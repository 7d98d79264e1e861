import Foundation

/// The admin API's side of the default scenario: the `fedbroker-admin` application in the ISV
/// tenant, exposing `api://fedbroker-admin` with the five app roles the admin API authorizes
/// by, and one staff user per role (plus `admin` with all five and `nobody` with none), so a
/// test or the demo can get a token for any authorization case with one control-API call.
extension DefaultScenario {
    public static let adminAppName = "fedbroker-admin"
    public static let adminAudienceURI = "api://fedbroker-admin"

    /// The admin API's app roles: value and description.
    public static let adminRoles: [(value: String, description: String)] = [
        ("Tenants.Onboard", "Register, validate and activate a customer's key."),
        ("Tenants.Suspend", "Suspend, resume and offboard customers."),
        ("Callers.Manage", "Manage the internal services allowed to call the broker."),
        ("Audit.Read", "Read the audit log."),
        ("Slots.Operate", "Add, drain, retire and rotate federated identity credential slots."),
    ]

    /// Staff users in roster order, with the role values each holds.
    public static let staffRoster: [(name: String, roles: [String])] = [
        ("onboarder", ["Tenants.Onboard"]),
        ("suspender", ["Tenants.Suspend"]),
        ("caller-admin", ["Callers.Manage"]),
        ("auditor", ["Audit.Read"]),
        ("sre", ["Slots.Operate"]),
        ("admin", adminRoles.map(\.value)),
        ("nobody", []),
    ]

    /// `FEDBROKER_EMU_STAFF_CALLER_ADMIN_OID` for `caller-admin`.
    public static func staffVariable(_ name: String) -> String {
        "FEDBROKER_EMU_STAFF_\(name.uppercased().replacingOccurrences(of: "-", with: "_"))_OID"
    }

    /// Creates the admin application and the staff, with their role assignments.
    static func seedStaff(into state: EmulatorState, isvTenantID: String) throws -> (appID: String, users: [String: String]) {
        let roles = adminRoles.map { Directory.AppRole(value: $0.value, displayName: $0.value, description: $0.description) }
        let app = try state.createApplication(
            homeTenantID: isvTenantID, displayName: adminAppName, identifierUris: [adminAudienceURI], appRoles: roles)
        var users: [String: String] = [:]
        for (name, held) in staffRoster {
            let user = try state.createUser(tenantID: isvTenantID, displayName: name)
            for role in held { try state.assignAppRole(appID: app.appId, principalID: user.objectId, role: role) }
            users[name] = user.objectId
        }
        return (app.appId, users)
    }

    /// After a restart from a state dir: the staff as persisted, or seeded now when the state
    /// was written by an emulator that had none.
    static func recoverStaff(from state: EmulatorState, isvTenantID: String) throws -> (appID: String, users: [String: String]) {
        let found = state.read { dir -> (String, [String: String])? in
            guard let app = dir.applications.values.first(where: { $0.displayName == adminAppName && $0.homeTenantId == isvTenantID })
            else { return nil }
            let domain = dir.tenants[isvTenantID]?.domain.lowercased() ?? ""
            var users: [String: String] = [:]
            for (name, _) in staffRoster {
                let upn = "\(name)@\(domain)"
                if let user = dir.users.values.first(where: { $0.userPrincipalName.lowercased() == upn }) { users[name] = user.objectId }
            }
            return (app.appId, users)
        }
        if let found { return found }
        return try seedStaff(into: state, isvTenantID: isvTenantID)
    }
}
