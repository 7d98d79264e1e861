import Foundation

/// Key Vault's error body, `{"error":{"code","message","innererror":{"code"}}}`, read within
/// `AzureWireLimits`. Every field is optional: a proxy's HTML page or an empty 401 still gives a
/// (blank) body, and the status alone then classifies the failure.
public struct VaultErrorBody: Sendable, Equatable {
    /// `error.code`, e.g. `Forbidden`, `Unauthorized`, `BadParameter`.
    public var code: String?
    /// `error.innererror.code`, e.g. `ForbiddenByRbac`, `KeyDisabled`.
    public var innerCode: String?
    /// The service's message, bounded and escaped; empty when there is none.
    public var message: String
    /// The AKV code in a 401 message (`AKV10032`), or `TokenExpired`.
    public var akvCode: String?

    public init(parsing body: Data) {
        let error = AzureJSON.object(body)?["error"] as? [String: Any]
        code = AzureJSON.text(error?["code"], limit: AzureWireLimits.maximumCodeLength)
        innerCode = AzureJSON.text((error?["innererror"] as? [String: Any])?["code"], limit: AzureWireLimits.maximumCodeLength)
        message = AzureJSON.text(error?["message"], limit: AzureWireLimits.maximumMessageLength) ?? ""
        akvCode = message.range(of: #"AKV\d{5}"#, options: .regularExpression).map { String(message[$0]) }
            ?? (message.contains("TokenExpired") ? "TokenExpired" : nil)
    }
}
