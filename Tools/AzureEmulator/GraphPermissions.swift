import Foundation

/// The Microsoft Graph application permissions the emulator models: those that decide who may
/// manage an application's federated identity credentials. Graph checks the `roles` of the
/// caller's app-only token, so a grant or revocation affects tokens issued afterwards, as in Entra.
public enum GraphPermissions {
    /// Manage the applications the caller owns; the emulator counts an application as owning itself.
    public static let applicationReadWriteOwnedBy = "Application.ReadWrite.OwnedBy"
    /// Manage every application in the tenant.
    public static let applicationReadWriteAll = "Application.ReadWrite.All"
    /// Read every application; manages nothing.
    public static let applicationReadAll = "Application.Read.All"

    /// What the control API accepts.
    public static let known: Set<String> = [applicationReadWriteOwnedBy, applicationReadWriteAll, applicationReadAll]

    /// May the caller (an application, by appId, with the `roles` of its token for the target's tenant)
    /// manage the credentials of `target`? `.All` covers any application of the caller's tenant;
    /// `.OwnedBy` the application itself.
    static func mayManageCredentials(callerAppID: String?, roles: [String], target: Directory.Application) -> Bool {
        if roles.contains(applicationReadWriteAll) { return true }
        guard let callerAppID, callerAppID.lowercased() == target.appId.lowercased() else { return false }
        return roles.contains(applicationReadWriteOwnedBy)
    }
}
