import AzureWire
import Foundation

/// What a vault's 401 says about itself: `WWW-Authenticate: Bearer authorization="https://login…/{tenant}",
/// resource="https://vault.azure.net"`. The tenant is the vault's own: a cross-tenant client
/// learns the customer tenant from it, and the broker checks it against the registration.
public struct VaultChallenge: Sendable, Equatable {
    public var authorization: String
    public var tenantID: String
    /// The token resource (scope without `/.default`).
    public var resource: String

    /// Parses the header as Azure SDKs do (`BearerChallenge`, within its bounds): nil unless it
    /// is a bearer challenge naming an https authorization URL and a well-formed tenant.
    public init?(header: String) {
        guard let parsed = BearerChallenge(header: header) else { return nil }
        self.authorization = parsed.authorization
        self.tenantID = parsed.tenantID
        self.resource = parsed.resource
    }
}
