import Foundation

/// Everything the emulated cloud knows: tenants, the ISV's application and its federated
/// credentials, service principals (consent), managed identities, staff users and their app
/// roles, vaults, keys and role assignments. A plain value: the HTTP services read and change
/// it under one lock, and the whole of it is what `--state-dir` persists.
public struct Directory: Codable, Sendable {
    public var tenants: [String: Tenant] = [:]
    public var applications: [String: Application] = [:]  // by appId
    public var servicePrincipals: [ServicePrincipal] = []
    public var managedIdentities: [String: ManagedIdentity] = [:]  // by clientId
    public var users: [String: User] = [:]  // by objectId
    public var appRoleAssignments: [AppRoleAssignment] = []
    public var vaults: [String: Vault] = [:]  // by lowercased name
    /// "tenantId|appId" pairs whose token requests a Conditional Access policy blocks (AADSTS53003).
    public var conditionalAccessBlocks: Set<String> = []
    /// Issuers outside Entra (AKS OIDC issuers, say) that FICs may name, with their public keys.
    public var externalIssuers: [String: ExternalIssuer] = [:]
    public var settings = Settings()
    /// Ports the fixed listeners bound last time (imds, entra, graph, control), reused on restart.
    public var listenerPorts: [String: Int] = [:]

    public init() {}

    public struct Settings: Codable, Sendable {
        /// How long a FIC created or deleted through Graph takes to affect token exchange.
        public var ficPropagationSeconds: Double = 0
        /// Lifetime of managed-identity tokens from IMDS (the platform's is about 24 h).
        public var managedIdentityTokenLifetimeSeconds: Int64 = 86_400
        /// Lifetime of access tokens from the token endpoint ("about an hour").
        public var accessTokenLifetimeSeconds: Int64 = 3_600
        /// IMDS identity-category limits (per VM).
        public var imdsRequestsPerSecond: Int = 20
        public var imdsMaxConcurrent: Int = 5
        public init() {}
    }

    public struct Tenant: Codable, Sendable {
        public var id: String
        public var displayName: String
        /// The tenant's initial domain (`contoso.onmicrosoft.com`); the token endpoint accepts it in place of the id.
        public var domain: String
    }

    public struct Application: Codable, Sendable {
        public var appId: String
        public var objectId: String
        public var homeTenantId: String
        public var displayName: String
        public var federatedCredentials: [FederatedCredential] = []
        /// Application ID URIs (`api://fedbroker-admin`): what a client names as the resource.
        public var identifierUris: [String] = []
        /// The roles the application defines; assignments put their `value`s in `roles`.
        public var appRoles: [AppRole] = []
        /// Graph's `api.requestedAccessTokenVersion`: nil or 1 (an app registration's default)
        /// gets v1.0 access tokens (`aud` as requested, `sts.windows.net` issuer, `appid`); 2 gets
        /// v2.0 ones (`aud` = the appId, the v2.0 issuer, `azp`).
        public var requestedAccessTokenVersion: Int?
        /// Microsoft Graph application permissions granted (admin-consented) to the application in
        /// its home tenant, e.g. `Application.ReadWrite.OwnedBy`: Graph tokens it obtains there
        /// carry them in `roles`, and Graph's FIC endpoints require one that allows managing
        /// credentials (`GraphPermissions.mayManageCredentials`).
        public var graphPermissions: [String] = []
    }

    public struct FederatedCredential: Codable, Sendable {
        public var id: String
        public var name: String
        public var issuer: String
        public var subject: String
        public var audiences: [String]
        public var description: String?
        /// From when token exchange sees the credential (creation time + propagation delay).
        public var effectiveFrom: Date
        /// Set when deleted: until then token exchange still sees it (propagation of the delete).
        public var removedFrom: Date?
    }

    public struct ServicePrincipal: Codable, Sendable {
        public var objectId: String
        public var appId: String
        public var tenantId: String
        /// Graph's `accountEnabled`: false when the tenant's admin disabled the application
        /// ("Enabled for users to sign-in: No"); its token requests then fail with AADSTS7000112.
        /// Nil (a state file written before this field) is enabled.
        public var accountEnabled: Bool?

        public init(objectId: String, appId: String, tenantId: String, accountEnabled: Bool? = nil) {
            self.objectId = objectId
            self.appId = appId
            self.tenantId = tenantId
            self.accountEnabled = accountEnabled
        }

        public var isEnabled: Bool { accountEnabled ?? true }
    }

    public struct ManagedIdentity: Codable, Sendable {
        public var clientId: String
        public var principalId: String
        public var tenantId: String
        public var name: String
        public var resourceId: String
        /// Attached to the emulated VM, so IMDS serves it.
        public var attached: Bool
        /// The identity's own FICs (AKS workload identity: the cluster's OIDC issuer and a
        /// service account), with which a token from that issuer is exchanged for the identity's
        /// token at the token endpoint.
        public var federatedCredentials: [FederatedCredential] = []
    }

    public struct ExternalIssuer: Codable, Sendable {
        public var issuer: String
        /// A JWKS document (`{"keys":[…]}`) with the issuer's RS256 public keys.
        public var jwks: String
    }

    public struct Vault: Codable, Sendable {
        public var name: String
        public var tenantId: String
        public var region: String
        public var subscriptionId: String
        public var resourceGroup: String
        public var purgeProtection: Bool
        public var softDeleteRetentionDays: Int
        /// Transactions allowed per window (weighted budget; the RSA-3072 software-key limit by default).
        public var budget: Int
        public var budgetWindowSeconds: Int
        /// The loopback port the vault listens on; kept so a restart can rebind it.
        public var port: Int?
        public var keys: [String: Key] = [:]  // by lowercased name
        public var roleAssignments: [RoleAssignment] = []

