import FedBrokerCore
import Foundation
import Hummingbird
import Logging

/// Entra ID's v2 endpoints (HTTPS): the token endpoint for client credentials with a federated
/// client assertion, OpenID discovery, the signing keys (WIRE.md §2, §3) and the admin
/// consent URL a customer's administrator opens.
struct EntraService: HTTPResponder {
    typealias Context = EmulatorRequestContext
    let state: EmulatorState

    static let jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    /// First-party resources every tenant has a service principal for.
    static let knownResources: Set<String> = [
        "https://vault.azure.net", "https://managedhsm.azure.net", "https://graph.microsoft.com",
        "https://management.azure.com", "https://storage.azure.com", "api://AzureADTokenExchange",
    ]

    func respond(to request: Request, context: Context) async throws -> Response {
        let segments = request.uri.path.split(separator: "/").map(String.init)
        guard let tenantName = segments.first else { return notFound() }
        let rest = segments.dropFirst().joined(separator: "/")
        switch (request.method, rest) {
        case (.post, "oauth2/v2.0/token"):
            return try await token(request: request, tenantName: tenantName, context: context)
        case (.get, "v2.0/.well-known/openid-configuration"):
            return try await discovery(tenantName: tenantName, context: context)
        case (.get, "discovery/v2.0/keys"):
            if let fault = try await state.injectFault(service: .entra, operation: "keys", target: tenantName, channel: context.channel) {
                return failure(.temporarilyUnavailable, status: fault.status, retryAfter: fault.retryAfter)
            }
            let issuer = state.read { $0.tenant(named: tenantName) }.map { "https://login.microsoftonline.com/\($0.id)/v2.0" }
            return Reply.json(200, state.authority.jwks(issuer: issuer), headers: Self.standardHeaders(requestID: newGUID()))
        case (.get, "discovery/instance") where tenantName == "common":
            return instanceDiscovery()
        case (.get, "adminconsent"):
            return try await adminConsent(request: request, tenantName: tenantName, context: context)
        default:
            return notFound()
        }
    }

    // MARK: Token endpoint

    private func token(request: Request, tenantName: String, context: Context) async throws -> Response {
        if let fault = try await state.injectFault(service: .entra, operation: "token", target: tenantName, channel: context.channel) {
            return failure(.temporarilyUnavailable, status: fault.status, retryAfter: fault.retryAfter)
        }
        guard let tenant = state.read({ $0.tenant(named: tenantName) }) else {
            return failure(.tenantNotFound(tenantName))
        }
        state.counters.increment("entra.token", "entra.token.\(tenant.id)")
        let form = FormItems(try await request.bodyString())
        // `claims` (client capabilities, CAE) is accepted and ignored, as a tenant without CAE does.
        guard let grantType = form["grant_type"] else { return failure(.missingParameter("grant_type")) }
        guard grantType == "client_credentials" else { return failure(.unsupportedGrantType(grantType)) }
        guard let clientID = form["client_id"], !clientID.isEmpty else { return failure(.missingParameter("client_id")) }
        guard let scope = form["scope"], !scope.isEmpty else { return failure(.missingParameter("scope")) }
        if form["client_secret"] != nil { return failure(.invalidClientSecret) }
        guard let assertion = form["client_assertion"], !assertion.isEmpty else { return failure(.missingCredential) }
        guard let assertionType = form["client_assertion_type"] else {
            return failure(.missingParameter("client_assertion_type"))
        }
        guard assertionType == Self.jwtBearer else { return failure(.unsupportedAssertionType(assertionType)) }

        // "All scopes included must be for a single resource", and client credentials need /.default.
        let scopes = scope.split(separator: " ").map(String.init)
        guard scopes.count == 1, let only = scopes.first else { return failure(.invalidScope(scope)) }
        guard only.hasSuffix("/.default") else { return failure(.scopeWithoutDefault(only)) }
        let resource = String(only.dropLast("/.default".count))
        let normalizedResource = resource.hasSuffix("/") ? String(resource.dropLast()) : resource
        guard Self.knownResources.contains(normalizedResource) else {
            return failure(.resourceNotFound(resource, tenant: tenant.id))
        }

        // A user-assigned managed identity presenting a federated assertion (AKS workload identity).
        if let identity = state.managedIdentity(clientID: clientID) {
            return try await managedIdentityToken(identity, tenant: tenant, resource: normalizedResource, scope: only, assertion: assertion)
        }

        // The application must be known and consented in this tenant (a service principal here).
        let lookup = state.read { dir -> (Directory.Application, Directory.ServicePrincipal)? in
            guard let key = dir.applicationKey(for: clientID), let app = dir.applications[key],
                app.appId.lowercased() == clientID.lowercased(),
                let sp = dir.servicePrincipal(appID: app.appId, tenantID: tenant.id)
            else { return nil }
            return (app, sp)
        }
        guard let (app, servicePrincipal) = lookup else {
            return failure(.applicationNotFound(appID: clientID, tenant: tenant.id))
        }
        guard servicePrincipal.isEnabled else {
            return failure(.applicationDisabled(appID: app.appId, displayName: app.displayName))
        }

        if let refusal = await checkAssertion(assertion, against: app.federatedCredentials) { return failure(refusal) }
        if state.read({ $0.conditionalAccessBlocks.contains("\(tenant.id)|\(app.appId)") }) {
            return failure(.conditionalAccess)
        }

        let lifetime = state.read { $0.settings.accessTokenLifetimeSeconds }
        let issuedAt = state.clock.unixSeconds
        // Graph's application permissions are consented in the application's home tenant: its
        // Graph tokens there carry them as `roles` (what Graph's FIC endpoints check).
        let roles = normalizedResource == "https://graph.microsoft.com" && tenant.id == app.homeTenantId
            ? app.graphPermissions.sorted() : []
        let claims = AccessTokenClaims(
            aud: normalizedResource, iss: "https://sts.windows.net/\(tenant.id)/", iat: issuedAt, nbf: issuedAt,
            exp: issuedAt + lifetime, aio: Base64URL.encode(Array(newGUID().utf8.prefix(24))), appid: app.appId,
            idp: "https://sts.windows.net/\(app.homeTenantId)/", oid: servicePrincipal.objectId,
            rh: "0.emulated", sub: servicePrincipal.objectId, tid: tenant.id, uti: newGUID(), roles: roles.isEmpty ? nil : roles)
        let accessToken = try await state.authority.sign(claims)
        let body: JSONValue = .object([
            ("token_type", "Bearer"),
            ("expires_in", .int(lifetime - 1)),
            ("ext_expires_in", .int(lifetime - 1)),
            ("access_token", .string(accessToken)),
        ])
        return Reply.json(200, body, headers: Self.standardHeaders(requestID: newGUID()))
    }

