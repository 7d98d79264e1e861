import Foundation

/// A bearer token and when it stops being valid. Its description never shows the token:
/// tokens are credentials and must not reach a log line.
public struct AccessToken: Sendable, Equatable, CustomStringConvertible {
    public var token: String
    public var expiresOn: Date

    public init(token: String, expiresOn: Date) {
        self.token = token
        self.expiresOn = expiresOn
    }

    public var description: String { "AccessToken(expiresOn: \(expiresOn), token: <redacted>)" }
}
