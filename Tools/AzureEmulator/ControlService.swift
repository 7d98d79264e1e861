import Foundation
import HTTPTypes
import Hummingbird

/// The emulator-only control API (plain HTTP on loopback, its own port): script any scenario,
/// inject faults, read request counters. Documented in docs/emulator.md.
enum ControlService {
    static func router(state: EmulatorState) -> Router<EmulatorRequestContext> {
        let router = Router(context: EmulatorRequestContext.self)
        let api = router.group("control")

        api.get("endpoints") { _, _ in
            let e = state.currentEndpoints
            return Reply.json(200, .object([
                ("imds", .string(e.imds)), ("authority", .string(e.authority)), ("graph", .string(e.graph)),
                ("control", .string(e.control)),
                ("vaults", .object(e.vaults.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })),
            ]))
        }
        api.get("state") { _, _ in
            Reply.json(200, describe(state))
        }
        api.post("tenants") { request, context in
            struct Body: Decodable { var displayName: String; var id: String?; var domain: String? }
            return try await handle {
                let b = try await request.decode(as: Body.self, context: context)
                let t = try state.createTenant(displayName: b.displayName, id: b.id, domain: b.domain)
                return (201, .object([("id", .string(t.id)), ("displayName", .string(t.displayName)), ("domain", .string(t.domain))]))
            }
        }
        api.post("applications") { request, context in
            struct Body: Decodable {
                var homeTenantId: String; var displayName: String; var appId: String?
                var identifierUris: [String]?; var appRoles: [AppRoleInput]?; var requestedAccessTokenVersion: Int?
            }
            return try await handle {
                let b = try await request.decode(as: Body.self, context: context)
                let a = try state.createApplication(
                    homeTenantID: b.homeTenantId, displayName: b.displayName, appID: b.appId,
                    identifierUris: b.identifierUris ?? [], appRoles: (b.appRoles ?? []).map(\.role),
                    requestedAccessTokenVersion: b.requestedAccessTokenVersion)
                return (201, applicationJSON(a))
            }
        }
        addStaffRoutes(to: api, state: state)
        addGraphRoutes(to: api, state: state)
        addManagedIdentityRoutes(to: api, state: state)
        api.post("service-principals") { request, context in
            struct Body: Decodable { var tenantId: String; var appId: String }
            return try await handle {
                let b = try await request.decode(as: Body.self, context: context)
                let sp = try state.createServicePrincipal(tenantID: b.tenantId, appID: b.appId)
                return (201, .object([("objectId", .string(sp.objectId)), ("appId", .string(sp.appId)), ("tenantId", .string(sp.tenantId))]))
            }
        }
        api.delete("service-principals") { request, _ in
            try await handle {
                let q = FormItems(request.uri.query)
                guard let tenant = q["tenantId"], let app = q["appId"] else { throw ScenarioError.invalid("tenantId and appId are required.") }
                try state.deleteServicePrincipal(tenantID: tenant, appID: app)
                return (200, .object([("deleted", true)]))
            }
        }
        api.patch("service-principals") { request, context in
            struct Body: Decodable { var accountEnabled: Bool }
            return try await handle {
                let q = FormItems(request.uri.query)
                guard let tenant = q["tenantId"], let app = q["appId"] else { throw ScenarioError.invalid("tenantId and appId are required.") }
                let b = try await request.decode(as: Body.self, context: context)
                try state.setServicePrincipalEnabled(tenantID: tenant, appID: app, enabled: b.accountEnabled)
                return (200, .object([("accountEnabled", .bool(b.accountEnabled))]))
            }
        }
        api.post("managed-identities") { request, context in
            struct Body: Decodable { var tenantId: String; var name: String; var attached: Bool? }
            return try await handle {
                let b = try await request.decode(as: Body.self, context: context)
                let mi = try state.createManagedIdentity(tenantID: b.tenantId, name: b.name, attached: b.attached ?? true)
                return (201, .object([
                    ("clientId", .string(mi.clientId)), ("principalId", .string(mi.principalId)),
                    ("tenantId", .string(mi.tenantId)), ("resourceId", .string(mi.resourceId)),
                ]))
            }
        }
        api.post("applications/:app/federated-credentials") { request, context in
            struct Body: Decodable { var name: String; var issuer: String; var subject: String; var audiences: [String]?; var description: String? }
            return try await handle {
                let app = try context.parameters.require("app")
                let b = try await request.decode(as: Body.self, context: context)
                let audiences = b.audiences ?? ["api://AzureADTokenExchange"]
                guard audiences.count == 1 else { throw ScenarioError.invalid("Federated identity credentials must have exactly one audience.") }
                let c = try state.addFederatedCredential(
                    appID: app, name: b.name, issuer: b.issuer, subject: b.subject, audience: audiences[0], description: b.description)
                return (201, GraphService.json(c))
            }
        }
        api.post("vaults") { request, context in
            struct Body: Decodable {
                var tenantId: String; var name: String; var purgeProtection: Bool?; var softDeleteRetentionDays: Int?
                var budget: Int?; var budgetWindowSeconds: Int?; var region: String?
            }
            return try await handle {
                let b = try await request.decode(as: Body.self, context: context)
                let url = try await state.createVault(
                    tenantID: b.tenantId, name: b.name, purgeProtection: b.purgeProtection ?? true,
                    softDeleteRetentionDays: b.softDeleteRetentionDays ?? 90, budget: b.budget ?? 1_000,
                    budgetWindowSeconds: b.budgetWindowSeconds ?? 10, region: b.region ?? "westeurope")
                return (201, .object([("name", .string(b.name)), ("url", .string(url))]))
            }
        }
        api.patch("vaults/:vault") { request, context in
            struct Body: Decodable { var budget: Int; var budgetWindowSeconds: Int? }
            return try await handle {
                let vault = try context.parameters.require("vault")
                let b = try await request.decode(as: Body.self, context: context)
                try state.setVaultBudget(vault: vault, budget: b.budget, windowSeconds: b.budgetWindowSeconds ?? 10)
                return (200, .object([("name", .string(vault)), ("budget", .int(Int64(b.budget)))]))
            }
        }
        api.post("vaults/:vault/keys") { request, context in
            struct Body: Decodable {
                var name: String; var size: Int?; var keyOps: [String]?; var enabled: Bool?; var nbf: Int64?; var exp: Int64?
                var tags: [String: String]?
            }
            return try await handle {
                let vault = try context.parameters.require("vault")
                let b = try await request.decode(as: Body.self, context: context)
                var options = EmulatorState.KeyOptions()
                options.size = b.size ?? 3072
                options.keyOps = b.keyOps ?? options.keyOps
                options.enabled = b.enabled ?? true
                options.notBefore = b.nbf
                options.expires = b.exp
                options.tags = b.tags ?? [:]
                let v = try state.createKey(vault: vault, name: b.name, options: options)
                return (201, keyJSON(state, vault: vault, name: b.name, version: v))
            }
        }
        api.post("vaults/:vault/keys/:key/rotate") { request, context in
            struct Body: Decodable { var size: Int? }
            return try await handle {
                let vault = try context.parameters.require("vault")
                let key = try context.parameters.require("key")
                let b = (try? await request.decode(as: Body.self, context: context)) ?? Body()
                let v = try state.rotateKey(vault: vault, name: key, size: b.size)
                return (201, keyJSON(state, vault: vault, name: key, version: v))
            }
        }
        api.patch("vaults/:vault/keys/:key") { request, context in
            struct Body: Decodable {
                var version: String?; var enabled: Bool?; var keyOps: [String]?; var nbf: Int64?; var exp: Int64?
                var tags: [String: String]?
            }
            return try await handle {
                let vault = try context.parameters.require("vault")
                let key = try context.parameters.require("key")
                let b = try await request.decode(as: Body.self, context: context)
                try state.updateKey(
                    vault: vault, name: key, version: b.version, enabled: b.enabled, keyOps: b.keyOps,
                    notBefore: b.nbf.map { .some($0) }, expires: b.exp.map { .some($0) }, tags: b.tags)
                return (200, .object([("updated", true)]))
            }
        }
        api.post("vaults/:vault/role-assignments") { request, context in
            struct Body: Decodable { var principalId: String; var role: String?; var keyName: String?; var delaySeconds: Double? }
            return try await handle {
                let vault = try context.parameters.require("vault")
                let b = try await request.decode(as: Body.self, context: context)
                let a = try state.assignRole(
                    vault: vault, principalID: b.principalId, role: b.role ?? RoleBasedAccess.cryptoServiceEncryptionUser.name,
                    keyName: b.keyName, delaySeconds: b.delaySeconds ?? 0)
                return (201, .object([
                    ("id", .string(a.id)), ("principalId", .string(a.principalId)), ("roleDefinitionId", .string(a.roleDefinitionId)),
                    ("scope", .string(a.keyScope.map { "key:\($0)" } ?? "vault")),
                ]))
            }
        }
        api.delete("vaults/:vault/role-assignments/:id") { request, context in
            try await handle {
                let vault = try context.parameters.require("vault")
                let id = try context.parameters.require("id")
                let delay = FormItems(request.uri.query)["delaySeconds"].flatMap(Double.init) ?? 0
                try state.removeRoleAssignment(vault: vault, id: id, delaySeconds: delay)
                return (200, .object([("removed", true)]))
            }
        }
        api.post("conditional-access") { request, context in
            struct Body: Decodable { var tenantId: String; var appId: String; var blocked: Bool }
            return try await handle {
                let b = try await request.decode(as: Body.self, context: context)
                state.setConditionalAccessBlock(tenantID: b.tenantId, appID: b.appId, blocked: b.blocked)
                return (200, .object([("blocked", .bool(b.blocked))]))
            }
        }
        api.post("external-issuers") { request, context in
            struct Body: Decodable { var issuer: String; var jwks: String }
            return try await handle {
                let b = try await request.decode(as: Body.self, context: context)
                state.registerExternalIssuer(b.issuer, jwks: b.jwks)
                return (201, .object([("issuer", .string(b.issuer))]))
            }
        }
        api.patch("settings") { request, context in
            struct Body: Decodable {
                var ficPropagationSeconds: Double?; var managedIdentityTokenLifetimeSeconds: Int64?
                var accessTokenLifetimeSeconds: Int64?; var imdsRequestsPerSecond: Int?; var imdsMaxConcurrent: Int?
            }
            return try await handle {
                let b = try await request.decode(as: Body.self, context: context)
                state.updateSettings { s in
                    if let v = b.ficPropagationSeconds { s.ficPropagationSeconds = v }
                    if let v = b.managedIdentityTokenLifetimeSeconds { s.managedIdentityTokenLifetimeSeconds = v }
                    if let v = b.accessTokenLifetimeSeconds { s.accessTokenLifetimeSeconds = v }
                    if let v = b.imdsRequestsPerSecond { s.imdsRequestsPerSecond = v }
                    if let v = b.imdsMaxConcurrent { s.imdsMaxConcurrent = v }
                }
                return (200, .object([("updated", true)]))
            }
        }
        api.get("faults") { _, _ in
            Reply.json(200, .array(state.faults.all.map(faultJSON)))
        }
        api.post("faults") { request, context in
            struct Body: Decodable {
                var service: FaultRule.Service; var operation: String?; var target: String?; var status: Int?; var count: Int?
                var latencyMs: Int?; var retryAfterSeconds: Int?; var reset: Bool?
            }
            return try await handle {
                let b = try await request.decode(as: Body.self, context: context)
                guard b.status != nil || (b.latencyMs ?? 0) > 0 || b.reset == true else {
                    throw ScenarioError.invalid("A fault needs a status, a latency or reset.")
                }
                let rule = FaultRule(
                    service: b.service, operation: b.operation, target: b.target, status: b.status, remaining: b.count,
                    latencyMilliseconds: b.latencyMs ?? 0, retryAfterSeconds: b.retryAfterSeconds, resetConnection: b.reset ?? false)
                state.faults.add(rule)
                return (201, faultJSON(rule))
            }
        }
        api.delete("faults") { _, _ in
            state.faults.clear()
            return Reply.json(200, .object([("cleared", true)]))
        }
        api.delete("faults/:id") { _, context in
            try await handle {
                let id = try context.parameters.require("id")
                guard state.faults.remove(id: id) else { throw ScenarioError.notFound("Fault \(id)") }
                return (200, .object([("removed", true)]))
            }
        }
        api.get("counters") { _, _ in
            Reply.json(200, .object(state.counters.snapshot.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) }))
        }
        api.delete("counters") { _, _ in
            state.counters.reset()
            return Reply.json(200, .object([("reset", true)]))
        }
        return router
    }

    /// Runs a control operation and turns its failure into a JSON error with a stable code.
    static func handle(_ body: () async throws -> (Int, JSONValue)) async throws -> Response {
        do {
            let (status, json) = try await body()
            return Reply.json(status, json)
        } catch let error as ScenarioError {
            return Reply.json(error.status, .object([("error", .object([("code", .string(error.code)), ("message", .string(error.message))]))]))
        } catch let error as DecodingError {
            return Reply.json(400, .object([("error", .object([("code", "InvalidInput"), ("message", .string("Malformed JSON body: \(error)"))]))]))
        } catch let error as HTTPError {
            return Reply.json(Int(error.status.code), .object([("error", .object([("code", "InvalidInput"), ("message", .string(error.body ?? "\(error.status)"))]))]))
        }
    }

    private static func keyJSON(_ state: EmulatorState, vault: String, name: String, version: Directory.KeyVersion) -> JSONValue {
        let base = state.vaultURL(vault) ?? ""
        return .object([
            ("kid", .string("\(base)/keys/\(name)/\(version.version)")), ("version", .string(version.version)),
            ("size", .int(Int64(version.keySize))), ("keyOps", .strings(version.keyOps)), ("enabled", .bool(version.enabled)),
        ])
    }

    private static func faultJSON(_ f: FaultRule) -> JSONValue {
        .object([
            ("id", .string(f.id)), ("service", .string(f.service.rawValue)), ("operation", .optional(f.operation)),
            ("target", .optional(f.target)), ("status", f.status.map { .int(Int64($0)) } ?? .null),
            ("remaining", f.remaining.map { .int(Int64($0)) } ?? .null), ("latencyMs", .int(Int64(f.latencyMilliseconds))),
            ("retryAfterSeconds", f.retryAfterSeconds.map { .int(Int64($0)) } ?? .null), ("reset", .bool(f.resetConnection)),
        ])
    }

    /// The directory without key material.
    static func describe(_ state: EmulatorState) -> JSONValue {
        state.read { dir in
            .object([
                ("tenants", .array(dir.tenants.values.sorted { $0.displayName < $1.displayName }.map {
                    .object([("id", .string($0.id)), ("displayName", .string($0.displayName)), ("domain", .string($0.domain))])
                })),
                ("applications", .array(dir.applications.values.sorted { $0.displayName < $1.displayName }.map { app in
                    guard case .object(var members) = applicationJSON(app) else { return .null }
                    members.append(("federatedIdentityCredentials", .array(app.federatedCredentials.filter(FederatedCredentialMatcher.isListed).map(GraphService.json))))
                    return .object(members)
                })),
                ("users", .array(dir.users.values.sorted { $0.userPrincipalName < $1.userPrincipalName }.map(userJSON))),
                ("appRoleAssignments", .array(dir.appRoleAssignments.map { appRoleAssignmentJSON($0, in: dir) })),
                ("servicePrincipals", .array(dir.servicePrincipals.map {
                    .object([
                        ("objectId", .string($0.objectId)), ("appId", .string($0.appId)), ("tenantId", .string($0.tenantId)),
                        ("accountEnabled", .bool($0.isEnabled)),
                    ])
                })),
                ("managedIdentities", .array(dir.managedIdentities.values.sorted { $0.name < $1.name }.map {
                    .object([
                        ("name", .string($0.name)), ("clientId", .string($0.clientId)), ("principalId", .string($0.principalId)),
                        ("tenantId", .string($0.tenantId)), ("resourceId", .string($0.resourceId)), ("attached", .bool($0.attached)),
                        ("federatedIdentityCredentials", .array($0.federatedCredentials.filter(FederatedCredentialMatcher.isListed).map(GraphService.json))),
                    ])
                })),
                ("vaults", .array(dir.vaults.values.sorted { $0.name < $1.name }.map { vault in
                    .object([
                        ("name", .string(vault.name)), ("tenantId", .string(vault.tenantId)), ("url", .optional(state.vaultURL(vault.name))),
                        ("recoveryLevel", .string(vault.recoveryLevel)), ("budget", .int(Int64(vault.budget))),
                        ("keys", .array(vault.keys.values.sorted { $0.name < $1.name }.map { key in
                            .object([
                                ("name", .string(key.name)),
                                ("tags", .object(key.tags.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })),
                                ("versions", .array(key.versions.map {
                                    .object([("version", .string($0.version)), ("size", .int(Int64($0.keySize))), ("enabled", .bool($0.enabled)), ("keyOps", .strings($0.keyOps))])
                                })),
                            ])
                        })),
                        ("roleAssignments", .array(vault.roleAssignments.filter { $0.removedFrom == nil }.map {
                            .object([("id", .string($0.id)), ("principalId", .string($0.principalId)), ("roleDefinitionId", .string($0.roleDefinitionId)), ("scope", .string($0.keyScope.map { "key:\($0)" } ?? "vault"))])
                        })),
                    ])
                })),
            ])
        }
    }
}
