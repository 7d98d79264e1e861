import Crypto
import FedBrokerCore
import Foundation
import JWTKit

/// The stand-in for an interactive staff sign-in: what `az account get-access-token
/// --resource R` yields after `az login`. There is no browser in a test, so the control API
/// mints the user's access token directly, in the shape and with the key Entra would use, so
/// a validator going through discovery and the JWKS accepts it exactly as it would a real one.
extension EmulatorState {
    /// The Azure CLI's public client: the `azp`/`appid` of every token `az` obtains.
    public static let azureCLIClientID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"

    public struct StaffToken: Sendable {
        public var accessToken: String
        /// Seconds left at issue (0 once past `exp`), as the token endpoint's `expires_in`.
        public var expiresIn: Int64
        public var expiresOn: Int64
    }

    /// Issues `userID` an access token for `resource`: an application's identifier URI or
    /// appId (a v2.0 token carrying the user's app roles for that application), or a
    /// first-party resource such as `https://vault.azure.net` (a v1.0 token, as Entra issues
    /// for resources that accept only v1, Key Vault among them). A `/.default` suffix is
    /// accepted as `az --scope` sends it. `issuedAtOffsetSeconds` moves iat/nbf/exp off the
    /// emulator's clock (negative: a token issued in the past, expired if far enough).
    public func staffAccessToken(
        userID: String, resource requested: String, lifetimeSeconds: Int64? = nil, issuedAtOffsetSeconds: Int64 = 0
    ) async throws -> StaffToken {
        let lifetime = lifetimeSeconds ?? read { $0.settings.accessTokenLifetimeSeconds }
        guard (1...86_400).contains(lifetime) else { throw ScenarioError.invalid("lifetimeSeconds must be 1...86400.") }
        guard abs(issuedAtOffsetSeconds) <= 10 * 365 * 86_400 else { throw ScenarioError.invalid("issuedAtOffsetSeconds is out of range.") }
        let resource = requested.hasSuffix("/.default") ? String(requested.dropLast("/.default".count)) : requested
        guard !resource.isEmpty else { throw ScenarioError.invalid("resource is required.") }
        guard let user = read({ $0.user(userID) }) else { throw ScenarioError.notFound("User \(userID)") }
        let tenant = user.tenantId
        let now = clock.unixSeconds
        let issuedAt = now + issuedAtOffsetSeconds
        let exp = issuedAt + lifetime
        let aio = Base64URL.encode(Array(newGUID().utf8.prefix(24)))

        let token: String
        let resolved = try resolveApplication(resource, user: user)
        if let (app, roles) = resolved, app.requestedAccessTokenVersion == 2 {
            // v2.0: `aud` is always the appId, whatever form the resource was requested in.
            let claims = StaffAccessTokenClaims(
                aud: app.appId, iss: "https://login.microsoftonline.com/\(tenant)/v2.0", iat: issuedAt, nbf: issuedAt, exp: exp,
                aio: aio, azp: Self.azureCLIClientID, name: user.displayName, oid: user.objectId,
                preferred_username: user.userPrincipalName, rh: "0.emulated", roles: roles.isEmpty ? nil : roles,
                sub: Self.pairwiseSubject(user: user.objectId, resource: app.appId), tid: tenant, uti: newGUID())
            token = try await authority.sign(claims, thumbprint: false)
        } else {
            // v1.0: an app registration's default (`aud` as requested, the identifier URI or the
            // appId; app roles in `roles`, no delegated `scp`), and what first-party resources get
            // (`scp` user_impersonation, no roles).
            let (aud, roles, scp, subjectResource): (String, [String]?, String?, String)
            if let (app, held) = resolved {
                (aud, roles, scp, subjectResource) = (
                    resource.lowercased() == app.appId ? app.appId : resource, held.isEmpty ? nil : held, nil, app.appId
                )
            } else {
                let normalized = resource.hasSuffix("/") ? String(resource.dropLast()) : resource
                guard EntraService.knownResources.contains(normalized) else {
                    throw ScenarioError.invalid(AADSTSFailure.resourceNotFound(resource, tenant: tenant).wireMessage)
                }
                (aud, roles, scp, subjectResource) = (normalized, nil, "user_impersonation", normalized)
            }
            let claims = StaffAccessTokenV1Claims(
                aud: aud, iss: "https://sts.windows.net/\(tenant)/", iat: issuedAt, nbf: issuedAt, exp: exp, aio: aio,
                appid: Self.azureCLIClientID, name: user.displayName, oid: user.objectId, rh: "0.emulated", roles: roles, scp: scp,
                sub: Self.pairwiseSubject(user: user.objectId, resource: subjectResource), tid: tenant,
                unique_name: user.userPrincipalName, upn: user.userPrincipalName, uti: newGUID())
            token = try await authority.sign(claims)
        }
        return StaffToken(accessToken: token, expiresIn: max(0, exp - now - 1), expiresOn: exp)
    }

    /// The application named by `resource` and the user's role values on it; nil when no
    /// application answers to it. Entra needs the resource's service principal in the user's
    /// tenant (AADSTS500011 otherwise).
    private func resolveApplication(_ resource: String, user: Directory.User) throws -> (Directory.Application, [String])? {
        try read { dir in
            guard let app = dir.application(resource: resource) else { return nil }
            guard dir.servicePrincipal(appID: app.appId, tenantID: user.tenantId) != nil else {
                throw ScenarioError.invalid(AADSTSFailure.resourceNotFound(resource, tenant: user.tenantId).wireMessage)
            }
            return (app, dir.roleValues(userID: user.objectId, appID: app.appId))
        }
    }

    /// Entra's `sub` is pairwise: stable for one user and one resource, different across
    /// resources, 43 base64url characters.
    static func pairwiseSubject(user: String, resource: String) -> String {
        Base64URL.encode(SHA256.hash(data: Data("\(user.lowercased())|\(resource.lowercased())".utf8)))
    }
}

extension AADSTSFailure {
    /// `AADSTS<code>: <message>`, the first line of `error_description`.
    var wireMessage: String { "AADSTS\(code): \(message)" }
}

/// A v2.0 user access token for an application exposing an API (Entra's access token claims
/// reference): no `scp`, since the admin API authorizes by app roles only; `roles` absent when
/// the user holds none, as Entra leaves it out.
struct StaffAccessTokenClaims: JWTPayload {
    var aud: String
    var iss: String
    var iat: Int64
    var nbf: Int64
    var exp: Int64
    var aio: String
    var azp: String
    var azpacr = "0"
    var name: String
    var oid: String
    var preferred_username: String
    var rh: String
    var roles: [String]?
    var sub: String
    var tid: String
    var uti: String
    var ver = "2.0"

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// A v1.0 user access token for a first-party resource (Key Vault): `sts.windows.net`
/// issuer, `appid`, `upn`, and the delegated `user_impersonation` scope `az` obtains.
struct StaffAccessTokenV1Claims: JWTPayload {
    var aud: String
    var iss: String
    var iat: Int64
    var nbf: Int64
    var exp: Int64
    var acr = "1"
    var aio: String
    var amr = ["pwd"]
    var appid: String
    var appidacr = "0"
    var name: String
    var oid: String
    var rh: String
    var roles: [String]?
    /// Delegated scopes; first-party resources get `user_impersonation`, an app exposing only
    /// app roles gets none.
    var scp: String?
    var sub: String
    var tid: String
    var unique_name: String
    var upn: String
    var uti: String
    var ver = "1.0"

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}
