import AzureHTTP
import Foundation

/// Every way getting a token can fail, each with a stable code for logs and metrics.
public enum AzureIdentityError: Error, Sendable, Equatable, CustomStringConvertible, RetryAfterHinting {
    /// IMDS answered with an error (`error`, `error_description`).
    case imds(status: Int, error: String, description: String)
    /// The token endpoint answered with an AADSTS error.
    case entra(AADSTSError)
    /// The ISV's own tenant refused the workload identity's exchange (AKS: the service-account
    /// token for the managed identity's token). fedbroker's configuration, never a customer's
    /// decision: kept apart from `entra` so an AADSTS700016 or 53003 there is not read as a
    /// customer removing the application.
    case isvTenant(AADSTSError)
    /// No HTTP answer.
    case transport(TransportFailure)
    /// A 200 whose body is not what the service sends.
    case malformedResponse(service: String, detail: String)
    /// The federated token file could not be read or holds no JWT.
    case tokenFile(path: String, detail: String)
    /// The caller's deadline passed, with the last failure seen.
    case deadlineExceeded(lastFailure: String?)

    public var code: String {
        switch self {
        case .imds: "IMDS_ERROR"
        case .entra(let e), .isvTenant(let e): "AADSTS\(e.code.map(String.init) ?? "")"
        case .transport: "TRANSPORT"
        case .malformedResponse: "MALFORMED_RESPONSE"
        case .tokenFile: "TOKEN_FILE"
        case .deadlineExceeded: "DEADLINE_EXCEEDED"
        }
    }

    public var description: String {
        switch self {
        case .imds(let status, let error, let description): "IMDS \(status) \(error): \(description)"
        case .entra(let e): e.description
        case .isvTenant(let e): "the ISV's own tenant refused the workload identity (check azure.isvTenantID and the identity's client id): \(e.description)"
        case .transport(let t): t.description
        case .malformedResponse(let service, let detail): "malformed \(service) response: \(detail)"
        case .tokenFile(let path, let detail): "federated token file \(path): \(detail)"
        case .deadlineExceeded(let last): "deadline exceeded" + (last.map { " (last failure: \($0))" } ?? "")
        }
    }

    /// IMDS's rules: retry 404, 410, 429 and 5xx; other 4xx are design-time errors.
    static func imdsIsRetryable(status: Int) -> Bool {
        status == 404 || status == 410 || status == 429 || status >= 500
    }

    package var retryAfterHint: Double? {
        switch self {
        case .entra(let e), .isvTenant(let e): e.retryAfter
        // "IMDS is going through updates and will be available in a maximum of 70 seconds":
        // steady 10 s waits (as MSAL does) cover the 70 s within the retry count.
        case .imds(410, _, _): 10
        default: nil
        }
    }

    public var isRetryable: Bool {
        switch self {
        case .imds(let status, _, _): Self.imdsIsRetryable(status: status)
        case .entra(let e), .isvTenant(let e): e.isRetryable
        case .transport(let t): t.isRetryable
        case .malformedResponse, .tokenFile, .deadlineExceeded: false
        }
    }
}

/// The retry rule for the identity clients' own errors (IMDS, the token endpoint, transport).
package func defaultIsRetryable(_ error: any Error) -> Bool {
    if let e = error as? AzureIdentityError { return e.isRetryable }
    return false
}
