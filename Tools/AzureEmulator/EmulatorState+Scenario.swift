import Crypto
import CryptoExtras
import FedBrokerCore
import Foundation
import Synchronization

/// A failure of a scripted change (control API or Swift): a stable code, an HTTP status and a message.
public struct ScenarioError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String

    public init(status: Int, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    static func notFound(_ what: String) -> Self { .init(status: 404, code: "NotFound", message: "\(what) does not exist.") }
    static func invalid(_ message: String) -> Self { .init(status: 400, code: "InvalidInput", message: message) }
    static func conflict(_ message: String) -> Self { .init(status: 409, code: "Conflict", message: message) }
}

/// Starts a listener for a vault and returns the port it bound. Supplied by `AzureEmulator`.
typealias VaultListenerLauncher = @Sendable (_ vaultName: String, _ portHint: Int?) async throws -> Int

/// Scripting the emulated cloud: the operations behind the control API, usable from Swift too.
extension EmulatorState {
    public struct KeyOptions: Sendable {
        public var size: Int = 3072
        public var keyOps: [String] = ["wrapKey", "unwrapKey"]
        public var enabled: Bool = true
        public var notBefore: Int64?
        public var expires: Int64?
        public var tags: [String: String] = [:]
        public init() {}
    }

    @discardableResult
    public func createTenant(displayName: String, id: String? = nil, domain: String? = nil) throws -> Directory.Tenant {
        let tenantID = (id ?? newGUID()).lowercased()
        let slug = displayName.lowercased().filter { $0.isLetter || $0.isNumber }
        let tenant = Directory.Tenant(
            id: tenantID, displayName: displayName, domain: domain ?? "\(slug.isEmpty ? "tenant" : slug).onmicrosoft.com")
        try mutate { dir in
            guard dir.tenants[tenantID] == nil else { throw ScenarioError.conflict("Tenant \(tenantID) already exists.") }
            dir.tenants[tenantID] = tenant
        }
        return tenant
    }

    /// A multi-tenant application, optionally exposing an API: `identifierUris` name it as a
    /// resource, `appRoles` are what staff tokens for it carry in `roles`.
    @discardableResult
    public func createApplication(
        homeTenantID: String, displayName: String, appID: String? = nil, identifierUris: [String] = [],
        appRoles: [Directory.AppRole] = [], requestedAccessTokenVersion: Int? = nil
    ) throws -> Directory.Application {
        try ApplicationRules.check(identifierUris: identifierUris, appRoles: appRoles)
        guard [nil, 1, 2].contains(requestedAccessTokenVersion) else {
            throw ScenarioError.invalid("requestedAccessTokenVersion must be 1 or 2.")
        }
        let app = Directory.Application(
            appId: (appID ?? newGUID()).lowercased(), objectId: newGUID(), homeTenantId: homeTenantID.lowercased(),
            displayName: displayName, identifierUris: identifierUris, appRoles: appRoles,
            requestedAccessTokenVersion: requestedAccessTokenVersion)
        try mutate { dir in
            guard dir.tenants[app.homeTenantId] != nil else { throw ScenarioError.notFound("Tenant \(homeTenantID)") }
            guard dir.applications[app.appId] == nil else { throw ScenarioError.conflict("Application \(app.appId) already exists.") }
            try ApplicationRules.checkUnique(identifierUris: identifierUris, in: dir)
            dir.applications[app.appId] = app
            // The home tenant always has the application's own service principal.
            dir.servicePrincipals.append(.init(objectId: newGUID(), appId: app.appId, tenantId: app.homeTenantId))
        }
        return app
    }

    /// Consent: the application gets a service principal in the tenant.
    @discardableResult
    public func createServicePrincipal(tenantID: String, appID: String) throws -> Directory.ServicePrincipal {
        let tenantID = tenantID.lowercased()
        return try mutate { dir in
            guard dir.tenants[tenantID] != nil else { throw ScenarioError.notFound("Tenant \(tenantID)") }
            guard let key = dir.applicationKey(for: appID) else { throw ScenarioError.notFound("Application \(appID)") }
            if let existing = dir.servicePrincipal(appID: key, tenantID: tenantID) { return existing }
            let sp = Directory.ServicePrincipal(objectId: newGUID(), appId: key, tenantId: tenantID)
            dir.servicePrincipals.append(sp)
            return sp
        }
    }

