import AzureHTTP
import FedBrokerCore
import Foundation

/// Reads a JWT's header or payload without verifying it: for expiry bookkeeping, messages and
/// choosing the key to verify with, never for a trust decision (the signature check decides).
package enum JWTPeek {
    package static func claims(of token: String) -> [String: Any]? { segment(1, of: token) }

    /// The JOSE header (`alg`, `kid`, …).
    package static func header(of token: String) -> [String: Any]? { segment(0, of: token) }

    private static func segment(_ index: Int, of token: String) -> [String: Any]? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let bytes = Base64URL.decode(String(parts[index])) else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
    }

    package static func string(_ name: String, of token: String) -> String? {
        claims(of: token)?[name] as? String
    }

    package static func expiry(of token: String) -> Date? {
        AzureHTTP.number(claims(of: token)?["exp"]).map { Date(timeIntervalSince1970: $0) }
    }
}
