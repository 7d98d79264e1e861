import Foundation

/// A page request for the audit trail. Every filter is optional; records come oldest first.
public struct AuditQuery: Hashable, Sendable {
    public var tenant: TenantID?
    /// The record's actor: a caller's identity, or `staff:<oid> …` for admin actions (prefix match).
    public var actor: String?
    public var operation: String?
    public var from: Date?
    public var to: Date?
    /// Records after this sequence number (the previous page's last).
    public var afterSequence: Int64
    public var limit: Int

    public init(
        tenant: TenantID? = nil, actor: String? = nil, operation: String? = nil, from: Date? = nil, to: Date? = nil,
        afterSequence: Int64 = 0, limit: Int = 100
    ) {
        self.tenant = tenant
        self.actor = actor
        self.operation = operation
        self.from = from
        self.to = to
        self.afterSequence = max(0, afterSequence)
        self.limit = max(1, min(limit, 1_000))
    }
}