    /// The customer's admin disables the application in their tenant (its service principal's
    /// `accountEnabled`), or enables it again: AADSTS7000112 while disabled.
    public func setServicePrincipalEnabled(tenantID: String, appID: String, enabled: Bool) throws {
        try mutate { dir in
            guard let index = dir.servicePrincipals.firstIndex(where: { $0.tenantId == tenantID.lowercased() && $0.appId == appID.lowercased() })
            else { throw ScenarioError.notFound("Service principal of \(appID) in \(tenantID)") }
            dir.servicePrincipals[index].accountEnabled = enabled
        }
    }

    /// The customer removes the application from their tenant.
    public func deleteServicePrincipal(tenantID: String, appID: String) throws {
        try mutate { dir in
            let before = dir.servicePrincipals.count
            dir.servicePrincipals.removeAll { $0.tenantId == tenantID.lowercased() && $0.appId == appID.lowercased() }
            guard dir.servicePrincipals.count != before else { throw ScenarioError.notFound("Service principal of \(appID) in \(tenantID)") }
        }
    }

    @discardableResult
    public func createManagedIdentity(tenantID: String, name: String, attached: Bool = true) throws -> Directory.ManagedIdentity {
        let identity = Directory.ManagedIdentity(
            clientId: newGUID(), principalId: newGUID(), tenantId: tenantID.lowercased(), name: name,
            resourceId: "/subscriptions/\(Self.subscriptionID)/resourcegroups/fedbroker/providers/Microsoft.ManagedIdentity/userAssignedIdentities/\(name)",
            attached: attached)
        try mutate { dir in
            guard dir.tenants[identity.tenantId] != nil else { throw ScenarioError.notFound("Tenant \(tenantID)") }
            dir.managedIdentities[identity.clientId] = identity
        }
        return identity
    }

    /// Adds a FIC under Graph's rules (limit, uniqueness, name), with the propagation delay.
    @discardableResult
    public func addFederatedCredential(
        appID: String, name: String, issuer: String, subject: String, audience: String = "api://AzureADTokenExchange",
        description: String? = nil
    ) throws -> Directory.FederatedCredential {
        var object: [String: Any] = ["name": name, "issuer": issuer, "subject": subject, "audiences": [audience]]
        if let description { object["description"] = description }
        let now = self.now
        let result = mutate { dir in GraphService.create(in: &dir, app: appID, object: object, now: now) }
        switch result {
        case .success(let c): return c
        case .failure(let f): throw ScenarioError(status: f.status, code: f.code, message: f.message)
        }
    }

    /// Trusts a managed identity as a FIC of the application: issuer = the identity's tenant v2
    /// authority, subject = its principal id (WIRE.md §3.2).
    @discardableResult
    public func trust(identity: Directory.ManagedIdentity, appID: String, name: String) throws -> Directory.FederatedCredential {
        try addFederatedCredential(
            appID: appID, name: name, issuer: "https://login.microsoftonline.com/\(identity.tenantId)/v2.0",
            subject: identity.principalId)
    }

