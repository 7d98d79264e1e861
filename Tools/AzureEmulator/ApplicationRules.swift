import Foundation

/// What Entra (Graph) refuses in an application's `identifierUris` and `appRoles`, so a
/// scenario that would not register in a real tenant does not register here either.
enum ApplicationRules {
    static let memberTypes: Set<String> = ["User", "Application"]

    static func check(identifierUris: [String], appRoles: [Directory.AppRole]) throws {
        for uri in identifierUris {
            // Graph accepts api://, https://, http:// (localhost), urn: and ms-appx:// style URIs, never a bare word.
            guard !uri.isEmpty, !uri.contains(where: \.isWhitespace), uri.contains(":"), URL(string: uri)?.scheme != nil else {
                throw ScenarioError.invalid("Identifier URI '\(uri)' is not a valid URI (e.g. api://fedbroker-admin).")
            }
        }
        guard Set(identifierUris.map { $0.lowercased() }).count == identifierUris.count else {
            throw ScenarioError.invalid("identifierUris contains the same URI twice.")
        }
        for role in appRoles {
            guard !role.value.isEmpty, !role.value.contains(where: \.isWhitespace), !role.value.hasPrefix(".") else {
                throw ScenarioError.invalid("App role value '\(role.value)' is invalid: it cannot be empty, contain spaces or start with a dot.")
            }
            guard !role.allowedMemberTypes.isEmpty, role.allowedMemberTypes.allSatisfy(memberTypes.contains) else {
                throw ScenarioError.invalid("App role '\(role.value)': allowedMemberTypes must be 'User' and/or 'Application'.")
            }
            guard UUID(uuidString: role.id) != nil else { throw ScenarioError.invalid("App role '\(role.value)': id must be a GUID.") }
        }
        guard Set(appRoles.map(\.value)).count == appRoles.count else {
            throw ScenarioError.invalid("App role values must be unique within the application.")
        }
        guard Set(appRoles.map(\.id)).count == appRoles.count else {
            throw ScenarioError.invalid("App role ids must be unique within the application.")
        }
    }

    /// An identifier URI names one resource in the cloud: no other application and no
    /// first-party resource may already answer to it.
    static func checkUnique(identifierUris: [String], in dir: Directory) throws {
        for uri in identifierUris {
            let taken = dir.application(resource: uri) != nil
                || EntraService.knownResources.contains { $0.lowercased() == uri.lowercased() }
            if taken {
                throw ScenarioError.conflict("Another object with the same value for property identifierUris already exists: \(uri).")
            }
        }
    }
}
