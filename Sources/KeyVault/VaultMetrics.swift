import CoreMetrics
import Foundation

/// What the vault client records through swift-metrics (docs/metrics.md). Labels come from closed
/// sets only: never a vault URL, key name, tenant or token.
enum VaultMetrics {
    /// The data-plane operation, as Key Vault's REST API names it.
    enum Operation: String, Sendable {
        case get
        case wrapkey
        case unwrapkey
        /// The unauthenticated request that reads a vault's 401 challenge (onboarding's probe).
        case challenge
    }

    /// How one request to a vault ended.
    enum Outcome: String, Sendable, CaseIterable {
        /// 2xx.
        case success
        /// 401/403: the vault refused the broker (role removed, key disabled, wrong tenant, …).
        case refused
        /// 404: no such key or version.
        case notFound = "not_found"
        /// 429 from the vault, or the broker's own per-vault budget had no room (not sent).
        case throttled
        /// 5xx, a timeout, a refused or reset connection, a TLS failure.
        case unavailable
        /// Not sent: the vault's circuit is open after repeated failures.
        case circuitOpen = "circuit_open"
        /// Anything else (400, an unexpected answer, a URL that is not a vault's).
        case error
    }

    static let requests = "fedbroker_vault_requests_total"
    static let duration = "fedbroker_vault_request_duration_seconds"

    /// One request (one HTTP attempt, or one refused before it was sent).
    static func record(_ operation: Operation, _ outcome: Outcome, seconds: Double?) {
        Counter(label: requests, dimensions: [("operation", operation.rawValue), ("outcome", outcome.rawValue)]).increment()
        if let seconds {
            CoreMetrics.Timer(label: duration, dimensions: [("operation", operation.rawValue)])
                .recordNanoseconds(Int64((seconds * 1_000_000_000).rounded()))
        }
    }

    /// The outcome a failed request counts as.
    static func outcome(of error: KeyVaultError) -> Outcome {
        switch error.kind {
        case .forbiddenByRbac, .forbiddenByPolicy, .forbiddenByFirewall, .keyDisabled, .keyOperationForbidden, .keyExpired,
            .unauthorized, .challengeTenantMismatch:
            .refused
        case .keyNotFound: .notFound
        case .throttled, .budgetExhausted: .throttled
        case .serverError, .timeout, .connectionFailed, .tlsFailed: .unavailable
        case .circuitOpen: .circuitOpen
        case .badParameter, .invalidVaultURL, .other: .error
        }
    }
}
