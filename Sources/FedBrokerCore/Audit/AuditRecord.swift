import Foundation

/// One entry of the audit trail: every key operation and every administrative change.
///
/// Every text field is bounded (`Limits`, in UTF-8 bytes) and has its control characters escaped
/// (`BoundedText`) here, at construction, whoever builds the record: an actor, a detail or a
/// request id may come from a caller before it was authorized (an unknown tenant's name echoed in
/// `detail`), and neither the audit queue nor the table may grow with what a caller chose to send.
///
/// - Important: never holds key material, tokens or plaintext; `detail` is for codes and short,
///   non-secret context (an error code, a suspension reason).
public struct AuditRecord: Hashable, Sendable {
    /// The most UTF-8 bytes each text field keeps; longer text is cut and ends with `…`.
    public enum Limits {
        /// A caller's identity (a SPIFFE ID or an RFC 4514 subject), an operator or `fedbroker`.
        public static let actorBytes = 512
        public static let operationBytes = 64
        /// Key Vault issues 32 hex digits; anything longer did not come from Key Vault.
        public static let keyVersionBytes = 64
        /// The stable error code of a failure.
        public static let failureCodeBytes = 64
        /// fedbroker's request id and the `x-ms-client-request-id` (UUIDs, so far below this).
        public static let requestIDBytes = 128
        /// Room for a sentence of context with an echoed value of 256 bytes in it.
        public static let detailBytes = 512
    }

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
        id: UUID? = nil, time: Date, actor: String, tenantID: TenantID?, operation: String, keyVersion: String? = nil,
        outcome: Outcome, latencyMicroseconds: Int64 = 0, requestID: String? = nil, clientRequestID: String? = nil,
        detail: String? = nil
    ) {
        // Time-ordered, so the audit table's id index grows at its right edge (UUID+TimeOrdered.swift).
        self.id = id ?? .timeOrdered(at: time)
        self.time = time
        self.actor = BoundedText.escaped(actor, maximumBytes: Limits.actorBytes)
        self.tenantID = tenantID
        self.operation = BoundedText.escaped(operation, maximumBytes: Limits.operationBytes)
        self.keyVersion = keyVersion.map { BoundedText.escaped($0, maximumBytes: Limits.keyVersionBytes) }
        switch outcome {
        case .success: self.outcome = .success
        case .failure(let code): self.outcome = .failure(code: BoundedText.escaped(code, maximumBytes: Limits.failureCodeBytes))
        }
        self.latencyMicroseconds = latencyMicroseconds
        self.requestID = requestID.map { BoundedText.escaped($0, maximumBytes: Limits.requestIDBytes) }
        self.clientRequestID = clientRequestID.map { BoundedText.escaped($0, maximumBytes: Limits.requestIDBytes) }
        self.detail = detail.map { BoundedText.escaped($0, maximumBytes: Limits.detailBytes) }
    }

    /// A record read back from fedbroker's own journal, whose fields were bounded and escaped
    /// when it was first made: taken as they are, because escaping them again would double every
    /// backslash. Still cut to the limits, so a damaged journal cannot grow a record.
    package init(
        journaled id: UUID, time: Date, actor: String, tenantID: TenantID?, operation: String, keyVersion: String?,
        outcome: Outcome, latencyMicroseconds: Int64, requestID: String?, clientRequestID: String?, detail: String?
    ) {
        func cut(_ text: String, _ limit: Int) -> String {
            text.utf8.count <= limit ? text : BoundedText.escaped(text, maximumBytes: limit)
        }
        self.id = id
        self.time = time
        self.actor = cut(actor, Limits.actorBytes)
        self.tenantID = tenantID
        self.operation = cut(operation, Limits.operationBytes)
        self.keyVersion = keyVersion.map { cut($0, Limits.keyVersionBytes) }
        switch outcome {
        case .success: self.outcome = .success
        case .failure(let code): self.outcome = .failure(code: cut(code, Limits.failureCodeBytes))
        }
        self.latencyMicroseconds = latencyMicroseconds
        self.requestID = requestID.map { cut($0, Limits.requestIDBytes) }
        self.clientRequestID = clientRequestID.map { cut($0, Limits.requestIDBytes) }
        self.detail = detail.map { cut($0, Limits.detailBytes) }
    }

    /// What the record costs held in memory, roughly: its text plus a fixed part for the rest.
    /// The audit queue is bounded by the sum of these (`AuditWriter.Configuration.maximumQueueBytes`).
    public var approximateSize: Int {
        let failureCode: Int =
            switch self.outcome {
            case .success: 0
            case .failure(let code): code.utf8.count
            }
        return 160 + self.actor.utf8.count + (self.tenantID?.rawValue.utf8.count ?? 0) + self.operation.utf8.count
            + (self.keyVersion?.utf8.count ?? 0) + failureCode + (self.requestID?.utf8.count ?? 0)
            + (self.clientRequestID?.utf8.count ?? 0) + (self.detail?.utf8.count ?? 0)
    }
}
