import AzureWire
import Foundation

/// A failure of the Entra token endpoint, classified by its AADSTS code and OAuth `error`,
/// never by its description text ("Never use this field to react to an error in your code").
public struct AADSTSError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// 70021, 700211–700213: no FIC matches the assertion (or not yet propagated).
        case noMatchingFederatedCredential
        /// 700016: the application has no service principal in the tenant (not consented, or removed).
        case applicationNotInTenant
        /// 7000112: the application's service principal in the tenant is disabled (the tenant's
        /// admin set "Enabled for users to sign-in" to No; `accountEnabled` false).
        case applicationDisabled
        /// 700024: the assertion was outside its validity window.
        case assertionExpired
        /// 90002: the tenant does not exist.
        case unknownTenant
        /// 53003: Conditional Access blocked the token.
        case conditionalAccess
        /// 700027, 50027, 7000215, 7000218, 7002137/7002138 (a FIC subject that matches only
        /// when case is ignored: a typo no propagation fixes) and other `invalid_client` failures.
        case invalidClient
        /// 70011, 1002012, 500011: the scope or resource is wrong.
        case invalidScope
        /// 429, 90055, 50196, `temporarily_unavailable` and the retryable AADSTS family.
        case throttledOrUnavailable
        case other
    }

    /// Who has to act for the failure to go away.
    public enum Responsible: String, Sendable, Equatable {
        case customer, onboarding, sre, nobody
    }

    public var kind: Kind
    public var code: Int?
    public var error: String
    public var httpStatus: Int
    public var traceID: String?
    public var correlationID: String?
    /// The service's text, for people; code never branches on it.
    public var serviceDescription: String
    public var retryAfter: Double?

    public init(
        httpStatus: Int, error: String, code: Int?, serviceDescription: String, traceID: String? = nil,
        correlationID: String? = nil, retryAfter: Double? = nil
    ) {
        self.httpStatus = httpStatus
        self.error = error
        self.code = code
        self.serviceDescription = serviceDescription
        self.traceID = traceID
        self.correlationID = correlationID
        self.retryAfter = retryAfter
        self.kind = Self.classify(code: code, error: error, httpStatus: httpStatus)
    }

    static let retryableCodes: Set<Int> = [50033, 90006, 90024, 90033, 90090, 50087, 90055, 50196]

    static func classify(code: Int?, error: String, httpStatus: Int) -> Kind {
        switch code {
        case 70021, 700211, 700212, 700213: return .noMatchingFederatedCredential
        case 7002137, 7002138: return .invalidClient  // permanent (WIRE.md §2.1): not waited out as propagation
        case 700016: return .applicationNotInTenant
        case 7000112: return .applicationDisabled
        case 700024: return .assertionExpired
        case 90002: return .unknownTenant
        case 53003: return .conditionalAccess
        case 70011, 1002012, 500011: return .invalidScope
        case let c? where retryableCodes.contains(c): return .throttledOrUnavailable
        default: break
        }
        if httpStatus == 429 || httpStatus >= 500 || error == "temporarily_unavailable" { return .throttledOrUnavailable }
        if error == "invalid_client" { return .invalidClient }
        if error == "invalid_tenant" { return .unknownTenant }
        if error == "invalid_scope" || error == "invalid_resource" { return .invalidScope }
        return .other
    }

    /// Worth retrying with backoff: transient failures, and a missing FIC match, which during
    /// propagation (minutes after a FIC is created) clears by itself. An expired assertion is
    /// retried once with a fresh assertion by the exchange itself.
    public var isRetryable: Bool {
        switch kind {
        case .throttledOrUnavailable, .noMatchingFederatedCredential: true
        default: false
        }
    }

    /// Set when the customer's side refuses the broker (consent removed, the application disabled,
    /// CA policy): service for the tenant should stop rather than retry.
    public var isCustomerRefusal: Bool {
        kind == .applicationNotInTenant || kind == .applicationDisabled || kind == .conditionalAccess
    }

    public var responsible: Responsible {
        switch kind {
        case .applicationNotInTenant, .applicationDisabled, .conditionalAccess: .customer
        case .unknownTenant, .invalidScope: .onboarding
        case .noMatchingFederatedCredential, .assertionExpired, .invalidClient, .other: .sre
        case .throttledOrUnavailable: .nobody
        }
    }

    public var description: String {
        "AADSTS\(code.map(String.init) ?? "?") (\(error), HTTP \(httpStatus), \(kind.rawValue))"
            + (traceID.map { " trace \($0)" } ?? "")
    }

    /// Parses an Entra error body (`EntraErrorBody`, within its bounds); nil when the body is not one.
    static func parse(status: Int, body: Data, retryAfter: Double?) -> AADSTSError? {
        guard let parsed = EntraErrorBody(parsing: body) else { return nil }
        return AADSTSError(
            httpStatus: status, error: parsed.error, code: parsed.code, serviceDescription: parsed.description,
            traceID: parsed.traceID, correlationID: parsed.correlationID, retryAfter: retryAfter)
    }
}
