import Foundation

/// Entra's v2 token endpoint's success body, `{"token_type","expires_in","access_token"}`, read
/// within `AzureWireLimits`. The description never shows the token.
public struct EntraTokenBody: Sendable, Equatable, CustomStringConvertible {
    public var accessToken: String
    /// Seconds the token is valid for, within `0...AzureWireLimits.maximumTokenLifetime`.
    public var expiresIn: Double

    /// - Throws: `AzureResponseError` when the body is not JSON, has no `access_token` or finite
    ///   `expires_in` (a number, or a decimal string), or the token is over the length limit.
    public init(parsing body: Data) throws(AzureResponseError) {
        guard let json = AzureJSON.object(body) else { throw AzureResponseError(.notJSON, "the token answer is not a JSON object") }
        guard let token = json["access_token"] as? String, !token.isEmpty, let expiresIn = AzureJSON.number(json["expires_in"]) else {
            throw AzureResponseError(.missingField, "no access_token or expires_in")
        }
        guard token.utf8.count <= AzureWireLimits.maximumTokenLength else {
            throw AzureResponseError(.fieldOutOfBounds, "access_token is longer than \(AzureWireLimits.maximumTokenLength) bytes")
        }
        self.accessToken = token
        self.expiresIn = min(max(expiresIn, 0), AzureWireLimits.maximumTokenLifetime)
    }

    public var description: String { "EntraTokenBody(expiresIn: \(expiresIn), accessToken: <redacted>)" }
}
