import Foundation

/// A page request for the tenant list: filters, the last id of the previous page, a size.
public struct TenantQuery: Hashable, Sendable {
    public var state: TenantState?
    public var geo: String?
    /// Tenants with ids after this one (the previous page's last id).
    public var after: TenantID?
    public var limit: Int

    public init(state: TenantState? = nil, geo: String? = nil, after: TenantID? = nil, limit: Int = 100) {
        self.state = state
        self.geo = geo
        self.after = after
        self.limit = max(1, min(limit, 1_000))
    }
}
