import AsyncHTTPClient
import AzureHTTP
import AzureWire
import FedBrokerCore
import Foundation
import NIOCore
import NIOHTTP1

/// A user-assigned managed identity's token for `api://AzureADTokenExchange` from the
/// Instance Metadata Service, with IMDS's retry rules (404, 410 for up to 70 s, 429, 5xx with
/// backoff; other 4xx are not retried) and IMDS's limits for the identity category: at most 5
/// requests in flight and 20 per second per VM, shared by every source on the endpoint.
/// Callers go through `TokenCache`, which keeps them far below either in normal operation.
public struct IMDSAssertionSource: AssertionSource {
    public let clientID: String
    let endpoint: String
    let httpClient: HTTPClient
    let clock: any WallClock
    let backoff: Backoff
    let gate: ConcurrencyGate
    let attemptTimeout: Double
    public let credentialPropagatingUntil: Date?

    public var identity: String { "mi:\(clientID)" }

    /// - Parameters:
    ///   - endpoint: the IMDS base URL, `http://169.254.169.254` on Azure.
    public init(
        clientID: String, endpoint: String = "http://169.254.169.254", httpClient: HTTPClient,
        clock: any WallClock = SystemWallClock(), backoff: Backoff = Backoff(initial: 1, maximum: 10, maxRetries: 12),
        attemptTimeout: Double = 5, credentialPropagatingUntil: Date? = nil
    ) {
        self.attemptTimeout = attemptTimeout
        self.credentialPropagatingUntil = credentialPropagatingUntil
        self.clientID = clientID
        self.endpoint = AzureHTTP.trimmingSlash(endpoint)
        self.httpClient = httpClient
        self.clock = clock
        self.backoff = backoff
        self.gate = ConcurrencyGate.shared(for: self.endpoint, limit: 5, perSecond: 20)
    }

    public func assertion(deadline: Date) async throws -> AccessToken {
        try await retrying(deadline: deadline, clock: clock, backoff: backoff, isRetryable: defaultIsRetryable) {
            try await gate.run(clock: clock, deadline: deadline) { try await fetchOnce(deadline: deadline) }
        }
    }

    private func fetchOnce(deadline: Date) async throws -> AccessToken {
        let resource = tokenExchangeAudience.addingPercentEncoding(withAllowedCharacters: .urlQueryValueAllowed) ?? tokenExchangeAudience
        var request = HTTPClientRequest(
            url: "\(endpoint)/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(resource)&client_id=\(clientID)")
        request.headers.add(name: "Metadata", value: "true")
        request.headers.add(name: "x-ms-client-request-id", value: AzureHTTP.newClientRequestID())
        let response: AzureHTTP.Response
        do {
            response = try await AzureHTTP.send(request, with: httpClient, deadline: deadline, clock: clock, attemptTimeout: attemptTimeout)
        } catch let failure as TransportFailure {
            IdentityMetrics.imdsRequest(.unavailable)
            throw AzureIdentityError.transport(failure)
        }
        guard response.status == 200 else {
            IdentityMetrics.imdsRequest(IdentityMetrics.imdsOutcome(status: response.status))
            let body = IMDSErrorBody(parsing: response.data)
            throw AzureIdentityError.imds(status: response.status, error: body.error, description: body.description)
        }
        // IMDS sends numbers as strings; IMDSTokenBody accepts either and bounds the lifetime.
        let answer: IMDSTokenBody
        do {
            answer = try IMDSTokenBody(parsing: response.data, now: clock.now)
        } catch {
            IdentityMetrics.imdsRequest(.error)
            throw AzureIdentityError.malformedResponse(service: "IMDS", detail: error.detail)
        }
        IdentityMetrics.imdsRequest(.success)
        return AccessToken(token: answer.accessToken, expiresOn: answer.expiresOn)
    }

}

extension CharacterSet {
    /// Unreserved characters only, for query values that contain `:` and `/`.
    static let urlQueryValueAllowed: CharacterSet = {
        var set = CharacterSet.alphanumerics
        set.insert(charactersIn: "-._~")
        return set
    }()
}
