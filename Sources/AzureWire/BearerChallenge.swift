import Foundation

/// A `WWW-Authenticate: Bearer authorization="https://login…/{tenant}", resource="…"` header as
/// Key Vault sends it with a 401, parsed as Azure SDKs do: `authorization` or
/// `authorization_uri`; `resource` or `scope` (whose `/.default` is dropped); the tenant is the
/// first path segment. Read within bounds, because the tenant and resource are compared,
/// shown in messages and turned into a token request.
public struct BearerChallenge: Sendable, Equatable {
    public var authorization: String
    /// A tenant id or domain: `[A-Za-z0-9._-]`, 1–128 characters, nothing else is believed.
    public var tenantID: String
    /// The token resource (scope without `/.default`).
    public var resource: String

    /// The longest header read; Key Vault's is about 130 characters.
    static let maximumHeaderLength = 4096

    /// Nil unless the header is a bearer challenge with an https authorization URL naming a
    /// well-formed tenant, and a resource without control characters.
    public init?(header: String) {
        guard header.utf8.count <= Self.maximumHeaderLength, header.lowercased().hasPrefix("bearer") else { return nil }
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
            authorization.utf8.count <= AzureWireLimits.maximumIdentifierLength,
            let url = URL(string: authorization), url.scheme == "https",
            let tenant = url.path.split(separator: "/").first.map(String.init), Self.isTenant(tenant)
        else { return nil }
        var resource = fields["resource"] ?? fields["scope"] ?? "https://vault.azure.net"
        if resource.hasSuffix("/.default") { resource = String(resource.dropLast("/.default".count)) }
        guard !resource.isEmpty, resource.utf8.count <= AzureWireLimits.maximumIdentifierLength,
            resource.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F && !(0x80...0x9F).contains($0.value) })
        else { return nil }
        self.authorization = authorization
        self.tenantID = tenant
        self.resource = resource
    }

    /// A GUID or a domain name: what Entra accepts as a tenant in a token URL.
    static func isTenant(_ text: String) -> Bool {
        (1...128).contains(text.utf8.count)
            && text.utf8.allSatisfy {
                switch $0 {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                    UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                    true
                default: false
                }
            }
    }
}
