import AsyncHTTPClient
import AzureHTTP
import AzureIdentity
import FedBrokerCore
import Foundation

/// Walks the trust chain for one customer key, step by step, the way onboarding validates a
/// registration: assertion → the vault's challenge (is the vault in the tenant given?) →
/// exchange in the customer tenant → get key → key checks → wrap + unwrap of random bytes.
/// Each step says its outcome, latency and, on failure, the classified cause and who must do
/// what. It never throws: a failure is a step of the report.
public struct ChainProbe: Sendable {
    public struct Step: Sendable, Equatable {
        public var name: String
        public var ok: Bool
        public var milliseconds: Double
        public var detail: String
        /// A stable code for the failure (`AADSTS700016`, `ForbiddenByRbac`, `KEY_TOO_SMALL`, …).
        public var code: String?
        /// Who must act: customer, onboarding, sre.
        public var responsible: String?
        /// What to do about it.
        public var remedy: String?
    }

    public struct Report: Sendable {
        public var tenantID: String
        public var key: VaultKeyID
        public var steps: [Step] = []
        public var bundle: KeyBundle?
        /// The application's service principal in the customer tenant (the vault token's `oid`).
        public var servicePrincipalObjectID: String?
        /// Every step passed, the wrap/unwrap round trip included.
        public var succeeded: Bool { !steps.isEmpty && steps.allSatisfy(\.ok) && steps.last?.name == "round trip" }
        /// The first failed step, the one to act on.
        public var firstFailure: Step? { steps.first { !$0.ok } }
    }

    public let environment: AzureEnvironment
    let httpClient: HTTPClient
    let clock: any WallClock

    public init(environment: AzureEnvironment, httpClient: HTTPClient, clock: any WallClock = SystemWallClock()) {
        self.environment = environment
        self.httpClient = httpClient
        self.clock = clock
    }

    /// The tag that proves a key belongs to the registration that issued its value.
    public struct Binding: Sendable, Equatable {
        public var tagName: String
        public var value: String
        public init(tagName: String, value: String) {
            self.tagName = tagName
            self.value = value
        }

        /// What the customer's admin runs to set the tag on `key`.
        public func tagCommand(for key: VaultKeyID) -> String {
            "az keyvault key set-attributes --vault-name \(key.vaultName) --name \(key.name) --tags \(tagName)=\(value)"
        }
    }

