import Foundation
import Hummingbird

/// Control API for the admin API's side of the directory: staff users, app role assignments,
/// and the staff sign-in stand-in that hands a user an access token (docs/emulator.md).
extension ControlService {
    /// An app role as `POST /control/applications` takes it; all but `value` optional.
    struct AppRoleInput: Decodable {
        var id: String?
        var value: String
        var displayName: String?
        var description: String?
        var allowedMemberTypes: [String]?
        var isEnabled: Bool?

        var role: Directory.AppRole {
            Directory.AppRole(
                id: id, value: value, displayName: displayName, description: description ?? "",
                allowedMemberTypes: allowedMemberTypes ?? ["User"], isEnabled: isEnabled ?? true)
        }
    }

    static func addStaffRoutes(to api: RouterGroup<EmulatorRequestContext>, state: EmulatorState) {
        api.post("users") { request, context in
            struct Body: Decodable { var tenantId: String; var displayName: String; var userPrincipalName: String? }
            return try await handle {
                let b = try await request.decode(as: Body.self, context: context)
                let user = try state.createUser(tenantID: b.tenantId, displayName: b.displayName, userPrincipalName: b.userPrincipalName)
                return (201, userJSON(user))
            }
        }
        api.post("users/:objectId/token") { request, context in
            struct Body: Decodable { var resource: String; var lifetimeSeconds: Int64?; var issuedAtOffsetSeconds: Int64? }
            return try await handle {
                let user = try context.parameters.require("objectId")
                let b = try await request.decode(as: Body.self, context: context)
                let token = try await state.staffAccessToken(
                    userID: user, resource: b.resource, lifetimeSeconds: b.lifetimeSeconds,
                    issuedAtOffsetSeconds: b.issuedAtOffsetSeconds ?? 0)
                // The token endpoint's success body, so one parser serves both.
                return (200, .object([
                    ("token_type", "Bearer"), ("expires_in", .int(token.expiresIn)), ("ext_expires_in", .int(token.expiresIn)),
                    ("access_token", .string(token.accessToken)),
                ]))
            }
        }
        api.post("app-role-assignments") { request, context in
            struct Body: Decodable { var appId: String; var principalId: String; var role: String }
            return try await handle {
                let b = try await request.decode(as: Body.self, context: context)
                let assignment = try state.assignAppRole(appID: b.appId, principalID: b.principalId, role: b.role)
                return (201, state.read { appRoleAssignmentJSON(assignment, in: $0) })
            }
        }
        api.delete("app-role-assignments/:id") { _, context in
            try await handle {
                let id = try context.parameters.require("id")
                try state.removeAppRoleAssignment(id: id)
                return (200, .object([("removed", true)]))
            }
        }
    }

    static func applicationJSON(_ app: Directory.Application) -> JSONValue {
        .object([
            ("appId", .string(app.appId)), ("objectId", .string(app.objectId)), ("homeTenantId", .string(app.homeTenantId)),
            ("displayName", .string(app.displayName)), ("identifierUris", .strings(app.identifierUris)),
            ("graphPermissions", .strings(app.graphPermissions)),
            ("appRoles", .array(app.appRoles.map { role in
                .object([
                    ("id", .string(role.id)), ("value", .string(role.value)), ("displayName", .string(role.displayName)),
                    ("description", .string(role.description)), ("allowedMemberTypes", .strings(role.allowedMemberTypes)),
                    ("isEnabled", .bool(role.isEnabled)),
                ])
            })),
        ])
    }

    static func userJSON(_ user: Directory.User) -> JSONValue {
        .object([
            ("objectId", .string(user.objectId)), ("tenantId", .string(user.tenantId)),
            ("displayName", .string(user.displayName)), ("userPrincipalName", .string(user.userPrincipalName)),
        ])
    }

    static func appRoleAssignmentJSON(_ a: Directory.AppRoleAssignment, in dir: Directory) -> JSONValue {
        let role = dir.applications[a.appId]?.appRoles.first { $0.id == a.appRoleId }?.value
        return .object([
            ("id", .string(a.id)), ("appId", .string(a.appId)), ("principalId", .string(a.principalId)),
            ("appRoleId", .string(a.appRoleId)), ("role", .optional(role)),
        ])
    }
}
