import Foundation

/// The Instance Metadata Service's token body (`access_token`, and `expires_on` / `expires_in`,
/// which IMDS sends as strings), read within `AzureWireLimits`. The description never shows
/// the token.
public struct IMDSTokenBody: Sendable, Equatable, CustomStringConvertible {
    public var accessToken: String
    /// When the token expires: `expires_on`, else `now + expires_in`, never later than
    /// `now + AzureWireLimits.maximumTokenLifetime` and never before 1970.
    public var expiresOn: Date

    /// - Parameter now: the time the answer arrived, which bounds `expiresOn`.
    /// - Throws: `AzureResponseError` when the body is not JSON, has no `access_token` or no
    ///   finite `expires_on`/`expires_in`, or the token is over the length limit.
    public init(parsing body: Data, now: Date) throws(AzureResponseError) {
        guard let json = AzureJSON.object(body) else { throw AzureResponseError(.notJSON, "the token answer is not a JSON object") }
        guard let token = json["access_token"] as? String, !token.isEmpty else {
            throw AzureResponseError(.missingField, "no access_token")
        }
        guard token.utf8.count <= AzureWireLimits.maximumTokenLength else {
            throw AzureResponseError(.fieldOutOfBounds, "access_token is longer than \(AzureWireLimits.maximumTokenLength) bytes")
        }
        let latest = now.timeIntervalSince1970 + AzureWireLimits.maximumTokenLifetime
        let epoch: Double
        if let expiresOn = AzureJSON.number(json["expires_on"]) {
            epoch = expiresOn
        } else if let expiresIn = AzureJSON.number(json["expires_in"]) {
            epoch = now.timeIntervalSince1970 + min(max(expiresIn, 0), AzureWireLimits.maximumTokenLifetime)
        } else {
            throw AzureResponseError(.missingField, "no expires_on")
        }
        self.accessToken = token
        self.expiresOn = Date(timeIntervalSince1970: min(max(epoch, 0), latest))
    }

    public var description: String { "IMDSTokenBody(expiresOn: \(expiresOn), accessToken: <redacted>)" }
}