    /// Probes `key` in `tenantID` through the FIC slot whose assertions `source` provides. With
    /// `binding`, the key must also carry that tag (onboarding's proof of ownership).
    public func run(
        tenantID: String, key: VaultKeyID, source: any AssertionSource, binding: Binding? = nil, timeout: Double = 30
    ) async -> Report {
        var report = Report(tenantID: tenantID, key: key)
        let deadline = clock.now.addingTimeInterval(timeout)
        let vault = KeyVaultClient(httpClient: httpClient, clock: clock, configuration: .init(environment: environment))

        // 0. Only a vault on an allowed domain ever receives a token.
        guard await step("vault URL", into: &report, { () -> (Bool, String) in
            try vault.checkVaultURL(key.vaultURL)
            return (true, key.vaultURL)
        }) != nil else { return report }

        // 1. The assertion.
        guard let assertion: AccessToken = await step("assertion", into: &report, {
            let token = try await source.assertion(deadline: deadline)
            return (token, "\(source.identity), valid until \(Self.iso(token.expiresOn))")
        }) else { return report }

        // 2. The vault's own word on its tenant.
        guard let challenge: VaultChallenge = await step("vault challenge", into: &report, {
            let challenge = try await vault.challenge(vaultURL: key.vaultURL, deadline: deadline)
            guard environment.vaultResources.contains(challenge.resource) else {
                throw ProbeFailure(
                    code: "CHALLENGE_RESOURCE_NOT_A_VAULT", responsible: "onboarding",
                    detail: "the challenge asks for a token for \(challenge.resource), which is not a Key Vault resource",
                    remedy: "This URL is not a Key Vault: the broker will not obtain a token for another resource. Check the key URL.")
            }
            guard challenge.tenantID.lowercased() == tenantID.lowercased() else {
                throw ProbeFailure(
                    code: "VAULT_IN_OTHER_TENANT", responsible: "onboarding",
                    detail: "the vault answers for tenant \(challenge.tenantID), not \(tenantID)",
                    remedy: "The key URL belongs to another tenant: a registration mistake or an attempt to use someone else's vault. Do not register it; ask the customer for a key in a vault of tenant \(tenantID).")
            }
            return (challenge, "tenant \(challenge.tenantID), resource \(challenge.resource)")
        }) else { return report }

        // 3. The exchange in the customer tenant.
        guard let appID = environment.applicationClientID else {
            report.steps.append(Step(
                name: "token exchange", ok: false, milliseconds: 0, detail: "no application client id configured",
                code: "CONFIGURATION", responsible: "sre", remedy: "Set FEDBROKER_APP_CLIENT_ID or pass --app-client-id."))
            return report
        }
        let exchange = ClientAssertionExchange(authority: environment.authorityURL, applicationClientID: appID, httpClient: httpClient, clock: clock)
        guard let vaultToken: AccessToken = await step("token exchange", into: &report, {
            let token = try await exchange.exchange(tenantID: tenantID, resource: challenge.resource, assertion: assertion.token, deadline: deadline)
            return (token, "vault token for \(challenge.resource), valid until \(Self.iso(token.expiresOn))")
        }) else { return report }
        // Unverified claim, pasted into an `az` command for an operator: a GUID or nothing.
        report.servicePrincipalObjectID = JWTPeek.string("oid", of: vaultToken.token).flatMap { UUID(uuidString: $0) != nil ? $0 : nil }
        let provider: KeyVaultClient.TokenProvider = { @Sendable _, _ in vaultToken.token }

        // 4. The key.
        guard let bundle: KeyBundle = await step("get key", into: &report, {
            let bundle = try await vault.getKey(key, token: provider, deadline: deadline, expectedTenantID: tenantID).value
            return (bundle, "\(BoundedText.escaped(bundle.kid, limit: 300)) (\(BoundedText.escaped(bundle.keyType, limit: 16)), \(bundle.keySizeBits) bits)")
        }) else { return report }
        report.bundle = bundle

        // 5. What the broker needs of the key.
        for check in Self.checks(bundle, now: clock.now) { report.steps.append(check) }
        if let binding { report.steps.append(Self.bindingCheck(bundle, key: key, binding: binding)) }

        // 6. The round trip.
        _ = await step("round trip", into: &report, { () -> (Bool, String) in
            let secret = (0..<32).map { _ in UInt8.random(in: 0...255) }
            // The exact version just checked, never "whatever is current now".
            let wrapped = try await vault.wrapKey(bundle.id ?? key, plaintext: secret, token: provider, deadline: deadline)
            guard let used = VaultKeyID(kid: wrapped.kid) else { throw ProbeFailure(code: "BAD_KID", responsible: "sre", detail: "the wrap answer has no usable kid", remedy: nil) }
            let unwrapped = try await vault.unwrapKey(used, wrapped: wrapped.value, token: provider, deadline: deadline)
            guard unwrapped.value == secret else {
                throw ProbeFailure(code: "ROUND_TRIP_MISMATCH", responsible: "sre", detail: "unwrap returned other bytes than were wrapped", remedy: "Report this: the vault or the broker is broken.")
            }
            return (true, "wrapped and unwrapped 32 random bytes with \(used.version ?? "?") (client-request-ids \(wrapped.clientRequestID), \(unwrapped.clientRequestID))")
        })
        return report
    }

    /// Size, key_ops, enabled, validity window and purge protection, each a step.
    static func checks(_ bundle: KeyBundle, now: Date) -> [Step] {
        func check(_ name: String, _ ok: Bool, _ detail: String, code: String, responsible: String, remedy: String) -> Step {
            Step(name: name, ok: ok, milliseconds: 0, detail: detail, code: ok ? nil : code, responsible: ok ? nil : responsible, remedy: ok ? nil : remedy)
        }
        let ops = Set(bundle.keyOps)
        return [
            check("key type", bundle.keyType.hasPrefix("RSA"), bundle.keyType, code: "KEY_NOT_RSA", responsible: "customer",
                  remedy: "Use an RSA or RSA-HSM key."),
            check("key size", bundle.keySizeBits >= 3072, "\(bundle.keySizeBits) bits", code: "KEY_TOO_SMALL", responsible: "customer",
                  remedy: "Create an RSA key of 3072 bits or more (az keyvault key create --kty RSA --size 3072) and register that one."),
            check("key operations", ops.contains("wrapKey") && ops.contains("unwrapKey"), bundle.keyOps.joined(separator: ","),
                  code: "KEY_OPS_MISSING", responsible: "customer",
                  remedy: "Allow wrapKey and unwrapKey on the key (az keyvault key set-attributes --ops wrapKey unwrapKey)."),
            check("key enabled", bundle.enabled, bundle.enabled ? "enabled" : "disabled", code: "KEY_DISABLED", responsible: "customer",
                  remedy: "The customer has disabled the key; they must enable it (az keyvault key set-attributes --enabled true)."),
            check("key validity", !(bundle.expires.map { $0 <= now } ?? false) && !(bundle.notBefore.map { $0 > now } ?? false),
                  "nbf \(bundle.notBefore.map(iso) ?? "-"), exp \(bundle.expires.map(iso) ?? "-")", code: "KEY_EXPIRED", responsible: "customer",
                  remedy: "Move the key's expiry (or nbf) so that it is valid now; an expired key still unwraps but no longer wraps."),
            check("purge protection", bundle.purgeProtected, bundle.recoveryLevel ?? "unknown", code: "PURGE_PROTECTION_OFF", responsible: "customer",
                  remedy: "Enable purge protection on the vault (az keyvault update --enable-purge-protection true): without it a deleted key can be purged and the data lost."),
        ]
    }

