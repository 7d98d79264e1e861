import Foundation

/// What a vault's 401 says about itself: `WWW-Authenticate: Bearer authorization="https://login…/{tenant}",
/// resource="https://vault.azure.net"`. The tenant is the vault's own: a cross-tenant client
/// learns the customer tenant from it, and the broker checks it against the registration.
public struct VaultChallenge: Sendable, Equatable {
    public var authorization: String
    public var tenantID: String
    /// The token resource (scope without `/.default`).
    public var resource: String

    /// Parses the header as Azure SDKs do: `authorization` or `authorization_uri`; `resource`
    /// or `scope` (whose `/.default` is dropped); the tenant is the first path segment.
    public init?(header: String) {
        guard header.lowercased().hasPrefix("bearer") else { return nil }
        var fields: [String: String] = [:]
        let body = header.dropFirst("bearer".count)
        for part in body.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { continue }
            let name = pair[0].trimmingCharacters(in: .whitespaces).lowercased()
            let value = pair[1].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            fields[name] = value
        }
        guard let authorization = fields["authorization"] ?? fields["authorization_uri"],
            let url = URL(string: authorization), url.scheme == "https",
            let tenant = url.path.split(separator: "/").first.map(String.init), !tenant.isEmpty
        else { return nil }
        var resource = fields["resource"] ?? fields["scope"] ?? "https://vault.azure.net"
        if resource.hasSuffix("/.default") { resource = String(resource.dropLast("/.default".count)) }
        self.authorization = authorization
        self.tenantID = tenant
        self.resource = resource
    }
}
