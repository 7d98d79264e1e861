import Foundation

/// Entra's OAuth error body (`error`, `error_description`, `error_codes`, `trace_id`,
/// `correlation_id`), read within `AzureWireLimits`. Code branches on `error` and the AADSTS
/// code only; the description is for people ("Never use this field to react to an error").
public struct EntraErrorBody: Sendable, Equatable {
    /// The OAuth `error`, e.g. `invalid_client`.
    public var error: String
    /// The first AADSTS code, e.g. 700016.
    public var code: Int?
    /// Bounded, control characters escaped.
    public var description: String
    public var traceID: String?
    public var correlationID: String?

    /// AADSTS codes have at most eight digits so far.
    static let codeRange = 0...99_999_999

    /// Nil when the body is not an Entra error (no `error` string).
    public init?(parsing body: Data) {
        guard let json = AzureJSON.object(body), let error = AzureJSON.text(json["error"], limit: AzureWireLimits.maximumCodeLength) else {
            return nil
        }
        self.error = error
        self.code = (json["error_codes"] as? [Any])?.first.flatMap { AzureJSON.integer($0, in: Self.codeRange) }
        self.description = AzureJSON.text(json["error_description"], limit: AzureWireLimits.maximumMessageLength) ?? ""
        self.traceID = AzureJSON.text(json["trace_id"], limit: AzureWireLimits.maximumCodeLength)
        self.correlationID = AzureJSON.text(json["correlation_id"], limit: AzureWireLimits.maximumCodeLength)
    }
}
