import AsyncHTTPClient
import AzureHTTP
import FedBrokerCore
import Foundation

/// AKS workload identity for a managed identity that a FIC slot's application trusts: the pod has
/// no IMDS, so the identity's token for `api://AzureADTokenExchange` is obtained in two hops.
///
/// 1. The projected service-account token (re-read from its file for every assertion: the
///    kubelet rotates it) is presented as the *managed identity's* client assertion in the ISV
///    tenant, for `api://AzureADTokenExchange/.default`. The identity trusts it through a FIC of
///    its own (the cluster's OIDC issuer, `system:serviceaccount:NS:SA`).
/// 2. The access token that comes back is the identity's own token — audience
///    `api://AzureADTokenExchange`, issuer `https://login.microsoftonline.com/{isvTenant}/v2.0`,
///    subject its principal id, as IMDS would have returned it — and is what this source returns:
///    the application's exchange matches it against the slot's FIC.
///
/// One service account can be trusted by every slot's identity, so one token file serves all
/// slots. The service-account token itself is never shown to the application's exchange.
public struct WorkloadIdentityAssertionSource: AssertionSource {
    /// The managed identity's client id.
    public let clientID: String
    /// The ISV's tenant, home of the managed identity: where hop 1 is made.
    public let tenantID: String
    /// Reads and checks (`exp`) the projected token.
    public let tokenFile: FederatedTokenFileAssertionSource
    let exchange: ClientAssertionExchange
    let clock: any WallClock
    let backoff: Backoff
    public let credentialPropagatingUntil: Date?

    public var identity: String { "wi:\(clientID)" }

    /// - Parameters:
    ///   - authority: Entra's authority, `https://login.microsoftonline.com` on Azure.
    ///   - credentialPropagatingUntil: about the *application's* FIC trusting this identity (hop
    ///     2, `AssertionSource`); the identity's own FIC is the operator's, and a missing match
    ///     for it fails at once.
    public init(
        clientID: String, tenantID: String, tokenFile path: String, authority: String, httpClient: HTTPClient,
        clock: any WallClock = SystemWallClock(), backoff: Backoff = Backoff(initial: 0.5, maximum: 8, maxRetries: 6),
        attemptTimeout: Double = 10, credentialPropagatingUntil: Date? = nil
    ) {
        self.clientID = clientID
        self.tenantID = tenantID
        self.tokenFile = FederatedTokenFileAssertionSource(path: path, clock: clock)
        self.exchange = ClientAssertionExchange(
            authority: authority, applicationClientID: clientID, httpClient: httpClient, clock: clock, attemptTimeout: attemptTimeout)
        self.clock = clock
        self.backoff = backoff
        self.credentialPropagatingUntil = credentialPropagatingUntil
    }

    public func assertion(deadline: Date) async throws -> AccessToken {
        guard !tenantID.isEmpty else {
            throw AzureIdentityError.tokenFile(
                path: tokenFile.path, detail: "cannot be exchanged for the identity's token without the ISV tenant id (azure.isvTenantID)")
        }
        do {
            return try await retrying(deadline: deadline, clock: clock, backoff: backoff, isRetryable: Self.isRetryable) {
                // Read on every attempt: a retry after a rotation presents the new token.
                let projected = try await tokenFile.assertion(deadline: deadline)
                return try await exchange.exchange(
                    tenantID: tenantID, resource: tokenExchangeAudience, assertion: projected.token, deadline: deadline)
            }
        } catch AzureIdentityError.entra(let refusal) {
            // The ISV's tenant, not a customer's: whoever handles this must not take an
            // AADSTS700016 (identity not found) for a customer removing the application.
            throw AzureIdentityError.isvTenant(refusal)
        }
    }

    /// Transient failures are retried. A missing FIC match is not: the identity's FIC is not one
    /// fedbroker creates, so there is no propagation window to wait out, and it is a
    /// configuration error (the service account, namespace or issuer is not the trusted one).
    static func isRetryable(_ error: any Error) -> Bool {
        guard let e = error as? AzureIdentityError else { return false }
        if case .entra(let aad) = e, aad.kind == .noMatchingFederatedCredential { return false }
        return e.isRetryable
    }
}
