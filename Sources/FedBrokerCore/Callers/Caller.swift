/// The operations an internal service may be granted.
public enum KeyOperation: String, CaseIterable, Hashable, Codable, Sendable, Comparable {
    case generateDataKey = "generate_data_key"
    case wrap
    case unwrap
    case rewrap
    case keyStatus = "key_status"

    public static func < (lhs: KeyOperation, rhs: KeyOperation) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Which tenants a grant covers.
public enum TenantScope: Hashable, Codable, Sendable {
    case all
    case only(Set<TenantID>)

    public func contains(_ tenant: TenantID) -> Bool {
        switch self {
        case .all: true
        case .only(let tenants): tenants.contains(tenant)
        }
    }
}

/// Some operations on some tenants.
public struct CallerGrant: Hashable, Codable, Sendable {
    public var operations: Set<KeyOperation>
    public var tenants: TenantScope

    public init(operations: Set<KeyOperation>, tenants: TenantScope) {
        self.operations = operations
        self.tenants = tenants
    }
}

extension Caller {
    /// Whether `id` is a valid caller id: 1-128 characters of `[A-Za-z0-9._-]`. Caller ids appear
    /// in URLs, logs and the audit trail, so they never need escaping.
    public static func isValidID(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count)
            && id.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                    true
                default:
                    false
                }
            }
    }
}

/// An internal service allowed to talk to fedbroker, identified by its mTLS client identity.
public struct Caller: Hashable, Sendable {
    /// Stable name (`billing-api`).
    public let id: String
    /// The identity its client certificate proves (subject or SAN URI); unique.
    public var identity: String
    public var grants: [CallerGrant]
    public var enabled: Bool
    /// Every operation of this caller must present a context (the bytes its blobs are bound to):
    /// a caller that binds each data key to, say, a record id opts in so that a blob is never
    /// opened, nor a key made, without one. Enforced on the request path; off by default.
    public var requireContext: Bool
    public var version: RecordVersion

    public init(
        id: String, identity: String, grants: [CallerGrant], enabled: Bool = true, requireContext: Bool = false,
        version: RecordVersion = .initial
    ) {
        self.id = id
        self.identity = identity
        self.grants = grants
        self.enabled = enabled
        self.requireContext = requireContext
        self.version = version
    }

    /// Whether this caller may perform `operation` for `tenant`. Disabled callers may do nothing.
    public func isAllowed(_ operation: KeyOperation, for tenant: TenantID) -> Bool {
        self.enabled && self.grants.contains { $0.operations.contains(operation) && $0.tenants.contains(tenant) }
    }
}