    /// The binding tag: present, and equal to the value registration issued.
    static func bindingCheck(_ bundle: KeyBundle, key: VaultKeyID, binding: Binding) -> Step {
        let command = binding.tagCommand(for: key)
        switch bundle.tags[binding.tagName] {
        case binding.value?:
            return Step(name: "binding tag", ok: true, milliseconds: 0, detail: "\(binding.tagName)=\(binding.value)")
        case nil:
            return Step(
                name: "binding tag", ok: false, milliseconds: 0, detail: "the key has no \(binding.tagName) tag",
                code: "BINDING_TAG_MISSING", responsible: "customer",
                remedy: "Tag the key to prove it is the one registered: \(command)")
        case let other?:
            let shown = other.count > 80 ? String(other.prefix(80)) + "…" : other
            return Step(
                name: "binding tag", ok: false, milliseconds: 0,
                detail: "\(binding.tagName) is \(shown.debugDescription), not this registration's value",
                code: "BINDING_TAG_MISMATCH", responsible: "customer",
                remedy: "The tag belongs to another registration, or was mistyped. Set this registration's value: \(command)")
        }
    }

    /// Runs one step, timing it and turning its failure into a classified report line.
    private func step<T>(_ name: String, into report: inout Report, _ body: () async throws -> (T, String)) async -> T? {
        let started = Date()
        do {
            let (value, detail) = try await body()
            report.steps.append(Step(name: name, ok: true, milliseconds: Self.elapsed(since: started), detail: detail))
            return value
        } catch {
            let (code, responsible, detail, remedy) = classify(error, report: report)
            report.steps.append(Step(
                name: name, ok: false, milliseconds: Self.elapsed(since: started), detail: detail, code: code, responsible: responsible,
                remedy: remedy))
            return nil
        }
    }

