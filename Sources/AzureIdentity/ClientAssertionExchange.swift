import AsyncHTTPClient
import AzureHTTP
import AzureWire
import FedBrokerCore
import Foundation
import NIOCore
import NIOHTTP1

/// The multi-tenant application's side of the trust: present a FIC assertion to a customer
/// tenant's v2 token endpoint (client credentials, `client_assertion`) and get an access token
/// for one resource in that tenant. One attempt per call; `CrossTenantTokenProvider` retries.
public struct ClientAssertionExchange: Sendable {
    /// `https://login.microsoftonline.com` on Azure.
    public let authority: String
    /// The ISV's multi-tenant application (client) id — or, for AKS workload identity's first
    /// hop (`WorkloadIdentityAssertionSource`), a managed identity's client id, exchanging the
    /// service-account token for the identity's own token in the ISV tenant.
    public let applicationClientID: String
    let httpClient: HTTPClient
    let clock: any WallClock
    /// The longest one token request may take.
    let attemptTimeout: Double

    public init(
        authority: String, applicationClientID: String, httpClient: HTTPClient, clock: any WallClock = SystemWallClock(),
        attemptTimeout: Double = 10
    ) {
        self.attemptTimeout = attemptTimeout
        self.authority = AzureHTTP.trimmingSlash(authority)
        self.applicationClientID = applicationClientID
        self.httpClient = httpClient
        self.clock = clock
    }

    /// The scope for a resource: `https://vault.azure.net` → `https://vault.azure.net/.default`.
    public static func scope(for resource: String) -> String {
        AzureHTTP.trimmingSlash(resource) + "/.default"
    }

    public func exchange(tenantID: String, resource: String, assertion: String, deadline: Date) async throws -> AccessToken {
        let form = [
            ("client_id", applicationClientID), ("scope", Self.scope(for: resource)), ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), ("client_assertion", assertion),
        ].map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .urlQueryValueAllowed) ?? $0.1)" }.joined(separator: "&")
        let tenant = tenantID.addingPercentEncoding(withAllowedCharacters: .urlQueryValueAllowed) ?? tenantID
        var request = HTTPClientRequest(url: "\(authority)/\(tenant)/oauth2/v2.0/token")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "client-request-id", value: AzureHTTP.newClientRequestID())
        request.body = .bytes(ByteBuffer(string: form))
        let sentAt = clock.now
        let response: AzureHTTP.Response
        do {
            response = try await AzureHTTP.send(request, with: httpClient, deadline: deadline, clock: clock, attemptTimeout: attemptTimeout)
        } catch let failure as TransportFailure {
            IdentityMetrics.tokenExchange(.unavailable)
            throw AzureIdentityError.transport(failure)
        }
        let body = response.data
        guard response.status == 200 else {
            let retryAfter = parseRetryAfter(response.headers.first(name: "Retry-After"), now: clock.now)
            let error = AADSTSError.parse(status: response.status, body: body, retryAfter: retryAfter)
                ?? AADSTSError(
                    httpStatus: response.status, error: "http_\(response.status)", code: nil,
                    serviceDescription: AzureJSON.excerpt(body, limit: 200))
            IdentityMetrics.tokenExchange(IdentityMetrics.exchangeOutcome(error))
            throw AzureIdentityError.entra(error)
        }
        let answer: EntraTokenBody
        do {
            answer = try EntraTokenBody(parsing: body)
        } catch {
            IdentityMetrics.tokenExchange(.error)
            throw AzureIdentityError.malformedResponse(service: "Entra token endpoint", detail: error.detail)
        }
        IdentityMetrics.tokenExchange(.success)
        // Measured from when the request left, so the cached lifetime errs short.
        return AccessToken(token: answer.accessToken, expiresOn: sentAt.addingTimeInterval(answer.expiresIn))
    }
}
