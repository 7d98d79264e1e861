import Foundation

extension EmulatorState {
    /// Grants and revokes Microsoft Graph application permissions of an application (an
    /// administrator's consent in its home tenant). Tokens issued afterwards carry the new set in
    /// `roles`; tokens already issued keep theirs until they expire, as in Entra.
    /// - Returns: the permissions the application holds now, sorted.
    @discardableResult
    public func updateGraphPermissions(appID: String, grant: [String] = [], revoke: [String] = []) throws -> [String] {
        for permission in grant + revoke where !GraphPermissions.known.contains(permission) {
            throw ScenarioError.invalid(
                "Unknown Graph permission '\(permission)'; known: \(GraphPermissions.known.sorted().joined(separator: ", ")).")
        }
        return try mutate { dir in
            guard let key = dir.applicationKey(for: appID) else { throw ScenarioError.notFound("Application \(appID)") }
            var permissions = Set(dir.applications[key]!.graphPermissions)
            permissions.formUnion(grant)
            permissions.subtract(revoke)
            dir.applications[key]!.graphPermissions = permissions.sorted()
            return permissions.sorted()
        }
    }
}