    /// Why a client assertion is refused, or nil when it is accepted: it must be well-formed,
    /// signed by its issuer, in its time window, and match one of the client's FICs.
    func checkAssertion(_ assertion: String, against credentials: [Directory.FederatedCredential]) async -> AADSTSFailure? {
        guard let presented = UnverifiedJWT(assertion), let issuer = presented.claims.iss else {
            return .malformedAssertion
        }
        let subject = presented.claims.sub ?? ""
        guard await verifyAssertionSignature(assertion, issuer: issuer) else { return .invalidSignature }
        let now = state.now
        guard TokenLifetime.check(exp: presented.claims.exp, nbf: presented.claims.nbf, now: state.clock.unixSeconds) == .valid else {
            return .assertionOutOfRange(
                now: now, notBefore: presented.claims.nbf.map { Date(timeIntervalSince1970: TimeInterval($0)) },
                expiry: presented.claims.exp.map { Date(timeIntervalSince1970: TimeInterval($0)) })
        }
        switch FederatedCredentialMatcher.match(
            issuer: issuer, subject: subject, audiences: presented.claims.aud, credentials: credentials, now: now)
        {
        case .matched: return nil
        case .subjectCaseMismatch: return .subjectCaseMismatch(subject: subject)
        case .noMatch:
            return .noMatchingFIC(issuer: issuer, subject: subject, audience: presented.claims.aud.joined(separator: ","))
        }
    }

    /// Entra-issued assertions (managed identities) check against the cloud's own key; others
    /// against the external issuer registered for them.
    private func verifyAssertionSignature(_ token: String, issuer: String) async -> Bool {
        let entraIssuer = issuer.hasPrefix("https://login.microsoftonline.com/") && issuer.hasSuffix("/v2.0")
        if entraIssuer {
            let tenantID = issuer.dropFirst("https://login.microsoftonline.com/".count).dropLast("/v2.0".count)
            guard state.read({ $0.tenants[String(tenantID)] != nil }) else { return false }
            return (try? await state.authority.verify(token, as: PresentedClaims.self)) != nil
        }
        guard let external = state.read({ $0.externalIssuers[issuer] }) else { return false }
        return await verifyWithJWKS(token, jwks: external.jwks)
    }

