import AzureHTTP
import FedBrokerCore
import Foundation

/// A Microsoft Graph failure on the application's federated identity credentials, classified by
/// status and Graph's `error.code` (message text only where Graph gives nothing else: the
/// 20-credential limit), with what an SRE needs to find the call in Graph's logs.
///
/// Equality compares `kind` only: callers and tests match on what went wrong, not on Graph's
/// wording or request ids.
public struct GraphError: Error, Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, RetryAfterHinting {
    /// What went wrong. Each case says whether a caller may retry.
    public enum Kind: Sendable, Equatable {
        /// 403 (`Authorization_RequestDenied`): the application may not manage these credentials
        /// (Graph's `Application.ReadWrite.OwnedBy` permission missing or revoked). Not retryable:
        /// an administrator must grant it.
        case insufficientPrivileges
        /// The application already has 20 federated identity credentials. Not retryable: retire a
        /// slot first.
        case credentialLimitReached
        /// 404: the application or the credential does not exist. On delete, "already gone".
        case notFound
        /// 409: a credential with this name exists (names are unique per application and immutable).
        case nameConflict
        /// 400 `InvalidFederatedIdentityCredentialValue`: a credential with this issuer and subject
        /// exists under another name (the pair is unique per application).
        case duplicateIssuerSubject
        /// 429, still after the retries the deadline allowed; `retryAfter` is Graph's last
        /// `Retry-After` (clamped), in seconds.
        case throttled(retryAfter: Double?)
        /// Any other 4xx: the request is wrong as sent. Not retryable.
        case invalidRequest
        /// Refused before sending: an id, name or value that cannot be put in a URL or a body, or a
        /// Graph URL that is not https. Not retryable.
        case invalidArgument
        /// 401: Graph refused the token (expired, wrong audience, wrong tenant).
        case unauthorized
        /// 5xx; 503 and 504 were retried within the deadline.
        case server(status: Int)
        /// No HTTP answer; retryable failures were retried within the deadline.
        case transport(TransportFailure)
        /// A 2xx whose body is not a credential (or a list of them).
        case malformedResponse
    }

    public var kind: Kind
    public var httpStatus: Int?
    /// Graph's `error.code` (`Authorization_RequestDenied`, `Request_BadRequest`, …), as sent.
    public var graphCode: String?
    /// Graph's `error.message`, at most 256 characters with control characters escaped, so a
    /// hostile or broken answer cannot flood or forge log lines.
    public var graphMessage: String?
    /// Graph's `request-id` (header, else `error.innerError.request-id`): what Microsoft support asks for.
    public var requestID: String?
    /// The `client-request-id` the client sent, the same on every retry of one call.
    public var clientRequestID: String
    /// Graph's `Retry-After` on this answer, clamped (see `GraphClient.Configuration.maximumRetryAfter`).
    public var retryAfter: Double?

    public init(
        kind: Kind, httpStatus: Int? = nil, graphCode: String? = nil, graphMessage: String? = nil, requestID: String? = nil,
        clientRequestID: String, retryAfter: Double? = nil
    ) {
        self.kind = kind
        self.httpStatus = httpStatus
        // All three come from Graph's answer (its body, its `request-id` header) and reach logs,
        // a slot job's message and the admin API: bounded, control characters escaped.
        self.graphCode = graphCode.map { BoundedText.escaped($0, limit: 128) }
        self.graphMessage = graphMessage.map { BoundedText.escaped($0) }
        self.requestID = requestID.map { BoundedText.escaped($0, limit: 128) }
        self.clientRequestID = clientRequestID
        self.retryAfter = retryAfter
    }

    public static func == (lhs: GraphError, rhs: GraphError) -> Bool { lhs.kind == rhs.kind }

    /// A stable, snake_case label for logs, metrics and the admin API.
    public var code: String {
        switch kind {
        case .insufficientPrivileges: "insufficient_privileges"
        case .credentialLimitReached: "credential_limit_reached"
        case .notFound: "not_found"
        case .nameConflict: "name_conflict"
        case .duplicateIssuerSubject: "duplicate_issuer_subject"
        case .throttled: "throttled"
        case .invalidRequest: "invalid_request"
        case .invalidArgument: "invalid_argument"
        case .unauthorized: "unauthorized"
        case .server: "server_error"
        case .transport: "transport"
        case .malformedResponse: "malformed_response"
        }
    }

    /// Worth another try inside the deadline: throttling, a busy or timed-out gateway, a lost connection.
    public var isRetryable: Bool {
        switch kind {
        case .throttled: true
        case .server(let status): status == 503 || status == 504
        case .transport(let failure): failure.isRetryable
        default: false
        }
    }

    package var retryAfterHint: Double? { retryAfter }

    /// Code, status, Graph's code and the request ids; Graph's message only in `debugDescription`.
    public var description: String {
        var parts = ["Graph \(code)"]
        if let httpStatus { parts.append("HTTP \(httpStatus)") }
        if let graphCode { parts.append(graphCode) }
        if case .transport(let failure) = kind { parts.append(failure.description) }
        if let requestID { parts.append("request-id \(requestID)") }
        parts.append("client-request-id \(clientRequestID)")
        return parts.joined(separator: " ")
    }

    public var debugDescription: String {
        guard let graphMessage else { return description }
        return "\(description): \(graphMessage)"
    }
}
