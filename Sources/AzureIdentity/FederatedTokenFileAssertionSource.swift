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
        guard let expiry = JWTPeek.expiry(of: contents) else {
            throw AzureIdentityError.tokenFile(path: path, detail: "does not hold a JWT with an exp claim")
        }
        guard expiry > clock.now else {
            throw AzureIdentityError.tokenFile(path: path, detail: "holds a token that expired at \(expiry); is the kubelet rotating it?")
        }
        return AccessToken(token: contents, expiresOn: expiry)
    }
}
