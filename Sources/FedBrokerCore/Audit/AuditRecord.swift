import Foundation

/// One entry of the audit trail: every key operation and every administrative change.
///
/// - Important: never holds key material, tokens or plaintext; `detail` is for codes and short,
///   non-secret context (an error code, a suspension reason).
public struct AuditRecord: Hashable, Sendable {
    /// Whether the operation did what was asked.
    public enum Outcome: Hashable, Sendable {
        case success
        /// Failed, with the stable error code (e.g. `BrokerError.Code.rawValue` or a wire status).
        case failure(code: String)

        public var isSuccess: Bool { self == .success }
    }

    /// Unique per record; makes re-sent batches idempotent.
    public let id: UUID
    public let time: Date
    /// Who asked: a caller's identity, an operator, or `fedbroker` for detected changes.
    public let actor: String
    public let tenantID: TenantID?
    /// What was done: `wrap`, `unwrap`, `tenant.activated`, `slot.drain`, …
    public let operation: String
    /// The customer key version used, when a key was touched.
    public let keyVersion: String?
    public let outcome: Outcome
    /// How long the operation took, in microseconds.
    public let latencyMicroseconds: Int64
    /// fedbroker's own request id.
    public let requestID: String?
    /// The `x-ms-client-request-id` sent to Azure, for correlation with Microsoft's logs.
    public let clientRequestID: String?
    public let detail: String?

    public init(
        id: UUID = UUID(), time: Date, actor: String, tenantID: TenantID?, operation: String, keyVersion: String? = nil,
        outcome: Outcome, latencyMicroseconds: Int64 = 0, requestID: String? = nil, clientRequestID: String? = nil,
        detail: String? = nil
    ) {
        self.id = id
        self.time = time
        self.actor = actor
        self.tenantID = tenantID
        self.operation = operation
        self.keyVersion = keyVersion
        self.outcome = outcome
        self.latencyMicroseconds = latencyMicroseconds
        self.requestID = requestID
        self.clientRequestID = clientRequestID
        self.detail = detail
    }
}
