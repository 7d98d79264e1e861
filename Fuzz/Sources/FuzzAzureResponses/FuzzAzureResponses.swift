import AzureWire
import FedBrokerCore
import Foundation

/// The time the harness pretends it is: IMDS's `expires_on` is bounded relative to it.
private let now = Date(timeIntervalSince1970: 1_750_000_000)

private func require(_ condition: Bool, _ what: @autoclosure () -> String) {
    if !condition { fatalError("invariant: \(what())") }
}

/// Text for people must be bounded and carry no control characters.
private func checkText(_ text: String?, limit: Int, _ field: String) {
    guard let text else { return }
    require(text.unicodeScalars.count <= limit, "\(field) has \(text.unicodeScalars.count) characters, over \(limit)")
    require(
        !text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.value == 0x2028 || $0.value == 0x2029 },
        "\(field) carries a control character")
}

/// Azure's answers as the clients read them: the first byte picks the parser (Key Vault key,
/// key operation, error; Entra token, error; IMDS token, error), the rest is the body. Asserts:
/// nothing traps, and whatever parses is within `AzureWireLimits` (lengths, finite and clamped
/// numbers and dates, escaped text).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAzureResponses(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let body = Data(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch data[0] % 7 {
    case 0:
        guard let key = try? VaultKeyBody(parsing: body) else { return 0 }
        require(key.kid.utf8.count <= AzureWireLimits.maximumIdentifierLength, "kid length")
        require(key.modulus.count <= AzureWireLimits.maximumBinaryLength && key.exponent.count <= AzureWireLimits.maximumBinaryLength, "n/e length")
        for date in [key.notBefore, key.expires].compactMap({ $0 }) {
            require(AzureWireLimits.dateRange.contains(date.timeIntervalSince1970), "a key date outside 1970...9999")
        }
        require(key.recoverableDays.map { (0...36_500).contains($0) } ?? true, "recoverableDays out of range")
        require(key.tags.count <= 64, "too many tags")
    case 1:
        guard let result = try? VaultOperationBody(parsing: body) else { return 0 }
        require(result.kid.utf8.count <= AzureWireLimits.maximumIdentifierLength, "kid length")
        require(result.value.count <= AzureWireLimits.maximumBinaryLength, "value length")
    case 2:
        let error = VaultErrorBody(parsing: body)
        checkText(error.code, limit: AzureWireLimits.maximumCodeLength, "code")
        checkText(error.innerCode, limit: AzureWireLimits.maximumCodeLength, "innererror.code")
        checkText(error.message, limit: AzureWireLimits.maximumMessageLength, "message")
    case 3:
        guard let token = try? EntraTokenBody(parsing: body) else { return 0 }
        require(token.expiresIn.isFinite && (0...AzureWireLimits.maximumTokenLifetime).contains(token.expiresIn), "expires_in not clamped")
        require(!token.accessToken.isEmpty && token.accessToken.utf8.count <= AzureWireLimits.maximumTokenLength, "token length")
        // Exactly the redacted template: a substring test misfires on a short token ("en" is in
        // "expiresIn"; the fuzzer found that), and the template cannot hold any token's bytes.
        require(token.description == "EntraTokenBody(expiresIn: \(token.expiresIn), accessToken: <redacted>)", "the description shows the token")
    case 4:
        guard let error = EntraErrorBody(parsing: body) else { return 0 }
        checkText(error.error, limit: AzureWireLimits.maximumCodeLength, "error")
        checkText(error.description, limit: AzureWireLimits.maximumMessageLength, "error_description")
        checkText(error.traceID, limit: AzureWireLimits.maximumCodeLength, "trace_id")
        checkText(error.correlationID, limit: AzureWireLimits.maximumCodeLength, "correlation_id")
        require(error.code.map { $0 >= 0 } ?? true, "negative AADSTS code")
    case 5:
        guard let token = try? IMDSTokenBody(parsing: body, now: now) else { return 0 }
        let seconds = token.expiresOn.timeIntervalSince1970
        require(
            seconds.isFinite && seconds >= 0 && seconds <= now.timeIntervalSince1970 + AzureWireLimits.maximumTokenLifetime,
            "expires_on not clamped: \(seconds)")
        require(!token.accessToken.isEmpty && token.accessToken.utf8.count <= AzureWireLimits.maximumTokenLength, "token length")
    default:
        let error = IMDSErrorBody(parsing: body)
        checkText(error.error, limit: AzureWireLimits.maximumCodeLength, "error")
        checkText(error.description, limit: AzureWireLimits.maximumMessageLength, "error_description")
    }
    return 0
}
