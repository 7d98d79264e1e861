import Foundation

/// Scripting the ISV's staff: users and their app role assignments on an application (the
/// admin API's). Behind the control API's `/control/users` and `/control/app-role-assignments`.
extension EmulatorState {
    /// A user in a tenant. Without a UPN, one is made from the display name and the tenant's
    /// domain (`onboarder@fabrikam.onmicrosoft.com`).
    @discardableResult
    public func createUser(tenantID: String, displayName: String, userPrincipalName: String? = nil) throws -> Directory.User {
        guard !displayName.trimmingCharacters(in: .whitespaces).isEmpty else { throw ScenarioError.invalid("displayName is required.") }
        return try mutate { dir in
            guard let tenant = dir.tenant(named: tenantID) else { throw ScenarioError.notFound("Tenant \(tenantID)") }
            let upn = userPrincipalName ?? "\(Self.mailNickname(displayName))@\(tenant.domain)"
            let parts = upn.split(separator: "@", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, !upn.contains(where: \.isWhitespace) else {
                throw ScenarioError.invalid("userPrincipalName '\(upn)' is not of the form alias@domain.")
            }
            guard !dir.users.values.contains(where: { $0.userPrincipalName.lowercased() == upn.lowercased() }) else {
                throw ScenarioError.conflict("Another object with the same value for property userPrincipalName already exists: \(upn).")
            }
            let user = Directory.User(objectId: newGUID(), tenantId: tenant.id, displayName: displayName, userPrincipalName: upn)
            dir.users[user.objectId] = user
            return user
        }
    }

    /// Assigns the app role whose `value` is `role` on application `appID` (appId or object id)
    /// to user `principalID`. The assignment lives on the application's service principal in
    /// the user's tenant, as in Entra, so that service principal must exist.
    @discardableResult
    public func assignAppRole(appID: String, principalID: String, role: String) throws -> Directory.AppRoleAssignment {
        try mutate { dir in
            guard let key = dir.applicationKey(for: appID), let app = dir.applications[key] else {
                throw ScenarioError.notFound("Application \(appID)")
            }
            guard let user = dir.user(principalID) else { throw ScenarioError.notFound("User \(principalID)") }
            guard let appRole = app.appRoles.first(where: { $0.value == role }) else {
                let known = app.appRoles.map(\.value).joined(separator: ", ")
                throw ScenarioError.invalid("Application \(app.displayName) has no app role '\(role)' (it has: \(known.isEmpty ? "none" : known)).")
            }
            guard appRole.isEnabled else { throw ScenarioError.invalid("App role '\(role)' is disabled and cannot be assigned.") }
            guard appRole.allowedMemberTypes.contains("User") else {
                throw ScenarioError.invalid("App role '\(role)' does not allow member type 'User'.")
            }
            guard dir.servicePrincipal(appID: app.appId, tenantID: user.tenantId) != nil else {
                throw ScenarioError.notFound("Service principal of \(app.appId) in tenant \(user.tenantId)")
            }
            guard !dir.appRoleAssignments.contains(where: {
                $0.appId == app.appId && $0.principalId == user.objectId && $0.appRoleId == appRole.id
            }) else {
                throw ScenarioError.conflict("Permission being assigned already exists on the object.")
            }
            let assignment = Directory.AppRoleAssignment(id: newGUID(), appId: app.appId, principalId: user.objectId, appRoleId: appRole.id)
            dir.appRoleAssignments.append(assignment)
            return assignment
        }
    }

    /// Removes an app role assignment; tokens issued afterwards no longer carry the role.
    public func removeAppRoleAssignment(id: String) throws {
        try mutate { dir in
            guard let index = dir.appRoleAssignments.firstIndex(where: { $0.id == id.lowercased() }) else {
                throw ScenarioError.notFound("App role assignment \(id)")
            }
            dir.appRoleAssignments.remove(at: index)
        }
    }

    /// "Olivia Onboarder" → "olivia.onboarder": the alias part of a generated UPN.
    static func mailNickname(_ displayName: String) -> String {
        let words = displayName.lowercased().split(whereSeparator: \.isWhitespace)
        let alias = words.map { $0.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" } }.filter { !$0.isEmpty }
        return alias.isEmpty ? "user" : alias.joined(separator: ".")
    }
}
