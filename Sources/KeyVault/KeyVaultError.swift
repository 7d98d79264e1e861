import AzureHTTP
import FedBrokerCore
import Foundation

/// A Key Vault data-plane failure, classified by status and `error.code` / `innererror.code`
/// (never by message text), with what the caller needs to decide and to audit.
public struct KeyVaultError: Error, Sendable, Equatable, CustomStringConvertible, RetryAfterHinting {
    public enum Kind: String, Sendable, Equatable {
        case forbiddenByRbac, forbiddenByPolicy, forbiddenByFirewall
        case keyDisabled, keyOperationForbidden, keyExpired
        case keyNotFound
        /// 401 after a fresh token: the vault does not accept the broker's tokens.
        case unauthorized
        case badParameter
        case throttled
        case serverError
        /// The challenge named another tenant than the one the key was registered under.
        case challengeTenantMismatch
        case timeout
        case connectionFailed
        case tlsFailed
        /// The local per-vault budget has no room before the deadline.
        case budgetExhausted
        /// The vault failed repeatedly; calls to it are refused without being sent for a while.
        case circuitOpen
        /// The vault URL is not https on an allowed vault domain: no token is sent to it.
        case invalidVaultURL
        case other
    }

    public var kind: Kind
    public var httpStatus: Int?
    /// `error.code`, e.g. `Forbidden`, `Unauthorized`, `BadParameter`.
    public var code: String?
    /// `error.innererror.code`, e.g. `ForbiddenByRbac`, `KeyDisabled`.
    public var innerCode: String?
    /// The AKV code in a 401 message (`AKV10032`), for the SRE reading the log.
    public var akvCode: String?
    /// The service's message, for people.
    public var serviceMessage: String
    public var retryAfter: Double?
    public var clientRequestID: String
    public var requestID: String?

    public init(
        kind: Kind, httpStatus: Int? = nil, code: String? = nil, innerCode: String? = nil, akvCode: String? = nil,
        serviceMessage: String = "", retryAfter: Double? = nil, clientRequestID: String, requestID: String? = nil
    ) {
        self.kind = kind
        self.httpStatus = httpStatus
        self.code = code
        self.innerCode = innerCode
        self.akvCode = akvCode
        self.serviceMessage = serviceMessage
        self.retryAfter = retryAfter
        self.clientRequestID = clientRequestID
        self.requestID = requestID.map { BoundedText.escaped($0, limit: 128) }  // Key Vault's header: bounded, escaped
    }

    /// Classifies an error response of the data plane.
    static func classify(status: Int, code: String?, innerCode: String?) -> Kind {
        switch (status, innerCode) {
        case (403, "ForbiddenByRbac"): return .forbiddenByRbac
        case (403, "ForbiddenByPolicy"): return .forbiddenByPolicy
        case (403, "ForbiddenByFirewall"), (403, "ForbiddenByConnection"): return .forbiddenByFirewall
        case (403, "KeyDisabled"): return .keyDisabled
        case (403, "KeyOperationForbidden"): return .keyOperationForbidden
        case (403, "KeyExpired"), (403, "KeyNotYetValid"): return .keyExpired
        default: break
        }
        switch status {
        case 401: return .unauthorized
        case 404 where code == "KeyNotFound": return .keyNotFound
        case 400: return .badParameter
        case 429: return .throttled
        case 500...599: return .serverError
        default: return .other
        }
    }

    package var retryAfterHint: Double? { retryAfter }

    /// Transient: worth another try inside the deadline.
    public var isRetryable: Bool {
        switch kind {
        // budgetExhausted is already "no room before the deadline": retrying cannot help.
        case .throttled, .serverError, .timeout, .connectionFailed: true
        default: false
        }
    }

    /// The customer has withdrawn access (role removed, key disabled, operation removed): stop
    /// serving the tenant at once, do not retry.
    public var isCustomerRevocation: Bool {
        switch kind {
        // Not a 401: the vault did not accept the broker's token (audience, clock, a vault moved),
        // which BrokerService treats as its own trouble; a lost tenant's probe says inconclusive.
        case .forbiddenByRbac, .forbiddenByPolicy, .keyDisabled, .keyOperationForbidden: true
        default: false
        }
    }

    public var description: String {
        var parts = ["KeyVault \(kind.rawValue)"]
        if let httpStatus { parts.append("HTTP \(httpStatus)") }
        if let innerCode { parts.append(innerCode) } else if let code { parts.append(code) }
        if let akvCode { parts.append(akvCode) }
        parts.append("client-request-id \(clientRequestID)")
        return parts.joined(separator: " ")
    }

    static func transport(_ failure: TransportFailure, clientRequestID: String) -> KeyVaultError {
        switch failure {
        case .deadlineExceeded: .init(kind: .timeout, serviceMessage: failure.description, clientRequestID: clientRequestID)
        case .connectionFailed: .init(kind: .connectionFailed, serviceMessage: failure.description, clientRequestID: clientRequestID)
        case .tls: .init(kind: .tlsFailed, serviceMessage: failure.description, clientRequestID: clientRequestID)
        case .invalidRequest: .init(kind: .invalidVaultURL, serviceMessage: failure.description, clientRequestID: clientRequestID)
        }
    }
}
