import Foundation

/// Base64url without padding (RFC 4648 §5), the encoding of JWTs, JWKs and Key Vault
/// `value` fields.
public enum Base64URL {
    /// Encodes bytes without padding.
    public static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Decodes base64url, with or without padding. Returns nil for anything else, including
    /// standard-alphabet characters (`+`, `/`), which Key Vault rejects as "not base64url".
    public static func decode(_ string: String) -> [UInt8]? {
        var s = string
        if s.contains("+") || s.contains("/") { return nil }
        while s.hasSuffix("=") { s.removeLast() }
        if s.contains("=") { return nil }
        s = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        let remainder = s.count % 4
        if remainder == 1 { return nil }
        if remainder > 0 { s += String(repeating: "=", count: 4 - remainder) }
        guard let data = Data(base64Encoded: s) else { return nil }
        return Array(data)
    }
}
