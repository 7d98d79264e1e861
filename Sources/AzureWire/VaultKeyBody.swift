import Foundation

/// Key Vault's answer to GET /keys/{name}/{version} (a `KeyBundle`: `key` as a JWK, `attributes`,
/// `tags`), read within `AzureWireLimits`. Only the public part of RSA keys is read.
public struct VaultKeyBody: Sendable, Equatable {
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

    /// Key Vault allows 15 tags of at most 512 characters; more than this is not read.
    static let maximumTags = 64
    static let maximumTagLength = 512
    /// A JWK lists at most eight operations; more than this is not read.
    static let maximumKeyOps = 32

    /// - Throws: `AzureResponseError` when the body is not JSON or the key has no `kid`, `n` or
    ///   `e` within bounds. Optional fields out of bounds are dropped, as if absent.
    public init(parsing body: Data) throws(AzureResponseError) {
        guard let json = AzureJSON.object(body) else { throw AzureResponseError(.notJSON, "the key bundle is not a JSON object") }
        guard let key = json["key"] as? [String: Any], let kid = AzureJSON.string(key["kid"], limit: AzureWireLimits.maximumIdentifierLength),
            let n = AzureJSON.bytes(key["n"]), let e = AzureJSON.bytes(key["e"])
        else {
            throw AzureResponseError(.missingField, "the key bundle has no kid, n or e")
        }
        let attributes = json["attributes"] as? [String: Any] ?? [:]
        // Unix seconds as Key Vault sends them (JSON numbers), within years 1970...9999.
        let date: (String) -> Date? = { name in
            (attributes[name] as? NSNumber).flatMap { AzureJSON.number($0) }
                .map { Date(timeIntervalSince1970: min(max($0, AzureWireLimits.dateRange.lowerBound), AzureWireLimits.dateRange.upperBound)) }
        }
        let ops = key["key_ops"] as? [String] ?? []
        self.kid = kid
        self.keyType = AzureJSON.string(key["kty"], limit: AzureWireLimits.maximumCodeLength) ?? ""
        self.keyOps = ops.count <= Self.maximumKeyOps ? ops.filter { $0.utf8.count <= AzureWireLimits.maximumCodeLength } : []
        self.modulus = n
        self.exponent = e
        self.enabled = attributes["enabled"] as? Bool ?? false
        self.notBefore = date("nbf")
        self.expires = date("exp")
        self.recoveryLevel = AzureJSON.string(attributes["recoveryLevel"], limit: AzureWireLimits.maximumCodeLength)
        // 7...90 when soft delete is on, else 0; anything else is not a retention period.
        self.recoverableDays = (attributes["recoverableDays"] as? NSNumber).flatMap { AzureJSON.integer($0, in: 0...36_500) }
        let tags = (json["tags"] as? [String: String] ?? [:])
            .filter { $0.key.utf8.count <= Self.maximumTagLength && $0.value.utf8.count <= Self.maximumTagLength }
        self.tags = Dictionary(uniqueKeysWithValues: tags.sorted { $0.key < $1.key }.prefix(Self.maximumTags).map { ($0.key, $0.value) })
    }
}
