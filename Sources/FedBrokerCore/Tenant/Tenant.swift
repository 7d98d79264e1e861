import Foundation

/// A customer tenant as stored: who they are, which key they use, which FIC slot serves them,
/// where they are in their lifecycle, and the version for optimistic concurrency.
public struct Tenant: Hashable, Sendable {
    public let id: TenantID
    public let entraTenantID: EntraTenantID
    public var displayName: String
    /// Azure geography the customer's data lives in (e.g. `europe`); used for placement and reports.
    public var geo: String
    public var lifecycle: TenantLifecycle
    /// The FIC slot that serves this tenant; `nil` until one is `active` to place it on.
    public var slotID: FICSlotID?
    public let createdAt: Date
    public var updatedAt: Date
    /// When the tenant last became servable (activated, restored, access found again) or its key
    /// reference changed: the customer's role grant for that key may not have reached every Key
    /// Vault front end yet, so a `ForbiddenByRbac` within `vault.rolePropagationSeconds` of it is
    /// answered as retryable rather than taken as a revocation. A slot move, a validation or a
    /// rename leaves it alone, so an SRE's drain does not reopen the window.
    public var keyAccessChangedAt: Date
    public var version: RecordVersion

    public init(
        id: TenantID, entraTenantID: EntraTenantID, displayName: String, geo: String, lifecycle: TenantLifecycle,
        slotID: FICSlotID?, createdAt: Date, updatedAt: Date, keyAccessChangedAt: Date? = nil, version: RecordVersion
    ) {
        self.id = id
        self.entraTenantID = entraTenantID
        self.displayName = displayName
        self.geo = geo
        self.lifecycle = lifecycle
        self.slotID = slotID
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.keyAccessChangedAt = keyAccessChangedAt ?? createdAt
        self.version = version
    }

    public var state: TenantState { self.lifecycle.state }
    public var key: KeyReference { self.lifecycle.key }
}

/// What onboarding staff submit to register a customer.
public struct TenantRegistration: Hashable, Sendable {
    public var id: TenantID
    public var entraTenantID: EntraTenantID
    public var displayName: String
    public var geo: String
    public var key: KeyReference

    public init(id: TenantID, entraTenantID: EntraTenantID, displayName: String, geo: String, key: KeyReference) throws {
        let name = displayName.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...256).contains(name.count) else {
            throw BrokerError(.invalidArgument, "display name must be 1-256 characters")
        }
        // Shown on terminals and in confirmation prompts: no control or format characters.
        guard !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0.properties.generalCategory == .format }) else {
            throw BrokerError(.invalidArgument, "display name must not contain control characters")
        }
        guard (1...64).contains(geo.count) else {
            throw BrokerError(.invalidArgument, "geo must be 1-64 characters")
        }
        self.id = id
        self.entraTenantID = entraTenantID
        self.displayName = name
        self.geo = geo
        self.key = key
    }
}