    @discardableResult
    public func createVault(
        tenantID: String, name: String, purgeProtection: Bool = true, softDeleteRetentionDays: Int = 90,
        budget: Int = 1_000, budgetWindowSeconds: Int = 10, region: String = "westeurope"
    ) async throws -> String {
        guard let launcher = vaultLauncher.withLock({ $0 }) else {
            throw ScenarioError(status: 503, code: "NotRunning", message: "The emulator is not running.")
        }
        guard (7...90).contains(softDeleteRetentionDays) else { throw ScenarioError.invalid("softDeleteRetentionDays must be 7...90.") }
        guard budget > 0, budgetWindowSeconds > 0 else { throw ScenarioError.invalid("budget and budgetWindowSeconds must be positive.") }
        guard name.count >= 3, name.count <= 24, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw ScenarioError.invalid("A vault name is 3-24 letters, digits or dashes.")
        }
        let vault = Directory.Vault(
            name: name, tenantId: tenantID.lowercased(), region: region, subscriptionId: Self.subscriptionID,
            resourceGroup: "customer-keys", purgeProtection: purgeProtection, softDeleteRetentionDays: softDeleteRetentionDays,
            budget: budget, budgetWindowSeconds: budgetWindowSeconds)
        try mutate { dir in
            guard dir.tenants[vault.tenantId] != nil else { throw ScenarioError.notFound("Tenant \(tenantID)") }
            guard dir.vaults[name.lowercased()] == nil else { throw ScenarioError.conflict("Vault \(name) already exists.") }
            dir.vaults[name.lowercased()] = vault
        }
        let port = try await launcher(name, nil)
        mutate { $0.vaults[name.lowercased()]?.port = port }
        return vaultURL(name)!
    }

    /// Changes a vault's transaction budget.
    public func setVaultBudget(vault: String, budget: Int, windowSeconds: Int) throws {
        guard budget > 0, windowSeconds > 0 else { throw ScenarioError.invalid("budget and windowSeconds must be positive.") }
        try mutate { dir in
            guard dir.vaults[vault.lowercased()] != nil else { throw ScenarioError.notFound("Vault \(vault)") }
            dir.vaults[vault.lowercased()]!.budget = budget
            dir.vaults[vault.lowercased()]!.budgetWindowSeconds = windowSeconds
        }
    }

    @discardableResult
    public func createKey(vault: String, name: String, options: KeyOptions = KeyOptions()) throws -> Directory.KeyVersion {
        let version = try Self.makeVersion(options: options, now: clock.unixSeconds)
        try mutate { dir in
            guard dir.vaults[vault.lowercased()] != nil else { throw ScenarioError.notFound("Vault \(vault)") }
            guard dir.vaults[vault.lowercased()]!.keys[name.lowercased()] == nil else {
                throw ScenarioError.conflict("Key \(name) already exists in \(vault).")
            }
            dir.vaults[vault.lowercased()]!.keys[name.lowercased()] = .init(name: name, versions: [version], tags: options.tags)
        }
        return version
    }

    /// Rotation: a new current version with the previous one's attributes; old versions stay usable.
    @discardableResult
    public func rotateKey(vault: String, name: String, size: Int? = nil) throws -> Directory.KeyVersion {
        guard let key = read({ $0.vaults[vault.lowercased()]?.keys[name.lowercased()] }), let current = key.latest else {
            throw ScenarioError.notFound("Key \(name) in \(vault)")
        }
        var options = KeyOptions()
        options.size = size ?? current.keySize
        options.keyOps = current.keyOps
        // New key material, never one of this key's earlier versions (old ciphertexts must not open under it).
        let version = try Self.makeVersion(options: options, now: clock.unixSeconds, avoiding: Set(key.versions.map(\.privateKeyDER)))
        try mutate { dir in
            guard dir.vaults[vault.lowercased()]?.keys[name.lowercased()] != nil else { throw ScenarioError.notFound("Key \(name) in \(vault)") }
            dir.vaults[vault.lowercased()]!.keys[name.lowercased()]!.versions.append(version)
        }
        return version
    }

    /// Updates attributes of one version (the current one when `version` is nil). `tags`
    /// replaces the key's tags, which this emulator keeps per key rather than per version.
    public func updateKey(
        vault: String, name: String, version: String? = nil, enabled: Bool? = nil, keyOps: [String]? = nil,
        notBefore: Int64?? = nil, expires: Int64?? = nil, tags: [String: String]? = nil
    ) throws {
        let now = clock.unixSeconds
        try mutate { dir in
            guard var key = dir.vaults[vault.lowercased()]?.keys[name.lowercased()] else {
                throw ScenarioError.notFound("Key \(name) in \(vault)")
            }
            guard let index = version.map({ v in key.versions.firstIndex { $0.version == v.lowercased() } }) ?? key.versions.indices.last
            else { throw ScenarioError.notFound("Version \(version ?? "") of \(name)") }
            if let enabled { key.versions[index].enabled = enabled }
            if let keyOps { key.versions[index].keyOps = keyOps }
            if let notBefore { key.versions[index].notBefore = notBefore }
            if let expires { key.versions[index].expires = expires }
            if let tags { key.tags = tags }
            key.versions[index].updated = now
            dir.vaults[vault.lowercased()]!.keys[name.lowercased()] = key
        }
    }

    /// Grants a role to a principal at vault scope (`keyName` nil) or key scope. `delaySeconds`
    /// models RBAC propagation: the assignment takes effect that much later.
    @discardableResult
    public func assignRole(
        vault: String, principalID: String, role: String = RoleBasedAccess.cryptoServiceEncryptionUser.name,
        keyName: String? = nil, delaySeconds: Double = 0
    ) throws -> Directory.RoleAssignment {
        guard let definition = RoleBasedAccess.role(named: role) else { throw ScenarioError.invalid("Unknown role '\(role)'.") }
        let assignment = Directory.RoleAssignment(
            id: newGUID(), principalId: principalID.lowercased(), roleDefinitionId: definition.id, keyScope: keyName,
            effectiveFrom: now.addingTimeInterval(delaySeconds), removedFrom: nil)
        try mutate { dir in
            guard dir.vaults[vault.lowercased()] != nil else { throw ScenarioError.notFound("Vault \(vault)") }
            dir.vaults[vault.lowercased()]!.roleAssignments.append(assignment)
        }
        return assignment
    }

    /// Removes a role assignment, effective after `delaySeconds`.
    public func removeRoleAssignment(vault: String, id: String, delaySeconds: Double = 0) throws {
        let at = now.addingTimeInterval(delaySeconds)
        try mutate { dir in
            guard let index = dir.vaults[vault.lowercased()]?.roleAssignments.firstIndex(where: { $0.id == id.lowercased() })
            else { throw ScenarioError.notFound("Role assignment \(id) in \(vault)") }
            dir.vaults[vault.lowercased()]!.roleAssignments[index].removedFrom = at
        }
    }

    /// Scripts a Conditional Access policy that blocks the application's tokens in a tenant (AADSTS53003).
    public func setConditionalAccessBlock(tenantID: String, appID: String, blocked: Bool) {
        mutate { dir in
            let key = "\(tenantID.lowercased())|\(appID.lowercased())"
            if blocked { dir.conditionalAccessBlocks.insert(key) } else { dir.conditionalAccessBlocks.remove(key) }
        }
    }

    /// Trusts an issuer outside Entra (an AKS OIDC issuer) with its JWKS.
    public func registerExternalIssuer(_ issuer: String, jwks: String) {
        mutate { $0.externalIssuers[issuer] = .init(issuer: issuer, jwks: jwks) }
    }

    public func updateSettings(_ body: (inout Directory.Settings) -> Void) {
        mutate { body(&$0.settings) }
    }

    static let subscriptionID = "00000000-0000-0000-0000-0000000000e1"

    static func makeVersion(options: KeyOptions, now: Int64, avoiding used: Set<Data> = []) throws -> Directory.KeyVersion {
        guard [2048, 3072, 4096].contains(options.size) else { throw ScenarioError.invalid("RSA key size must be 2048, 3072 or 4096.") }
        let valid: Set<String> = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export"]
        guard options.keyOps.allSatisfy(valid.contains) else { throw ScenarioError.invalid("Unknown key operation in \(options.keyOps).") }
        let der = try RSAKeyMaterial.privateKeyDER(bits: options.size, avoiding: used)
        return Directory.KeyVersion(
            version: UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased(),
            privateKeyDER: der, keySize: options.size, keyOps: options.keyOps, enabled: options.enabled,
            notBefore: options.notBefore, expires: options.expires, created: now, updated: now)
    }
}

