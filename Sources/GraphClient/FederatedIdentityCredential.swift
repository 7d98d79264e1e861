import Foundation

/// One of the application's federated identity credentials as Graph returns it. For a broker
/// slot: issuer `https://login.microsoftonline.com/{ISV tenant}/v2.0`, subject the slot's managed
/// identity's principal (object) id, audience `api://AzureADTokenExchange`.
public struct FederatedIdentityCredential: Sendable, Hashable {
    /// Graph's id (a GUID), assigned at creation.
    public var id: String
    /// Unique per application and immutable: the broker's handle on a slot's credential.
    public var name: String
    public var issuer: String
    public var subject: String
    public var audiences: [String]
    public var description: String?

    public init(id: String, name: String, issuer: String, subject: String, audiences: [String], description: String? = nil) {
        self.id = id
        self.name = name
        self.issuer = issuer
        self.subject = subject
        self.audiences = audiences
        self.description = description
    }

    /// From Graph's JSON; nil when a required field is missing or of the wrong type.
    init?(json: [String: Any]) {
        guard let id = json["id"] as? String, let name = json["name"] as? String, let issuer = json["issuer"] as? String,
            let subject = json["subject"] as? String, let audiences = json["audiences"] as? [String]
        else { return nil }
        self.init(id: id, name: name, issuer: issuer, subject: subject, audiences: audiences, description: json["description"] as? String)
    }
}
