import Foundation

/// Which customer key a tenant's data keys are wrapped with: a Key Vault (or Managed HSM) URL, a
/// key name and, optionally, a pinned key version. Without a pinned version, wrap uses the key's
/// current version and the envelope records which one it was.
public struct KeyReference: Hashable, Codable, Sendable, CustomStringConvertible {
    /// The vault's base URL, `https://<name>.vault.azure.net`, normalised without a trailing slash.
    public let vaultURL: String
    public let keyName: String
    public let keyVersion: String?

    public init(vaultURL: String, keyName: String, keyVersion: String? = nil) throws {
        guard let url = KeyReference.canonicalVaultURL(vaultURL) else {
            throw BrokerError(.invalidArgument, "vault URL must be https://<host> with no path")
        }
        guard KeyReference.isValidName(keyName) else {
            throw BrokerError(.invalidArgument, "key name must be 1-127 characters of [A-Za-z0-9-]")
        }
        if let keyVersion, !(1...64).contains(keyVersion.count) || !keyVersion.allSatisfy({ $0.isLetter || $0.isNumber }) {
            throw BrokerError(.invalidArgument, "key version must be 1-64 alphanumeric characters")
        }
        self.vaultURL = url
        self.keyName = keyName
        self.keyVersion = keyVersion
    }

    /// Same vault and key name, whatever the version: the identity activation locks.
    public func isSameKey(as other: KeyReference) -> Bool {
        self.vaultURL == other.vaultURL && self.keyName.lowercased() == other.keyName.lowercased()
    }

    /// One spelling per vault: `https://` + the host in lower case without a trailing dot + the
    /// port only when it is not 443, no trailing slash. nil for anything else (a path, query,
    /// fragment or user info would be carried into every request URL built from it).
    ///
    /// Why it matters: the per-vault budget, circuit breaker and the blob-versus-record check are
    /// keyed by this string, so `HTTPS://Vault.vault.azure.net:443/` must not count as another vault.
    public static func canonicalVaultURL(_ text: String) -> String? {
        // Every blob the broker wrote carries the canonical form already, and it is checked on
        // every Unwrap: recognise it with one pass over the bytes before parsing a URL.
        if isCanonicalVaultURL(text) { return text }
        var url = text.trimmingCharacters(in: .whitespaces)
        guard url.utf8.count <= 512 else { return nil }
        while url.hasSuffix("/") { url.removeLast() }
        guard let parsed = URLComponents(string: url), parsed.scheme?.lowercased() == "https", var host = parsed.host?.lowercased(),
            parsed.path.isEmpty, parsed.query == nil, parsed.fragment == nil, parsed.user == nil, parsed.password == nil
        else { return nil }
        if host.hasSuffix(".") { host.removeLast() }
        guard !host.isEmpty, host.utf8.allSatisfy({ $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") || (48...57).contains($0) || (97...122).contains($0) }) else {
            return nil
        }
        switch parsed.port {
        case nil, 443: return "https://\(host)"
        case let port?: return (1...65535).contains(port) ? "https://\(host):\(port)" : nil
        }
    }

    /// Whether `text` is already what `canonicalVaultURL` returns for it, in its commonest form:
    /// `https://`, a host of lowercase letters, digits, dashes and dots (no empty label, no
    /// trailing dot), and perhaps `:port` (1-65535 without a leading zero, not 443). Anything else
    /// takes the full parse.
    static func isCanonicalVaultURL(_ text: String) -> Bool {
        let utf8 = text.utf8
        guard utf8.count > 8, utf8.count <= 512, utf8.starts(with: "https://".utf8) else { return false }
        var previous = UInt8(ascii: ".")  // so that a leading dot fails
        var port: Int?
        for byte in utf8.dropFirst(8) {
            if var digits = port {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte), digits != 0 || previous == UInt8(ascii: ":") else { return false }
                guard !(digits == 0 && byte == UInt8(ascii: "0")) else { return false }  // a leading zero
                digits = digits * 10 + Int(byte - UInt8(ascii: "0"))
                guard digits <= 65535 else { return false }
                port = digits
                previous = byte
                continue
            }
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"):
                break
            case UInt8(ascii: "."):
                guard previous != UInt8(ascii: ".") else { return false }
            case UInt8(ascii: ":"):
                guard previous != UInt8(ascii: ".") else { return false }
                port = 0
            default:
                return false
            }
            previous = byte
        }
        if let port { return port != 0 && port != 443 }
        return previous != UInt8(ascii: ".")
    }

    /// Key Vault's key names: 1-127 ASCII letters, digits and dashes.
    public static func isValidName(_ name: String) -> Bool {
        // ASCII letters, digits and hyphens, so bytes and characters are the same count.
        (1...127).contains(name.utf8.count)
            && name.utf8.allSatisfy {
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-")
            }
    }

    /// A key version as Key Vault issues it: 32 ASCII hex digits. Anything else that claims to be
    /// one (from a blob, say) never reaches a vault URL.
    public static func isValidVersion(_ version: String) -> Bool {
        version.utf8.count == 32 && version.utf8.allSatisfy { (48...57).contains($0) || (65...70).contains($0) || (97...102).contains($0) }
    }

    public var description: String {
        "\(self.vaultURL)/keys/\(self.keyName)" + (self.keyVersion.map { "/\($0)" } ?? "")
    }
}
