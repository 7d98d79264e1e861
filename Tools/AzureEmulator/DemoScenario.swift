import Foundation

/// The scenario `fedbroker-dev demo` seeds: the state of an ISV on its first day, before any
/// SRE or onboarding work, so that the demo's steps are the ones people really take.
///
/// - The ISV tenant, its multi-tenant application (allowed to manage its own FICs through Graph),
///   the admin API's application and staff (as in `DefaultScenario`).
/// - One managed identity already trusted as a FIC of the application: the bootstrap slot, the
///   one credential that must be created out of band (docs/slots.md).
/// - Three more managed identities the ISV's Terraform created and nothing trusts yet: two for
///   the SRE's `slot add`, one for the rotation.
/// - Two customer tenants, each with a purge-protected vault and an RSA-3072 wrap/unwrap key, and
///   nothing else: no consent, no role, no binding tag. The demo plays each customer's admin
///   through the control API.
public struct DemoScenario: Sendable {
    public struct Customer: Sendable {
        public var displayName: String
        public var tenantID: String
        public var vaultName: String
        public var vaultURL: String
        public var keyName: String
    }

    public var isvTenantID: String
    public var appClientID: String
    public var appObjectID: String
    public var bootstrapIdentity: Directory.ManagedIdentity
    /// Identities for `slot add` (the first two) and for the rotation (the third).
    public var spareIdentities: [Directory.ManagedIdentity]
    public var customers: [Customer]
    public var adminAudience: String
    /// Staff user name → object id (`DefaultScenario.staffRoster`).
    public var staffUserObjectIDs: [String: String]

    public static func seed(into state: EmulatorState) async throws -> DemoScenario {
        let isv = try state.createTenant(displayName: "Fabrikam ISV", domain: "fabrikam.onmicrosoft.com")
        let app = try state.createApplication(homeTenantID: isv.id, displayName: "fabrikam-cmk")
        try state.updateGraphPermissions(appID: app.appId, grant: [GraphPermissions.applicationReadWriteOwnedBy])
        let staff = try DefaultScenario.seedStaff(into: state, isvTenantID: isv.id)
        let bootstrap = try state.createManagedIdentity(tenantID: isv.id, name: "fedbroker-fic-1")
        _ = try state.trust(identity: bootstrap, appID: app.appId, name: "fedbroker-fic-1")
        var spares: [Directory.ManagedIdentity] = []
        for index in 2...4 {
            spares.append(try state.createManagedIdentity(tenantID: isv.id, name: "fedbroker-fic-\(index)"))
        }
        var customers: [Customer] = []
        for name in ["Contoso", "Northwind"] {
            let tenant = try state.createTenant(displayName: name)
            let vaultName = "\(name.lowercased())-kv"
            let url = try await state.createVault(tenantID: tenant.id, name: vaultName, purgeProtection: true)
            try state.createKey(vault: vaultName, name: "cmk")
            customers.append(.init(displayName: name, tenantID: tenant.id, vaultName: vaultName, vaultURL: url, keyName: "cmk"))
        }
        return DemoScenario(
            isvTenantID: isv.id, appClientID: app.appId, appObjectID: app.objectId, bootstrapIdentity: bootstrap,
            spareIdentities: spares, customers: customers, adminAudience: DefaultScenario.adminAudienceURI,
            staffUserObjectIDs: staff.users)
    }
}
