import FedBrokerCore
import Foundation

/// AKS workload identity: the kubelet projects a service-account token into a file and rotates
/// it. The file is read for every assertion, so a rotated token is picked up and an expired one
/// is never reused (AADSTS700024).
public struct FederatedTokenFileAssertionSource: AssertionSource {
    public let path: String
    let clock: any WallClock

    public var identity: String { "file:\(path)" }

    public init(path: String, clock: any WallClock = SystemWallClock()) {
        self.path = path
        self.clock = clock
    }

    public func assertion(deadline: Date) async throws -> AccessToken {
        let contents: String
        do {
            contents = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            throw AzureIdentityError.tokenFile(path: path, detail: "cannot read it (\(error.localizedDescription))")
        }
        guard let expiry = Self.expiry(ofJWT: contents) else {
            throw AzureIdentityError.tokenFile(path: path, detail: "does not hold a JWT with an exp claim")
        }
        guard expiry > clock.now else {
            throw AzureIdentityError.tokenFile(path: path, detail: "holds a token that expired at \(expiry); is the kubelet rotating it?")
        }
        return AccessToken(token: contents, expiresOn: expiry)
    }

    /// The `exp` of a JWT, read without verification (the token endpoint verifies it).
    static func expiry(ofJWT token: String) -> Date? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let payload = Base64URL.decode(String(parts[1])),
            let json = try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any],
            let exp = (json["exp"] as? NSNumber)?.doubleValue
        else { return nil }
        return Date(timeIntervalSince1970: exp)
    }
}
