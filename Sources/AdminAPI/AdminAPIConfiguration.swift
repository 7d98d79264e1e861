import Foundation

/// What the admin API needs to know beyond the store and Azure's environment.
public struct AdminAPIConfiguration: Sendable {
    /// The ISV's Entra tenant: staff tokens must be issued there.
    public var staffTenantID: String
    /// The `aud` values accepted: the admin application's identifier URI (`api://fedbroker-admin`)
    /// and its client id (Entra puts the client id in v2.0 tokens, the URI in v1.0 ones).
    public var audiences: Set<String>
    /// The ISV application's display name, as the customer's admin sees it in the consent prompt.
    public var applicationDisplayName = "fedbroker"
    /// Where the customer's admin lands after granting consent (`redirect_uri`); none: Entra's default.
    public var consentRedirectURI: String?
    /// How long a successful validation allows activation.
    public var validationFreshness: TimeInterval = 24 * 3600
    /// Accepted `geo` values.
    public var geos: Set<String> = AdminAPIConfiguration.defaultGeos
    /// Clock skew tolerated on a token's `exp` and `nbf`.
    public var tokenClockSkew: TimeInterval = 120
    /// The shortest time between two JWKS fetches triggered by unknown key ids.
    public var jwksRefetchInterval: TimeInterval = 30
    /// The longest one validation may take (every step of the chain).
    public var validationTimeout: Double = 30

    public init(staffTenantID: String, audiences: Set<String>) {
        self.staffTenantID = staffTenantID
        self.audiences = audiences
    }

    /// Request bodies above this are refused with 413 before they are parsed.
    public static let maximumBodyBytes = 64 * 1024

    /// Azure geographies, by the short names staff use.
    public static let defaultGeos: Set<String> = [
        "us", "canada", "brazil", "europe", "uk", "france", "germany", "switzerland", "norway", "sweden", "poland",
        "italy", "spain", "uae", "qatar", "israel", "south-africa", "india", "japan", "korea", "asia-pacific",
        "australia", "new-zealand",
    ]
}