/// Where emulated vault keys come from. Generating an RSA-3072 key costs 0.2–0.6 s of CPU in a
/// debug build; a test suite that starts dozens of emulators in parallel spends most of its time
/// there. With `reuse` on (tests only), keys are drawn from a small rotating pool per size. Tests
/// running in parallel draw from the same pool, so a draw may return a key that one vault key
/// already has as an earlier version: rotation passes those in `avoiding`.
///
/// `scripts/test.sh` fills the pool before the tests start: it has `openssl` (optimised, outside
/// the test process) write the keys to a scratch directory named by `FEDBROKER_TEST_RSA_KEYS`,
/// and the first `reuse(true)` loads them. Generated in the test process, the fills ran on the
/// cooperative threads (two on a 2-core machine) in a debug build of BoringSSL, and a caller
/// waiting for a fill blocked its thread too: every task of the test process, servers included,
/// could stall for seconds at the suite's start (a 10 s call timed out in a clean-clone CI run).
public enum RSAKeyMaterial {
    private struct Pool {
        var keys: [Int: [Data]] = [:]
        var next: [Int: Int] = [:]
        /// Prepared keys handed out once each (`spareKeyDER`), never drawn for the pool.
        var spares: [Int: [Data]] = [:]
        var loaded = false
    }
    private static let pool = Mutex(Pool())
    private static let poolSize = 6
    private static let reuseFlag = Mutex(false)
    private static let generating = Mutex(())

    /// The environment variable naming a directory of PEM RSA keys for the pool (tests only).
    public static let preparedKeysVariable = "FEDBROKER_TEST_RSA_KEYS"

    /// Turns pooling on or off for the process (off by default: `fedbroker-dev emulator` makes fresh keys).
    public static func reuse(_ on: Bool) {
        reuseFlag.withLock { $0 = on }
        if on { loadPrepared() }
    }

