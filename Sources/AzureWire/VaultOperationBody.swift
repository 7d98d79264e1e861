import Foundation

/// Key Vault's answer to wrapkey and unwrapkey (a `KeyOperationResult`): the versioned `kid` that
/// did it and the resulting bytes. After an unwrap the bytes are a plaintext data key: the
/// description shows their length only.
public struct VaultOperationBody: Sendable, Equatable, CustomStringConvertible {
    public var kid: String
    public var value: [UInt8]

    /// - Throws: `AzureResponseError` when the body is not JSON or has no `kid` or base64url
    ///   `value` within bounds.
    public init(parsing body: Data) throws(AzureResponseError) {
        guard let json = AzureJSON.object(body) else { throw AzureResponseError(.notJSON, "the answer is not a JSON object") }
        guard let kid = AzureJSON.string(json["kid"], limit: AzureWireLimits.maximumIdentifierLength),
            let value = AzureJSON.bytes(json["value"])
        else {
            throw AzureResponseError(.missingField, "no kid or value in the answer")
        }
        self.kid = kid
        self.value = value
    }

    public var description: String { "VaultOperationBody(kid: \(kid), value: <\(value.count) bytes>)" }
}
