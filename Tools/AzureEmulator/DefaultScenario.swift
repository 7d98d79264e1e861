import Foundation

/// The scenario `fedbroker-dev emulator` seeds: an ISV tenant with one multi-tenant application
/// trusting two user-assigned identities as its FICs (and holding Graph's
/// `Application.ReadWrite.OwnedBy`, so it manages them itself); two consented customer tenants, each
/// with a purge-protected vault holding an RSA-3072 wrapKey/unwrapKey key granted to the
/// application; and one key in the first vault with no role granted. In the ISV tenant also
/// the admin API's application (`fedbroker-admin`, five app roles) and its staff users
/// (DefaultScenario+Staff.swift).
public struct DefaultScenario: Sendable {
    public struct Customer: Sendable {
        public var tenantID: String
        public var vaultName: String
        public var vaultURL: String
        public var keyName: String
        public var servicePrincipalObjectID: String
    }

    public var isvTenantID: String
    public var appClientID: String
    public var appObjectID: String
    public var managedIdentities: [Directory.ManagedIdentity]
    public var customers: [Customer]
    public var ungrantedKeyName: String
    /// The admin API's application (appId) in the ISV tenant.
    public var adminAppID: String
    /// What staff request tokens for and the admin API expects as `aud`: `api://fedbroker-admin`.
    public var adminAudience: String
    /// Staff user name (`onboarder`, `suspender`, `caller-admin`, `auditor`, `sre`, `admin`,
    /// `nobody`) → the user's object id; `staffRoster` says which roles each holds.
    public var staffUserObjectIDs: [String: String]

    public static func seed(into state: EmulatorState) async throws -> DefaultScenario {
        let isv = try state.createTenant(displayName: "Fabrikam ISV", domain: "fabrikam.onmicrosoft.com")
        let app = try state.createApplication(homeTenantID: isv.id, displayName: "fabrikam-cmk")
        // What SRE slot jobs need: the application manages its own FICs through Graph.
        try state.updateGraphPermissions(appID: app.appId, grant: [GraphPermissions.applicationReadWriteOwnedBy])
        let staff = try seedStaff(into: state, isvTenantID: isv.id)
        var identities: [Directory.ManagedIdentity] = []
        for index in 1...2 {
            let mi = try state.createManagedIdentity(tenantID: isv.id, name: "fedbroker-fic-\(index)")
            try state.trust(identity: mi, appID: app.appId, name: "fedbroker-fic-\(index)")
            identities.append(mi)
        }
        var customers: [Customer] = []
        for (index, name) in ["Contoso", "Northwind"].enumerated() {
            let tenant = try state.createTenant(displayName: name)
            let sp = try state.createServicePrincipal(tenantID: tenant.id, appID: app.appId)
            let vaultName = "\(name.lowercased())-kv"
            let url = try await state.createVault(tenantID: tenant.id, name: vaultName, purgeProtection: true)
            var options = EmulatorState.KeyOptions()
            options.tags = ["customer": name.lowercased(), "purpose": "fedbroker-cmk"]
            try state.createKey(vault: vaultName, name: "cmk", options: options)
            try state.assignRole(vault: vaultName, principalID: sp.objectId, keyName: "cmk")
            customers.append(.init(tenantID: tenant.id, vaultName: vaultName, vaultURL: url, keyName: "cmk", servicePrincipalObjectID: sp.objectId))
            if index == 0 {
                try state.createKey(vault: vaultName, name: "cmk-ungranted")
            }
        }
        return DefaultScenario(
            isvTenantID: isv.id, appClientID: app.appId, appObjectID: app.objectId, managedIdentities: identities,
            customers: customers, ungrantedKeyName: "cmk-ungranted", adminAppID: staff.appID, adminAudience: adminAudienceURI,
            staffUserObjectIDs: staff.users)
    }

    /// Shell exports for the scenario (DIR/env.sh).
    public func environment(endpoints: EmulatorState.Endpoints, caBundlePath: String) -> [(String, String)] {
        var env: [(String, String)] = [
            ("FEDBROKER_EMU_IMDS_URL", endpoints.imds),
            ("FEDBROKER_EMU_AUTHORITY_URL", endpoints.authority),
            ("FEDBROKER_EMU_GRAPH_URL", endpoints.graph),
            ("FEDBROKER_EMU_CONTROL_URL", endpoints.control),
            ("FEDBROKER_EMU_CA_BUNDLE", caBundlePath),
            ("FEDBROKER_EMU_ISV_TENANT_ID", isvTenantID),
            ("FEDBROKER_EMU_APP_CLIENT_ID", appClientID),
            ("FEDBROKER_EMU_APP_OBJECT_ID", appObjectID),
            ("FEDBROKER_EMU_MI_CLIENT_IDS", managedIdentities.map(\.clientId).joined(separator: ",")),
            ("FEDBROKER_EMU_MI_PRINCIPAL_IDS", managedIdentities.map(\.principalId).joined(separator: ",")),
        ]
        // What the broker itself reads (AzureEnvironment), so anything started here talks to the emulator.
        env += [
            ("FEDBROKER_IMDS_URL", endpoints.imds), ("FEDBROKER_AUTHORITY_URL", endpoints.authority),
            ("FEDBROKER_GRAPH_URL", endpoints.graph), ("FEDBROKER_CA_BUNDLE", caBundlePath),
            ("FEDBROKER_APP_CLIENT_ID", appClientID),
            // Each emulated vault is https://localhost:PORT.
            ("FEDBROKER_VAULT_HOST_SUFFIXES", "localhost"),
        ]
        for (index, customer) in customers.enumerated() {
            env.append(("FEDBROKER_EMU_C\(index + 1)_TENANT_ID", customer.tenantID))
            env.append(("FEDBROKER_EMU_C\(index + 1)_VAULT_URL", customer.vaultURL))
            env.append(("FEDBROKER_EMU_C\(index + 1)_KEY_NAME", customer.keyName))
        }
        env.append(("FEDBROKER_EMU_C1_UNGRANTED_KEY_NAME", ungrantedKeyName))
        env.append(("FEDBROKER_EMU_ADMIN_APP_ID", adminAppID))
        env.append(("FEDBROKER_EMU_ADMIN_AUDIENCE", adminAudience))
        for (name, _) in Self.staffRoster {
            guard let objectID = staffUserObjectIDs[name] else { continue }
            env.append((Self.staffVariable(name), objectID))
        }
        return env
    }
}
