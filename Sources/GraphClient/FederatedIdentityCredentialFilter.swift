import Foundation

/// A `$filter` on the credential list: `eq` on name, subject and issuer, joined by `and` (the
/// properties Graph supports `eq` on). Values are OData literals (single quotes doubled), and
/// the whole expression is percent-encoded as one query value, so a subject or issuer can never
/// change the query.
public struct FederatedIdentityCredentialFilter: Sendable, Hashable {
    public var name: String?
    public var subject: String?
    public var issuer: String?

    public init(name: String? = nil, subject: String? = nil, issuer: String? = nil) {
        self.name = name
        self.subject = subject
        self.issuer = issuer
    }

    /// `name eq 'a' and subject eq 'b' and issuer eq 'c'` (set fields only); nil when none is set.
    public var expression: String? {
        let clauses = [("name", name), ("subject", subject), ("issuer", issuer)].compactMap { field, value in
            value.map { "\(field) eq \(ODataLiteral.quoted($0))" }
        }
        return clauses.isEmpty ? nil : clauses.joined(separator: " and ")
    }

    /// No value longer than Graph stores (600 characters): such a filter could only match nothing,
    /// and the URL stays bounded.
    func validate(clientRequestID: String) throws(GraphError) {
        for value in [name, subject, issuer].compactMap({ $0 }) where value.count > 600 {
            throw .invalidArgument("a filter value is longer than 600 characters", clientRequestID)
        }
    }
}
