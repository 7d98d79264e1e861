import Foundation

/// A key in a vault, as the data plane addresses it: `https://{vault}/keys/{name}[/{version}]`.
public struct VaultKeyID: Sendable, Hashable, CustomStringConvertible {
    /// `https://contoso.vault.azure.net` (no trailing slash).
    public var vaultURL: String
    public var name: String
    /// nil: the current version.
    public var version: String?

    public init(vaultURL: String, name: String, version: String? = nil) {
        self.vaultURL = vaultURL.hasSuffix("/") ? String(vaultURL.dropLast()) : vaultURL
        self.name = name
        self.version = version.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Parses a `kid` (`https://v.vault.azure.net/keys/name/version`).
    public init?(kid: String) {
        guard let url = URL(string: kid), let scheme = url.scheme, let host = url.host else { return nil }
        let parts = url.path.split(separator: "/").map(String.init)
        guard parts.count >= 2, parts[0] == "keys" else { return nil }
        let port = url.port.map { ":\($0)" } ?? ""
        self.init(vaultURL: "\(scheme)://\(host)\(port)", name: parts[1], version: parts.count > 2 ? parts[2] : nil)
    }

    public var description: String { "\(vaultURL)/keys/\(name)" + (version.map { "/\($0)" } ?? "") }

    /// The vault's name as `az keyvault … --vault-name` takes it: the host's first label.
    public var vaultName: String { URL(string: vaultURL)?.host?.split(separator: ".").first.map(String.init) ?? "<vault>" }

    /// The vault's host:port, the unit of Key Vault's budget.
    public var vaultAuthority: String { Self.authority(ofVaultURL: vaultURL) }

    /// The host:port of a vault URL: what its budget, circuit and pause are kept per.
    public static func authority(ofVaultURL vaultURL: String) -> String {
        URL(string: vaultURL).map { "\($0.host ?? ""):\($0.port ?? 443)" } ?? vaultURL
    }
}

/// RSA key-wrapping algorithms Key Vault offers for RSA keys.
public enum KeyWrapAlgorithm: String, Sendable, CaseIterable {
    case rsaOAEP256 = "RSA-OAEP-256"
    case rsaOAEP = "RSA-OAEP"
    case rsa15 = "RSA1_5"
}

/// The public part of a key and its attributes (GET /keys/{name}/{version}).
public struct KeyBundle: Sendable, Equatable {
    public var kid: String
    public var keyType: String
    public var keyOps: [String]
    /// Modulus and exponent, big-endian bytes.
    public var modulus: [UInt8]
    public var exponent: [UInt8]
    public var enabled: Bool
    public var notBefore: Date?
    public var expires: Date?
    public var recoveryLevel: String?
    public var recoverableDays: Int?
    public var tags: [String: String]

    public var keySizeBits: Int {
        let leadingZeros = modulus.prefix { $0 == 0 }.count
        return (modulus.count - leadingZeros) * 8
    }

    /// Purge protection is on exactly when the recovery level does not say `Purgeable`.
    public var purgeProtected: Bool { recoveryLevel.map { !$0.contains("Purgeable") } ?? false }

    public var id: VaultKeyID? { VaultKeyID(kid: kid) }
}

/// A wrap or unwrap result: the key version that did it, the bytes, and the request id for audit.
/// After an unwrap the bytes are a plaintext data key: descriptions show their length only.
public struct KeyOperationResult: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public var kid: String
    public var value: [UInt8]
    public var clientRequestID: String
    /// Set when the operation ran locally with the cached public key (wrap only).
    public var local: Bool

    public var description: String {
        "KeyOperationResult(kid: \(kid), value: <\(value.count) bytes>, clientRequestID: \(clientRequestID), local: \(local))"
    }
    public var debugDescription: String { description }
}

/// A value with the `x-ms-client-request-id` of the call that produced it.
public struct Audited<Value: Sendable>: Sendable {
    public var value: Value
    public var clientRequestID: String
}
