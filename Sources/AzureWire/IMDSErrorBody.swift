import Foundation

/// The Instance Metadata Service's error body, `{"error","error_description"}`, read within
/// `AzureWireLimits`. IMDS's retry rules go by status alone; these fields are for people.
public struct IMDSErrorBody: Sendable, Equatable {
    /// The `error` enum value, or `unknown`.
    public var error: String
    /// `error_description`, or else the start of the body; bounded, control characters escaped.
    public var description: String

    /// The longest excerpt of a body that is not IMDS's JSON.
    static let excerptLength = 200

    public init(parsing body: Data) {
        let json = AzureJSON.object(body)
        error = AzureJSON.text(json?["error"], limit: AzureWireLimits.maximumCodeLength) ?? "unknown"
        description = AzureJSON.text(json?["error_description"], limit: AzureWireLimits.maximumMessageLength)
            ?? AzureJSON.excerpt(body, limit: Self.excerptLength)
    }
}
