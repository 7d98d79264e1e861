@testable import AzureEmulator
import FedBrokerCore
import Foundation
import Testing

/// The wrapkey/unwrapkey rules on one key version, without HTTP.
@Suite struct CryptoOperationTests {
    static let version: Directory.KeyVersion = {
        var options = EmulatorState.KeyOptions()
        options.size = 2048
        return try! EmulatorState.makeVersion(options: options, now: 1_000)
    }()
    static let key = Directory.Key(name: "cmk", versions: [version])

    func call(_ wrap: Bool, _ body: String, version: Directory.KeyVersion = Self.version, now: Int64 = 1_000) -> Result<String, KeyVaultFailure> {
        KeyVaultService.cryptoOperation(wrap: wrap, body: body, key: Self.key, version: version, now: now)
    }

    func body(_ alg: String, _ value: [UInt8]) -> String { #"{"alg":"\#(alg)","value":"\#(Base64URL.encode(value))"}"# }

    @Test(arguments: ["RSA-OAEP-256", "RSA-OAEP", "RSA1_5"])
    func wrapThenUnwrapRoundTrips(_ alg: String) throws {
        let dek = Array((0..<32).map { UInt8($0) })
        let wrapped = try call(true, body(alg, dek)).get()
        #expect(Base64URL.decode(wrapped)?.count == 256)
        let unwrapped = try call(false, #"{"alg":"\#(alg)","value":"\#(wrapped)"}"#).get()
        #expect(Base64URL.decode(unwrapped) == dek)
    }

    @Test func garbageCiphertextIsBadParameter() {
        let result = call(false, body("RSA-OAEP-256", Array(repeating: 7, count: 256)))
        #expect(result == .failure(.badOAEPPadding))
        #expect(call(false, body("RSA-OAEP-256", [1, 2, 3])) == .failure(.badOAEPPadding))
    }

    @Test func inputValidation() {
        #expect(call(true, #"{"alg":"RSA-OAEP-256","value":"a+b/"}"#) == .failure(.valueNotBase64URL))
        #expect(call(true, #"{"alg":"A256KW","value":"AAAA"}"#) == .failure(.invalidAlgorithm("A256KW")))
        guard case .failure(let f) = call(true, "not json") else { Issue.record("accepted junk"); return }
        #expect(f.code == "BadParameter")
        guard case .failure(let big) = call(true, body("RSA-OAEP-256", Array(repeating: 1, count: 300))) else { Issue.record("accepted oversize"); return }
        #expect(big.code == "BadParameter")
    }

    @Test func disabledKeyRefusesUnwrapButNotWrap() throws {
        var disabled = Self.version
        disabled.enabled = false
        let wrapped = try call(true, body("RSA-OAEP-256", [1, 2, 3]), version: disabled).get()
        #expect(call(false, #"{"alg":"RSA-OAEP-256","value":"\#(wrapped)"}"#, version: disabled) == .failure(.keyDisabled("unwrapKey")))
    }

    @Test func expiredOrNotYetValidKeysStillUnwrapButRefuseWrap() throws {
        let wrapped = try call(true, body("RSA-OAEP-256", [9, 9])).get()
        var expired = Self.version
        expired.expires = 1_500
        #expect(call(true, body("RSA-OAEP-256", [1]), version: expired, now: 1_500) == .failure(.keyExpired("wrapKey")))
        #expect(try call(false, #"{"alg":"RSA-OAEP-256","value":"\#(wrapped)"}"#, version: expired, now: 2_000).get() == Base64URL.encode([9, 9]))
        var future = Self.version
        future.notBefore = 5_000
        #expect(call(true, body("RSA-OAEP-256", [1]), version: future, now: 4_999) == .failure(.keyNotYetValid("wrapKey")))
        #expect((try? call(false, #"{"alg":"RSA-OAEP-256","value":"\#(wrapped)"}"#, version: future, now: 4_999).get()) != nil)
    }

    @Test func keyOpsAreEnforced() {
        var wrapOnly = Self.version
        wrapOnly.keyOps = ["wrapKey"]
        #expect(call(false, body("RSA-OAEP-256", [1]), version: wrapOnly) == .failure(.operationForbidden("unwrapKey")))
        var unwrapOnly = Self.version
        unwrapOnly.keyOps = ["unwrapKey"]
        #expect(call(true, body("RSA-OAEP-256", [1]), version: unwrapOnly) == .failure(.operationForbidden("wrapKey")))
    }
}