    /// A key no other caller in this process gets, for a test that needs a key the emulator
    /// cannot hold (a stranger's issuer, a cluster's own signing key): one of the prepared
    /// `spare-*.pem` keys while they last, else a fresh one.
    public static func spareKeyDER(bits: Int) throws -> Data {
        loadPrepared()
        if let spare = pool.withLock({ $0.spares[bits]?.popLast() }) { return spare }
        return try fresh(bits: bits)
    }

    /// Fills the pool and the spares, once per process, from the `*.pem` files in the directory
    /// that `FEDBROKER_TEST_RSA_KEYS` names, each sorted by its own key size; files named
    /// `spare-*` are spares. A file that is not an RSA key of 2048, 3072 or 4096 bits is skipped
    /// and said on standard error; sizes left short are generated in process as before.
    private static func loadPrepared() {
        // Checked first without `generating`, which an in-process generation may hold for seconds.
        guard !pool.withLock({ $0.loaded }),
            let directory = ProcessInfo.processInfo.environment[preparedKeysVariable], !directory.isEmpty
        else { return }
        // Under `generating`: a caller that finds the pool short meanwhile waits for the load
        // (milliseconds) instead of generating a key of its own.
        generating.withLock { _ in
            guard !pool.withLock({ $0.loaded }) else { return }
            load(from: URL(fileURLWithPath: directory))
        }
    }

    private static func load(from directory: URL) {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).filter { $0.hasSuffix(".pem") }.sorted()
        var loaded: [Int: [Data]] = [:]
        var spares: [Int: [Data]] = [:]
        var skipped: [String] = []
        for name in names {
            let file = directory.appendingPathComponent(name)
            guard let pem = try? String(contentsOf: file, encoding: .utf8), pem.utf8.count <= 16_384,
                  let key = try? _RSA.Encryption.PrivateKey(pemRepresentation: pem),
                  [2048, 3072, 4096].contains(key.keySizeInBits)
            else {
                skipped.append(String(name.prefix(64)))
                continue
            }
            if name.hasPrefix("spare-") {
                spares[key.keySizeInBits, default: []].append(key.derRepresentation)
            } else {
                loaded[key.keySizeInBits, default: []].append(key.derRepresentation)
            }
        }
        if !skipped.isEmpty {
            FileHandle.standardError.write(Data("RSAKeyMaterial: skipped \(skipped.count) file(s) in \(preparedKeysVariable) that are not RSA keys of 2048, 3072 or 4096 bits: \(skipped.prefix(5))\n".utf8))
        }
        pool.withLock { p in
            p.loaded = true
            p.spares = spares
            for (bits, keys) in loaded {
                let room = max(0, poolSize - p.keys[bits, default: []].count)
                p.keys[bits, default: []].append(contentsOf: keys.prefix(room))
            }
        }
    }

    static func privateKeyDER(bits: Int, avoiding used: Set<Data> = []) throws -> Data {
        guard reuseFlag.withLock({ $0 }) else {
            return try fresh(bits: bits)
        }
        if let reused = draw(bits: bits, avoiding: used) { return reused }
        // One generation at a time: when dozens of suites start emulators at once, each used to
        // generate its own keys until the pool was full, dozens of RSA-3072 generations blocking
        // the test process's cooperative threads together (a clean-clone CI run stalled 25-45 s
        // at its start and failed deadlines in tests that use no emulator). Serialized, the pool
        // fills after `poolSize` generations and the callers waiting meanwhile draw from it.
        return try generating.withLock { _ in
            if let reused = draw(bits: bits, avoiding: used) { return reused }
            let key = try fresh(bits: bits)
            pool.withLock { p in
                if p.keys[bits, default: []].count < poolSize { p.keys[bits, default: []].append(key) }
            }
            return key
        }
    }

    /// A key generated here, in this process.
    private static func fresh(bits: Int) throws -> Data {
        try _RSA.Encryption.PrivateKey(keySize: .init(bitCount: bits)).derRepresentation
    }

    /// A pooled key not in `used`, once the pool for `bits` is full.
    private static func draw(bits: Int, avoiding used: Set<Data>) -> Data? {
        pool.withLock { p -> Data? in
            guard let keys = p.keys[bits], keys.count >= poolSize else { return nil }
            for _ in 0..<keys.count {
                let index = p.next[bits, default: 0]
                p.next[bits] = (index + 1) % keys.count
                if !used.contains(keys[index]) { return keys[index] }
            }
            return nil  // every pooled key is in use by this vault key: a fresh one
        }
    }
}
