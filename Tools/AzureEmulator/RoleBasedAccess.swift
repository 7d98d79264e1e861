import Foundation

/// Key Vault's RBAC decision for the data plane: which built-in roles grant which data
/// actions (WIRE.md §5), and whether a principal holds one at vault or key scope.
public enum RoleBasedAccess {
    public enum DataAction: String, Sendable, CaseIterable {
        case read = "Microsoft.KeyVault/vaults/keys/read"
        case wrap = "Microsoft.KeyVault/vaults/keys/wrap/action"
        case unwrap = "Microsoft.KeyVault/vaults/keys/unwrap/action"
        /// Update Key (attributes, key_ops, tags): the access-policy "keys/update" permission.
        case update = "Microsoft.KeyVault/vaults/keys/update/action"
    }

    public struct Role: Sendable {
        public var id: String
        public var name: String
        public var grants: Set<DataAction>
    }

    public static let cryptoServiceEncryptionUser = Role(
        id: "e147488a-f6f5-4113-8e2d-b22465e65bf6", name: "Key Vault Crypto Service Encryption User",
        grants: [.read, .wrap, .unwrap])
    public static let cryptoUser = Role(
        id: "12338af0-0e69-4776-bea7-57ae8d297424", name: "Key Vault Crypto User", grants: [.read, .update, .wrap, .unwrap])
    /// Officer (`keys/*`) and Administrator (`vaults/*`) hold every key data action.
    public static let cryptoOfficer = Role(
        id: "14b46e9e-c2b7-41b4-b07b-48a6ebf60603", name: "Key Vault Crypto Officer", grants: Set(DataAction.allCases))
    public static let administrator = Role(
        id: "00482a5a-887f-4fb3-b363-3b7fe8e74483", name: "Key Vault Administrator", grants: Set(DataAction.allCases))
    public static let reader = Role(id: "21090545-7ca7-4776-b22c-e363652d74d2", name: "Key Vault Reader", grants: [])

    public static let builtInRoles = [cryptoServiceEncryptionUser, cryptoUser, cryptoOfficer, administrator, reader]

    /// Looks a role up by its id or its display name (case-insensitive).
    public static func role(named idOrName: String) -> Role? {
        let needle = idOrName.lowercased()
        return builtInRoles.first { $0.id == needle || $0.name.lowercased() == needle }
    }

    /// The assignment that authorizes `action` on `keyName` for `principalID`, if any is in effect at `now`.
    public static func authorizingAssignment(
        principalID: String, action: DataAction, keyName: String,
        assignments: [Directory.RoleAssignment], now: Date
    ) -> Directory.RoleAssignment? {
        assignments.first { assignment in
            guard assignment.principalId.lowercased() == principalID.lowercased() else { return false }
            guard now >= assignment.effectiveFrom else { return false }
            if let removed = assignment.removedFrom, now >= removed { return false }
            if let scope = assignment.keyScope, scope.lowercased() != keyName.lowercased() { return false }
            guard let role = role(named: assignment.roleDefinitionId) else { return false }
            return role.grants.contains(action)
        }
    }
}
