import Foundation

/// The directory objects behind staff sign-in to the admin API: users, the app roles an
/// application defines, and the assignments of those roles to users. Entra puts the `value`s
/// of a user's assigned roles in the `roles` claim of tokens issued for that application.
extension Directory {
    public struct User: Codable, Sendable {
        public var objectId: String
        public var tenantId: String
        public var displayName: String
        public var userPrincipalName: String
    }

    /// One entry of an application's `appRoles` (Graph's `appRole` resource).
    public struct AppRole: Codable, Sendable {
        public var id: String
        /// What the `roles` claim carries (`Tenants.Onboard`).
        public var value: String
        public var displayName: String
        public var description: String
        /// `User`, `Application` or both; only roles allowing `User` can go to a user.
        public var allowedMemberTypes: [String]
        /// A disabled role stays defined but is left out of tokens.
        public var isEnabled: Bool

        public init(
            id: String? = nil, value: String, displayName: String? = nil, description: String = "",
            allowedMemberTypes: [String] = ["User"], isEnabled: Bool = true
        ) {
            self.id = (id ?? newGUID()).lowercased()
            self.value = value
            self.displayName = displayName ?? value
            self.description = description
            self.allowedMemberTypes = allowedMemberTypes
            self.isEnabled = isEnabled
        }
    }

    /// A user holding one app role of one application (Graph's `appRoleAssignment`, whose
    /// resource is the application's service principal in the user's tenant).
    public struct AppRoleAssignment: Codable, Sendable {
        public var id: String
        public var appId: String
        public var principalId: String
        public var appRoleId: String
    }
}

extension Directory {
    public func user(_ objectID: String) -> User? { users[objectID.lowercased()] }

    /// The application a client names as the resource: one of its identifier URIs
    /// (case-insensitive, as Entra compares them) or its appId.
    public func application(resource: String) -> Application? {
        let needle = resource.lowercased()
        return applications.values.first { app in
            app.appId == needle || app.identifierUris.contains { $0.lowercased() == needle }
        }
    }

    /// The enabled role values `userID` holds on `appID`, sorted: what the `roles` claim lists.
    public func roleValues(userID: String, appID: String) -> [String] {
        guard let app = applications[appID.lowercased()] else { return [] }
        let held = Set(appRoleAssignments.filter { $0.appId == app.appId && $0.principalId == userID.lowercased() }.map(\.appRoleId))
        return app.appRoles.filter { $0.isEnabled && held.contains($0.id) }.map(\.value).sorted()
    }
}