    private func classify(_ error: any Error, report: Report) -> (String, String, String, String?) {
        let tenant = report.tenantID
        let app = environment.applicationClientID ?? "APP_CLIENT_ID"
        switch error {
        case let failure as ProbeFailure:
            return (failure.code, failure.responsible, failure.detail, failure.remedy)
        case let e as AzureIdentityError:
            switch e {
            case .entra(let aad):
                let remedy: String =
                    switch aad.kind {
                    case .applicationNotInTenant:
                        "The application is not consented in tenant \(tenant) (or was removed). A Global Administrator of that tenant consents at \(environment.authorityURL)/\(tenant)/adminconsent?client_id=\(app)"
                    case .applicationDisabled:
                        "The application is disabled in tenant \(tenant) (its enterprise application is not enabled for sign-in). An administrator of that tenant enables it again: az ad sp update --id \(app) --set accountEnabled=true"
                    case .noMatchingFederatedCredential:
                        "No federated identity credential of application \(app) matches this identity. Add one (issuer https://login.microsoftonline.com/<ISV tenant>/v2.0, subject = the identity's principal id, audience api://AzureADTokenExchange); a FIC created minutes ago may still be propagating."
                    case .conditionalAccess: "A Conditional Access policy in tenant \(tenant) blocks the application; the customer must exclude it."
                    case .unknownTenant: "Tenant \(tenant) does not exist: check the tenant id in the registration."
                    case .assertionExpired: "The assertion was outside its validity window: check this machine's clock and the assertion source."
                    case .invalidScope: "The vault's token resource is not valid in tenant \(tenant)."
                    case .throttledOrUnavailable: "Entra is throttling or unavailable: try again later."
                    case .invalidClient, .other: "Entra refused the application's credentials: check the FIC configuration and the application id."
                    }
                return ("AADSTS\(aad.code.map(String.init) ?? "?")", aad.responsible.rawValue, aad.description, remedy)
            case .imds(let status, let code, let description):
                return ("IMDS_\(status)", "sre", "\(code): \(description)",
                        status == 400 ? "The managed identity is not attached to this machine, or the client id is wrong." : "IMDS failed; retry, and check the machine's identity configuration.")
            default:
                return (e.code, "sre", e.description, nil)
            }
        case let e as KeyVaultError:
            let remedy: String? =
                switch e.kind {
                case .forbiddenByRbac:
                    "Grant 'Key Vault Crypto Service Encryption User' (e147488a-f6f5-4113-8e2d-b22465e65bf6) to the application's service principal in tenant \(tenant) at the key's scope: az role assignment create --role e147488a-f6f5-4113-8e2d-b22465e65bf6 --assignee-object-id \(report.servicePrincipalObjectID ?? "<service principal object id>") --assignee-principal-type ServicePrincipal --scope <vault resource id>/keys/\(report.key.name). Role changes can take up to 10 minutes to apply."
                case .forbiddenByPolicy: "The vault uses access policies: grant the application get, wrapKey and unwrapKey, or switch the vault to Azure RBAC."
                case .forbiddenByFirewall: "The vault's firewall refuses the broker's address: allow it, or allow trusted services."
                case .keyNotFound: "No key named \(report.key.name) in \(report.key.vaultURL): check the key URL."
                case .keyDisabled: "The customer disabled the key; they must enable it."
                case .keyOperationForbidden: "The key does not allow this operation: allow wrapKey and unwrapKey."
                case .unauthorized: "The vault refused the token (\(e.akvCode ?? "401")): the vault may be in another tenant than \(tenant)."
                case .throttled, .serverError, .timeout, .connectionFailed, .budgetExhausted: "The vault is busy or unreachable: try again later."
                case .tlsFailed: "The vault's certificate is not trusted: check FEDBROKER_CA_BUNDLE."
                case .invalidVaultURL:
                    "A vault URL is https on a Key Vault domain (\(environment.vaultHostSuffixes.joined(separator: ", "))); no token is sent anywhere else. Check the key URL (or FEDBROKER_VAULT_HOST_SUFFIXES)."
                case .challengeTenantMismatch: "The vault belongs to another tenant than \(tenant): do not register it."
                default: nil
                }
            let responsible =
                switch e.kind {
                case .forbiddenByRbac, .forbiddenByPolicy, .forbiddenByFirewall, .keyDisabled, .keyOperationForbidden: "customer"
                case .keyNotFound, .unauthorized, .challengeTenantMismatch, .invalidVaultURL: "onboarding"
                default: "sre"
                }
            return (e.innerCode ?? e.code ?? e.kind.rawValue, responsible, e.description, remedy)
        default:
            return ("UNEXPECTED", "sre", String(describing: error), nil)
        }
    }

    static func elapsed(since start: Date) -> Double { (Date().timeIntervalSince(start) * 10_000).rounded() / 10 }
    static func iso(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }
}

/// A probe-specific failure with its classification.
struct ProbeFailure: Error {
    var code: String
    var responsible: String
    var detail: String
    var remedy: String?
}

extension ChainProbe.Report {
    /// The report as one JSON document (`fedbroker probe --json`).
    public func jsonData() throws -> Data {
        var steps: [[String: Any]] = []
        for s in self.steps {
            var o: [String: Any] = ["step": s.name, "ok": s.ok, "ms": s.milliseconds, "detail": s.detail]
            if let c = s.code { o["code"] = c }
            if let r = s.responsible { o["responsible"] = r }
            if let r = s.remedy { o["remedy"] = r }
            steps.append(o)
        }
        var root: [String: Any] = ["tenant": tenantID, "key": key.description, "ok": succeeded, "steps": steps]
        if let servicePrincipalObjectID { root["servicePrincipalObjectId"] = servicePrincipalObjectID }
        if let bundle {
            root["keyBundle"] = [
                "kid": bundle.kid, "kty": bundle.keyType, "size": bundle.keySizeBits, "keyOps": bundle.keyOps, "enabled": bundle.enabled,
                "recoveryLevel": bundle.recoveryLevel ?? "", "tags": bundle.tags,
            ] as [String: Any]
        }
        return try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }
}
