import AzureHTTP
import CoreMetrics

/// What the identity clients record through swift-metrics (docs/metrics.md): one count per
/// request to IMDS and per token exchange at Entra, by outcome. Labels come from closed sets
/// only: never a tenant, a client id or a token.
enum IdentityMetrics {
    enum Outcome: String, Sendable, CaseIterable {
        case success
        /// The customer's tenant refused the application (not consented or removed, Conditional
        /// Access); for IMDS, a 4xx other than 404/410/429 (the identity is not on this machine).
        case refused
        /// Entra rejected the assertion: no matching FIC, an invalid client, an expired assertion.
        case credentialRejected = "credential_rejected"
        /// 429.
        case throttled
        /// No answer, 5xx, or (IMDS) 404/410 while it starts; Entra's temporarily-unavailable family.
        case unavailable
        /// Anything else: an unknown tenant, a bad scope, a malformed answer.
        case error
    }

    static let imdsRequests = "fedbroker_imds_requests_total"
    static let tokenExchanges = "fedbroker_token_exchanges_total"

    static func imdsRequest(_ outcome: Outcome) {
        Counter(label: imdsRequests, dimensions: [("outcome", outcome.rawValue)]).increment()
    }

    static func tokenExchange(_ outcome: Outcome) {
        Counter(label: tokenExchanges, dimensions: [("outcome", outcome.rawValue)]).increment()
    }

    /// An IMDS answer other than 200, by its status.
    static func imdsOutcome(status: Int) -> Outcome {
        switch status {
        case 429: .throttled
        case 404, 410, 500...599: .unavailable
        case 400..<500: .refused
        default: .error
        }
    }

    /// A failed exchange, by Entra's classified error.
    static func exchangeOutcome(_ error: AADSTSError) -> Outcome {
        if error.httpStatus == 429 { return .throttled }
        switch error.kind {
        case .applicationNotInTenant, .applicationDisabled, .conditionalAccess: return .refused
        case .noMatchingFederatedCredential, .invalidClient, .assertionExpired: return .credentialRejected
        case .throttledOrUnavailable: return .unavailable
        case .unknownTenant, .invalidScope, .other: return .error
        }
    }
}