        /// The ARM resource id, as the RBAC error quotes it.
        public var resourceID: String {
            "/subscriptions/\(subscriptionId)/resourcegroups/\(resourceGroup)/providers/microsoft.keyvault/vaults/\(name)"
        }

        /// `recoveryLevel` as Key Vault reports it: no `Purgeable` suffix ⇔ purge protection on.
        public var recoveryLevel: String {
            let base = softDeleteRetentionDays >= 90 ? "Recoverable" : "CustomizedRecoverable"
            return purgeProtection ? base : base + "+Purgeable"
        }
    }

    public struct Key: Codable, Sendable {
        public var name: String
        public var versions: [KeyVersion]  // oldest first; the last is the current version
        public var tags: [String: String] = [:]

        public var latest: KeyVersion? { versions.last }

        public func version(_ id: String) -> KeyVersion? {
            versions.first { $0.version == id.lowercased() }
        }
    }

    public struct KeyVersion: Codable, Sendable {
        public var version: String
        /// PKCS#1 DER of the RSA private key. Test material only: the emulator stands in for an HSM.
        public var privateKeyDER: Data
        public var keySize: Int
        public var keyOps: [String]
        public var enabled: Bool
        public var notBefore: Int64?
        public var expires: Int64?
        public var created: Int64
        public var updated: Int64
    }

    public struct RoleAssignment: Codable, Sendable {
        public var id: String
        public var principalId: String
        public var roleDefinitionId: String
        /// nil: the whole vault; otherwise the key name the assignment is scoped to.
        public var keyScope: String?
        public var effectiveFrom: Date
        public var removedFrom: Date?
    }
}

extension Directory {
    /// Finds a tenant by id or by its domain name (case-insensitive, as Entra does).
    public func tenant(named nameOrID: String) -> Tenant? {
        let needle = nameOrID.lowercased()
        return tenants.values.first { $0.id.lowercased() == needle || $0.domain.lowercased() == needle }
    }

    public func servicePrincipal(appID: String, tenantID: String) -> ServicePrincipal? {
        servicePrincipals.first { $0.appId.lowercased() == appID.lowercased() && $0.tenantId == tenantID }
    }

    /// The application by appId or by its object id (Graph addresses applications by object id).
    public func applicationKey(for id: String) -> String? {
        let needle = id.lowercased()
        return applications.first { $0.value.appId.lowercased() == needle || $0.value.objectId.lowercased() == needle }?.key
    }
}

extension Directory {
    /// Decodes a state file written by an older emulator too: collections added since then
    /// (users, app role assignments) start empty instead of failing the restart with CorruptState.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        tenants = try c.decodeIfPresent([String: Tenant].self, forKey: .tenants) ?? [:]
        applications = try c.decodeIfPresent([String: Application].self, forKey: .applications) ?? [:]
        servicePrincipals = try c.decodeIfPresent([ServicePrincipal].self, forKey: .servicePrincipals) ?? []
        managedIdentities = try c.decodeIfPresent([String: ManagedIdentity].self, forKey: .managedIdentities) ?? [:]
        users = try c.decodeIfPresent([String: User].self, forKey: .users) ?? [:]
        appRoleAssignments = try c.decodeIfPresent([AppRoleAssignment].self, forKey: .appRoleAssignments) ?? []
        vaults = try c.decodeIfPresent([String: Vault].self, forKey: .vaults) ?? [:]
        conditionalAccessBlocks = try c.decodeIfPresent(Set<String>.self, forKey: .conditionalAccessBlocks) ?? []
        externalIssuers = try c.decodeIfPresent([String: ExternalIssuer].self, forKey: .externalIssuers) ?? [:]
        settings = try c.decodeIfPresent(Settings.self, forKey: .settings) ?? Settings()
        listenerPorts = try c.decodeIfPresent([String: Int].self, forKey: .listenerPorts) ?? [:]
    }
}

extension Directory.ManagedIdentity {
    /// As `Directory.init(from:)`: identities persisted before they had FICs load with none.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        clientId = try c.decode(String.self, forKey: .clientId)
        principalId = try c.decode(String.self, forKey: .principalId)
        tenantId = try c.decode(String.self, forKey: .tenantId)
        name = try c.decode(String.self, forKey: .name)
        resourceId = try c.decode(String.self, forKey: .resourceId)
        attached = try c.decode(Bool.self, forKey: .attached)
        federatedCredentials = try c.decodeIfPresent([Directory.FederatedCredential].self, forKey: .federatedCredentials) ?? []
    }
}

extension Directory.Application {
    /// As `Directory.init(from:)`: applications persisted before identifier URIs, app roles and
    /// Graph permissions existed load with none.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        appId = try c.decode(String.self, forKey: .appId)
        objectId = try c.decode(String.self, forKey: .objectId)
        homeTenantId = try c.decode(String.self, forKey: .homeTenantId)
        displayName = try c.decode(String.self, forKey: .displayName)
        federatedCredentials = try c.decodeIfPresent([Directory.FederatedCredential].self, forKey: .federatedCredentials) ?? []
        identifierUris = try c.decodeIfPresent([String].self, forKey: .identifierUris) ?? []
        appRoles = try c.decodeIfPresent([Directory.AppRole].self, forKey: .appRoles) ?? []
        requestedAccessTokenVersion = try c.decodeIfPresent(Int.self, forKey: .requestedAccessTokenVersion)
        graphPermissions = try c.decodeIfPresent([String].self, forKey: .graphPermissions) ?? []
    }
}
