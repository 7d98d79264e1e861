import Foundation

/// Whether a presented token is inside its validity window, as Microsoft's validators judge it:
/// `exp` required, `nbf` optional, both with the same clock skew. One rule for the token
/// endpoint (assertions), Key Vault and Graph.
enum TokenLifetime: Equatable {
    case valid
    case expired
    case notYetValid
    case missingExpiry

    /// Microsoft.IdentityModel's default skew.
    static let defaultSkew: Int64 = 300

    static func check(exp: Int64?, nbf: Int64?, now: Int64, skew: Int64 = defaultSkew) -> TokenLifetime {
        guard let exp else { return .missingExpiry }
        if now >= exp + skew { return .expired }
        if let nbf, now < nbf - skew { return .notYetValid }
        return .valid
    }
}
