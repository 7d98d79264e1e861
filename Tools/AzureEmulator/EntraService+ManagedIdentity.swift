import Foundation
import Hummingbird

/// The token endpoint for a user-assigned managed identity as the client (AKS workload
/// identity): `client_id` = the identity's client id, `client_assertion` = a token from an issuer
/// the emulator trusts (`registerExternalIssuer`) that matches one of the identity's own FICs.
/// The answer is exactly the token IMDS issues for the identity, so an application's FIC
/// trusting the identity (issuer `…/{tenant}/v2.0`, subject its principal id) matches it.
extension EntraService {
    /// The only resource served: fedbroker needs the identity's assertion for the application's
    /// exchange and nothing else. (Entra itself would also issue the identity tokens for other
    /// resources; the emulator answers those with AADSTS70011.)
    static let managedIdentityResource = "api://AzureADTokenExchange"

    func managedIdentityToken(
        _ identity: Directory.ManagedIdentity, tenant: Directory.Tenant, resource: String, scope: String, assertion: String
    ) async throws -> Response {
        // The identity is a service principal of its own tenant only.
        guard identity.tenantId == tenant.id else {
            return failure(.applicationNotFound(appID: identity.clientId, tenant: tenant.id))
        }
        guard resource == Self.managedIdentityResource else { return failure(.invalidScope(scope)) }
        if let refusal = await checkAssertion(assertion, against: identity.federatedCredentials) { return failure(refusal) }
        state.counters.increment("entra.token.mi", "entra.token.mi.\(identity.clientId)")
        let (token, _, lifetime) = try await IMDSService.token(for: identity, resource: resource, state: state)
        let body: JSONValue = .object([
            ("token_type", "Bearer"),
            ("expires_in", .int(lifetime - 1)),
            ("ext_expires_in", .int(lifetime - 1)),
            ("access_token", .string(token)),
        ])
        return Reply.json(200, body, headers: Self.standardHeaders(requestID: newGUID()))
    }
}
