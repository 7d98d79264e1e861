import FedBrokerCore
import Foundation

/// Reads a JWT's payload without verifying it: for expiry bookkeeping and messages only,
/// never for a trust decision (the service that receives the token verifies it).
package enum JWTPeek {
    package static func claims(of token: String) -> [String: Any]? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let payload = Base64URL.decode(String(parts[1])) else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any]
    }

    package static func string(_ name: String, of token: String) -> String? {
        claims(of: token)?[name] as? String
    }

    package static func expiry(of token: String) -> Date? {
        AzureHTTP.number(claims(of: token)?["exp"]).map { Date(timeIntervalSince1970: $0) }
    }
}
