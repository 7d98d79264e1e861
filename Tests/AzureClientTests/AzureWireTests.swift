import AzureWire
import Foundation
import Testing

/// Azure's bodies and headers as AzureWire reads them: the recorded shapes parse as the clients
/// need them, and every length, number and date from outside comes out bounded, finite and
/// clamped (docs/fuzzing.md; the same properties the FuzzAzureResponses and FuzzHeaders targets
/// assert on random input).
@Suite struct AzureWireTests {
    let now = Date(timeIntervalSince1970: 1_750_000_000)

    private func body(_ text: String) -> Data { Data(text.utf8) }

    // MARK: Key Vault

    @Test("a recorded key bundle parses; its dates stay within 1970...9999 and odd retention days are dropped")
    func keyBundle() throws {
        let key = try VaultKeyBody(parsing: body(
            #"{"key":{"kid":"https://v.vault.azure.net/keys/k/78deebed173b48e48f55abf87ed4cf71","kty":"RSA","key_ops":["wrapKey","unwrapKey"],"#
                + #""n":"2HJAE5fU3Cw2","e":"AQAB"},"attributes":{"enabled":true,"nbf":1493942400,"exp":1e300,"#
                + #""recoveryLevel":"Recoverable","recoverableDays":1e30},"tags":{"a":"b"}}"#))
        #expect(key.kid == "https://v.vault.azure.net/keys/k/78deebed173b48e48f55abf87ed4cf71")
        #expect(key.keyOps == ["wrapKey", "unwrapKey"])
        #expect(key.exponent == [1, 0, 1])
        #expect(key.enabled)
        #expect(key.notBefore == Date(timeIntervalSince1970: 1_493_942_400))
        #expect(key.expires == Date(timeIntervalSince1970: AzureWireLimits.dateRange.upperBound))
        #expect(key.recoverableDays == nil)
        #expect(key.tags == ["a": "b"])
        let negative = try VaultKeyBody(parsing: body(#"{"key":{"kid":"k","n":"AQAB","e":"AQAB"},"attributes":{"nbf":-1e300,"recoverableDays":7}}"#))
        #expect(negative.notBefore == Date(timeIntervalSince1970: 0))
        #expect(negative.recoverableDays == 7)
    }

    @Test("a key without kid, n or e, or with a kid or modulus over the bounds, is refused with a stable code")
    func keyBundleRefusals() {
        #expect(throws: AzureResponseError(.missingField, "the key bundle has no kid, n or e")) {
            try VaultKeyBody(parsing: body(#"{"key":{"kid":"k","n":"AQAB"}}"#))
        }
        let longKid = String(repeating: "k", count: AzureWireLimits.maximumIdentifierLength + 1)
        #expect(throws: AzureResponseError(.missingField, "the key bundle has no kid, n or e")) {
            try VaultKeyBody(parsing: body(#"{"key":{"kid":"\#(longKid)","n":"AQAB","e":"AQAB"}}"#))
        }
        let longModulus = String(repeating: "A", count: 8_000)  // 6,000 bytes
        #expect(throws: AzureResponseError(.missingField, "the key bundle has no kid, n or e")) {
            try VaultKeyBody(parsing: body(#"{"key":{"kid":"k","n":"\#(longModulus)","e":"AQAB"}}"#))
        }
        #expect(throws: AzureResponseError(.notJSON, "the key bundle is not a JSON object")) { try VaultKeyBody(parsing: body("[]")) }
    }

    @Test("a wrap result parses; one without kid or base64url value is refused")
    func operationResult() throws {
        let result = try VaultOperationBody(parsing: body(#"{"kid":"https://v.vault.azure.net/keys/k/1","value":"R-Ay"}"#))
        #expect(result.value == [0x47, 0xE0, 0x32])
        #expect(!result.description.contains("R-Ay") && result.description.contains("3 bytes"))
        #expect(throws: AzureResponseError(.missingField, "no kid or value in the answer")) {
            try VaultOperationBody(parsing: body(#"{"kid":"k","value":"not+base64url/"}"#))
        }
    }

    @Test("an error body's message is bounded and escaped; the AKV code and inner code are read")
    func vaultError() {
        let rbac = VaultErrorBody(parsing: body(
            #"{"error":{"code":"Forbidden","message":"Caller is not authorized.\r\nAssignment: (not found)","innererror":{"code":"ForbiddenByRbac"}}}"#))
        #expect(rbac.code == "Forbidden")
        #expect(rbac.innerCode == "ForbiddenByRbac")
        #expect(rbac.message == #"Caller is not authorized.\u{d}\u{a}Assignment: (not found)"#)
        let akv = VaultErrorBody(parsing: body(#"{"error":{"code":"Unauthorized","message":"AKV10032: Invalid issuer."}}"#))
        #expect(akv.akvCode == "AKV10032")
        let long = VaultErrorBody(parsing: body(#"{"error":{"message":"\#(String(repeating: "x", count: 5_000))"}}"#))
        #expect(long.message.count == AzureWireLimits.maximumMessageLength)
        #expect(long.message.hasSuffix("…"))
        let empty = VaultErrorBody(parsing: Data())
        #expect(empty.code == nil && empty.innerCode == nil && empty.message.isEmpty)
    }

    // MARK: Entra

    @Test("expires_in is clamped to 0...a day; non-finite or non-numeric is a malformed answer", arguments: [
        (#"86399"#, 86_399.0), (#"1e300"#, 86_400), (#""99999999999999999999""#, 86_400), (#"-5"#, 0), (#""3599""#, 3_599),
    ])
    func entraExpiresIn(_ json: String, _ expected: Double) throws {
        let token = try EntraTokenBody(parsing: body(#"{"token_type":"Bearer","expires_in":\#(json),"access_token":"eyJ.e30.c2ln"}"#))
        #expect(token.expiresIn == expected)
        #expect(token.accessToken == "eyJ.e30.c2ln")
        #expect(!token.description.contains("eyJ"))
    }

    @Test("a token answer without a finite expires_in, or with an oversized token, is refused", arguments: [
        #"{"expires_in":"nan","access_token":"t"}"#, #"{"expires_in":"inf","access_token":"t"}"#,
        #"{"expires_in":"0x10","access_token":"t"}"#, #"{"expires_in":3599}"#, #"{"expires_in":3599,"access_token":""}"#,
    ])
    func entraMalformed(_ json: String) {
        #expect(throws: AzureResponseError(.missingField, "no access_token or expires_in")) { try EntraTokenBody(parsing: body(json)) }
    }

    @Test("an access token over the length limit is refused as out of bounds")
    func entraOversizedToken() {
        let token = String(repeating: "a", count: AzureWireLimits.maximumTokenLength + 1)
        #expect(throws: AzureResponseError(.fieldOutOfBounds, "access_token is longer than \(AzureWireLimits.maximumTokenLength) bytes")) {
            try EntraTokenBody(parsing: body(#"{"expires_in":3599,"access_token":"\#(token)"}"#))
        }
    }

    @Test("a token's description is the redacted template whatever the token (FuzzAzureResponses' finding: a short token)")
    func entraTokenDescriptionIsRedacted() throws {
        // The fuzzer's input: a two-letter token, which the harness's substring check mistook
        // for a leak ("en" is in "expiresIn"). The description never holds the token's bytes.
        for secret in ["en", "eyJ0eXAiOiJKV1QifQ.e30.c2lnbmF0dXJl"] {
            let token = try EntraTokenBody(parsing: body(#"{"token_type":"Bearer","expires_in":86398,"xe_texpires_in":86399,"access_token":"\#(secret)"}"#))
            #expect(token.accessToken == secret)
            #expect(token.description == "EntraTokenBody(expiresIn: 86398.0, accessToken: <redacted>)")
        }
    }

    @Test("an Entra error keeps its code and error; text is bounded and escaped; an absurd code is dropped")
    func entraError() throws {
        let error = try #require(EntraErrorBody(parsing: body(
            #"{"error":"invalid_request","error_description":"AADSTS70021: No match.\r\nTrace ID: t","error_codes":[70021],"trace_id":"t\nx"}"#)))
        #expect(error.error == "invalid_request")
        #expect(error.code == 70021)
        #expect(error.description == #"AADSTS70021: No match.\u{d}\u{a}Trace ID: t"#)
        #expect(error.traceID == #"t\u{a}x"#)
        #expect(try #require(EntraErrorBody(parsing: body(#"{"error":"x","error_codes":[1e30]}"#))).code == nil)
        #expect(try #require(EntraErrorBody(parsing: body(#"{"error":"x","error_codes":[-1]}"#))).code == nil)
        #expect(EntraErrorBody(parsing: body(#"{"error_description":"no error field"}"#)) == nil)
    }

    // MARK: IMDS

    @Test("IMDS's expires_on is never later than a day from now nor before 1970; expires_in is the fallback")
    func imdsExpiry() throws {
        let later = try IMDSTokenBody(parsing: body(#"{"access_token":"t","expires_on":"99999999999999"}"#), now: now)
        #expect(later.expiresOn == now.addingTimeInterval(86_400))
        let normal = try IMDSTokenBody(parsing: body(#"{"access_token":"t","expires_on":"1750003599","expires_in":"3599"}"#), now: now)
        #expect(normal.expiresOn == now.addingTimeInterval(3_599))
        let negative = try IMDSTokenBody(parsing: body(#"{"access_token":"t","expires_on":"-1e300"}"#), now: now)
        #expect(negative.expiresOn == Date(timeIntervalSince1970: 0))
        let fallback = try IMDSTokenBody(parsing: body(#"{"access_token":"t","expires_on":"inf","expires_in":"1e300"}"#), now: now)
        #expect(fallback.expiresOn == now.addingTimeInterval(86_400))
        #expect(throws: AzureResponseError(.missingField, "no expires_on")) {
            try IMDSTokenBody(parsing: body(#"{"access_token":"t","expires_on":"nan"}"#), now: now)
        }
        #expect(throws: AzureResponseError(.missingField, "no access_token")) {
            try IMDSTokenBody(parsing: body(#"{"expires_on":"1750003599"}"#), now: now)
        }
    }

    @Test("an IMDS error without JSON is described by an escaped excerpt of at most 200 characters")
    func imdsError() {
        let json = IMDSErrorBody(parsing: body(#"{"error":"invalid_request","error_description":"Identity not found"}"#))
        #expect(json.error == "invalid_request" && json.description == "Identity not found")
        let html = IMDSErrorBody(parsing: body("<html>\r\n" + String(repeating: "x", count: 1_000)))
        #expect(html.error == "unknown")
        #expect(html.description.hasPrefix(#"<html>\u{d}\u{a}xx"#))
        #expect(html.description.count == 200)
    }

    // MARK: JSON bounds

    @Test("bodies nested deeper than the limit, or larger than it, are not parsed at all")
    func jsonBounds() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(AzureJSON.object(body(#"{"a":\#(deep)}"#)) == nil)
        let nested = String(repeating: #"{"a":"#, count: AzureWireLimits.maximumNesting) + "1" + String(repeating: "}", count: AzureWireLimits.maximumNesting)
        #expect(AzureJSON.object(body(nested)) != nil)
        // Brackets inside strings do not count.
        #expect(AzureJSON.object(body(#"{"a":"\#(String(repeating: "[", count: 100))\"["}"#)) != nil)
        let big = Data(#"{"a":""#.utf8) + Data(repeating: UInt8(ascii: "x"), count: AzureWireLimits.maximumBody) + Data(#""}"#.utf8)
        #expect(AzureJSON.object(big) == nil)
    }

    @Test("numbers: only finite decimals count, from JSON numbers or strings", arguments: [
        ("12", 12.0 as Double?), ("-3.5e2", -350), ("inf", nil), ("nan", nil), ("0x1p3", nil), ("1e400", nil), (" 12", nil),
    ])
    func numbers(_ text: String, _ expected: Double?) {
        #expect(AzureJSON.number(text) == expected)
    }

    // MARK: Bearer challenge

    @Test("Key Vault's challenge parses as Azure SDKs read it")
    func challenge() throws {
        let kv = try #require(BearerChallenge(header: #"Bearer authorization="https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47", resource="https://vault.azure.net""#))
        #expect(kv.tenantID == "72f988bf-86f1-41af-91ab-2d7cd011db47")
        #expect(kv.resource == "https://vault.azure.net")
        let hsm = try #require(BearerChallenge(header: #"Bearer authorization_uri="https://login.microsoftonline.com/contoso.onmicrosoft.com", scope="https://managedhsm.azure.net/.default""#))
        #expect(hsm.tenantID == "contoso.onmicrosoft.com")
        #expect(hsm.resource == "https://managedhsm.azure.net")
    }

    @Test("a challenge whose tenant or resource could inject text, or that is oversized, is not believed", arguments: [
        #"Bearer authorization="https://login.microsoftonline.com/evil%0Aline", resource="https://vault.azure.net""#,
        #"Bearer authorization="https://login.microsoftonline.com/a%20b", resource="https://vault.azure.net""#,
        #"Bearer authorization="https://login.microsoftonline.com/t", resource="https://vault.azure.net x""#,
        #"Bearer authorization="https://login.microsoftonline.com/\#(String(repeating: "t", count: 129))""#,
        #"Bearer authorization="https://login.microsoftonline.com/t", resource="\#(String(repeating: "r", count: 5_000))""#,
        #"Bearer authorization="http://login.microsoftonline.com/t""#,
    ])
    func challengeRefusals(_ header: String) {
        #expect(BearerChallenge(header: header) == nil)
    }
}
