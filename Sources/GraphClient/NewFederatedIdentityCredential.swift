import Foundation

/// What `GraphClient.createFederatedIdentityCredential` sends. Checked against Graph's documented
/// rules before sending (WIRE.md §3.1), so a bad value fails here with a clear message instead
/// of as a 400 from Graph, or worse, as a credential that is created but never matches.
public struct NewFederatedIdentityCredential: Sendable, Hashable {
    public var name: String
    public var issuer: String
    public var subject: String
    public var audiences: [String]
    public var description: String?

    /// The audience managed-identity assertions carry in Azure's global cloud.
    public static let tokenExchangeAudience = "api://AzureADTokenExchange"

    public init(
        name: String, issuer: String, subject: String, audiences: [String] = [Self.tokenExchangeAudience], description: String? = nil
    ) {
        self.name = name
        self.issuer = issuer
        self.subject = subject
        self.audiences = audiences
        self.description = description
    }

    /// A user-assigned managed identity of the application's own tenant as its credential (the
    /// cross-tenant CMK pattern, WIRE.md §3.2): issuer the tenant's v2.0 authority, subject the
    /// identity's principal (object) id, which Entra compares case-sensitively.
    /// - Parameter authority: `https://login.microsoftonline.com` in the global cloud.
    public static func managedIdentity(
        name: String, tenantID: String, principalID: String, description: String? = nil,
        authority: String = "https://login.microsoftonline.com", audience: String = Self.tokenExchangeAudience
    ) throws(GraphError) -> Self {
        guard GraphApplication.isGUID(tenantID) else { throw .invalidArgument("the tenant id is not a GUID", "none") }
        guard GraphApplication.isGUID(principalID) else { throw .invalidArgument("the principal id is not a GUID", "none") }
        let base = authority.hasSuffix("/") ? String(authority.dropLast()) : authority
        return Self(name: name, issuer: "\(base)/\(tenantID)/v2.0", subject: principalID, audiences: [audience], description: description)
    }

    /// Graph's rules: the name 3–120 ASCII letters, digits, `-` or `_`, starting with a letter or
    /// digit; issuer and subject non-empty, at most 600 characters, the issuer without surrounding
    /// whitespace (Entra blocks the exchange otherwise); exactly one audience of at most 600;
    /// a description of at most 600.
    func validate(clientRequestID: String) throws(GraphError) {
        guard Self.isValidName(name) else {
            throw .invalidArgument("a credential name is 3-120 letters, digits, '-' or '_', starting with a letter or digit", clientRequestID)
        }
        guard !issuer.isEmpty, issuer.count <= 600, issuer.trimmingCharacters(in: .whitespacesAndNewlines) == issuer else {
            throw .invalidArgument("the issuer must be 1-600 characters without surrounding whitespace", clientRequestID)
        }
        guard !subject.isEmpty, subject.count <= 600 else {
            throw .invalidArgument("the subject must be 1-600 characters", clientRequestID)
        }
        guard audiences.count == 1, let audience = audiences.first, !audience.isEmpty, audience.count <= 600 else {
            throw .invalidArgument("a credential has exactly one audience of 1-600 characters", clientRequestID)
        }
        guard (description?.count ?? 0) <= 600 else {
            throw .invalidArgument("the description must be at most 600 characters", clientRequestID)
        }
    }

    /// The JSON body, keys sorted; no `description` key when there is none.
    var jsonBody: String {
        var object: [String: Any] = ["name": name, "issuer": issuer, "subject": subject, "audiences": audiences]
        if let description { object["description"] = description }
        // Strings, an array of strings: serialization cannot fail.
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// Graph's name rule (WIRE.md §3.1). Names are also what `(name='…')` puts in a URL.
    static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (3...120).contains(bytes.count), let first = bytes.first, bytes.count == name.unicodeScalars.count else { return false }
        func isAlphanumeric(_ b: UInt8) -> Bool { (48...57).contains(b) || (65...90).contains(b) || (97...122).contains(b) }
        return isAlphanumeric(first) && bytes.allSatisfy { isAlphanumeric($0) || $0 == 45 || $0 == 95 }
    }
}