    // MARK: Discovery

    private func discovery(tenantName: String, context: Context) async throws -> Response {
        if let fault = try await state.injectFault(
            service: .entra, operation: "openid-configuration", target: tenantName, channel: context.channel)
        {
            return failure(.temporarilyUnavailable, status: fault.status, retryAfter: fault.retryAfter)
        }
        guard let tenant = state.read({ $0.tenant(named: tenantName) }) else {
            return failure(.tenantNotFound(tenantName))
        }
        let base = state.currentEndpoints.authority
        let body: JSONValue = .object([
            ("token_endpoint", .string("\(base)/\(tenant.id)/oauth2/v2.0/token")),
            ("token_endpoint_auth_methods_supported", .strings(["client_secret_post", "private_key_jwt", "client_secret_basic"])),
            ("jwks_uri", .string("\(base)/\(tenant.id)/discovery/v2.0/keys")),
            ("response_modes_supported", .strings(["query", "fragment", "form_post"])),
            ("subject_types_supported", .strings(["pairwise"])),
            ("id_token_signing_alg_values_supported", .strings(["RS256"])),
            ("response_types_supported", .strings(["code", "id_token", "code id_token", "id_token token"])),
            ("scopes_supported", .strings(["openid", "profile", "email", "offline_access"])),
            ("issuer", .string("https://login.microsoftonline.com/\(tenant.id)/v2.0")),
            ("request_uri_parameter_supported", false),
            ("authorization_endpoint", .string("\(base)/\(tenant.id)/oauth2/v2.0/authorize")),
            ("device_authorization_endpoint", .string("\(base)/\(tenant.id)/oauth2/v2.0/devicecode")),
            ("end_session_endpoint", .string("\(base)/\(tenant.id)/oauth2/v2.0/logout")),
            ("tenant_region_scope", "EU"),
            ("cloud_instance_name", "microsoftonline.com"),
            ("cloud_graph_host_name", "graph.windows.net"),
            ("msgraph_host", "graph.microsoft.com"),
        ])
        return Reply.json(200, body, headers: Self.standardHeaders(requestID: newGUID()))
    }

    /// MSAL's instance discovery (`/common/discovery/instance`): names this host as its own alias.
    private func instanceDiscovery() -> Response {
        let base = state.currentEndpoints.authority
        let host = URL(string: base)?.host.map { h in URL(string: base)?.port.map { "\(h):\($0)" } ?? h } ?? "localhost"
        let body: JSONValue = .object([
            ("tenant_discovery_endpoint", .string("\(base)/common/v2.0/.well-known/openid-configuration")),
            ("api-version", "1.1"),
            ("metadata", .array([.object([
                ("preferred_network", .string(host)), ("preferred_cache", .string(host)),
                ("aliases", .strings([host])),
            ])])),
        ])
        return Reply.json(200, body, headers: Self.standardHeaders(requestID: newGUID()))
    }

    // MARK: Replies

    static func standardHeaders(requestID: String) -> [(String, String)] {
        [
            ("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache"), ("Expires", "-1"),
            ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
            ("X-Content-Type-Options", "nosniff"), ("P3P", "CP=\"DSP CUR OTPi IND OTRi ONL FIN\""),
            ("x-ms-request-id", requestID), ("x-ms-ests-server", "2.1.99999.1 - EMU ProdSlices"),
        ]
    }

    /// An AADSTS error. `trace_id` equals `x-ms-request-id`, as in the recorded bodies.
    func failure(_ failure: AADSTSFailure, status: Int? = nil, retryAfter: Int? = nil) -> Response {
        let traceID = newGUID()
        var headers = Self.standardHeaders(requestID: traceID)
        if let retryAfter { headers.append(("Retry-After", String(retryAfter))) }
        var f = failure
        if let status {
            f.status = status
            if status == 429 {
                f = AADSTSFailure(code: 90055, error: "temporarily_unavailable", status: 429,
                                  message: "TenantThrottlingError - There are too many incoming requests. This tenant is throttled.")
            }
        }
        state.logger.debug("token endpoint error", metadata: ["aadsts": "\(f.code)"])
        return Reply.json(f.status, f.body(traceID: traceID, correlationID: newGUID(), at: state.now), headers: headers)
    }

    private func notFound() -> Response {
        Reply.json(404, .object([("error", "not_found"), ("error_description", "The requested path is not served by the token service.")]))
    }
}
