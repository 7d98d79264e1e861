import Crypto
import FedBrokerCore
import Foundation
import Testing

@Suite struct WrappedKeyEnvelopeTests {
    /// A fixed envelope: the RSA-wrapped part is stand-in bytes (the vault holds the real key);
    /// the AES-GCM seal is real, under a known envelope key, so the vector pins the whole format.
    static let envelopeKey = SymmetricKey(data: Array(repeating: UInt8(0x11), count: 32))
    static let dataKey: [UInt8] = Array(0..<32)
    static let context: [UInt8] = Array("orders/4711".utf8)

    static func sample(flags: WrappedKeyEnvelope.Flags) throws -> WrappedKeyEnvelope {
        var e = WrappedKeyEnvelope(
            flags: flags, tenantID: "36f8a080-9ce3-4822-a0b3-d5a2ad6c9950", vaultURL: "https://contoso.vault.azure.net",
            keyName: "cmk", keyVersion: "78deebed173b48e48f55abf87ed4cf71", wrappedEnvelopeKey: Array(repeating: 0xAB, count: 384),
            nonce: Array(repeating: 0x22, count: 12), sealedDataKey: [], tag: [])
        let box = try AES.GCM.seal(
            dataKey, using: envelopeKey, nonce: AES.GCM.Nonce(data: e.nonce),
            authenticating: e.associatedData(context: flags.contains(.contextBound) ? context : nil))
        e.sealedDataKey = Array(box.ciphertext)
        e.tag = Array(box.tag)
        return e
    }

    /// What AES-GCM throws when the tag does not verify: `authenticationFailure` from CryptoKit,
    /// `underlyingCoreCryptoError` from swift-crypto on Linux. Its code is whatever error heads
    /// BoringSSL's per-thread queue — CIPHER/BAD_DECRYPT alone, but under the parallel suite an
    /// earlier ASN.1 error of another test on the same thread (seen: 0x0C00009E) — so only the case
    /// is pinned. A bad nonce or key size fails before `open` with another error and another case.
    static func expectSealRefused(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) {
        let error = #expect(throws: CryptoKitError.self, sourceLocation: sourceLocation) { try body() }
        let refused: Bool
        switch error {
        case .authenticationFailure?, .underlyingCoreCryptoError?: refused = true
        default: refused = false
        }
        #expect(refused, "\(String(describing: error))", sourceLocation: sourceLocation)
    }

    static func open(_ e: WrappedKeyEnvelope, context: [UInt8]?) throws -> [UInt8] {
        let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: e.nonce), ciphertext: e.sealedDataKey, tag: e.tag)
        return Array(try AES.GCM.open(box, using: envelopeKey, authenticating: e.associatedData(context: context)))
    }

    /// Version 1, context-bound, as written by this broker. It must parse and open in every later version.
    static let goldenV1Hex =
        "46424b010101002433366638613038302d396365332d343832322d613062332d64356132616436633939353000" +
        "1f68747470733a2f2f636f6e746f736f2e7661756c742e617a7572652e6e65740003636d6b002037386465656265" +
        "643137336234386534386635356162663837656434636637310180" + String(repeating: "ab", count: 384) +
        String(repeating: "22", count: 12) + "0020"

    @Test func goldenVectorV1ParsesAndOpens() throws {
        let sample = try Self.sample(flags: .contextBound)
        let bytes = try sample.serialized()
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        // The header, nonce and length are fixed text; the sealed bytes and tag follow from them.
        #expect(hex.hasPrefix(Self.goldenV1Hex))
        #expect(bytes.count == Self.goldenV1Hex.count / 2 + 32 + 16)
        let parsed = try WrappedKeyEnvelope(parsing: bytes)
        #expect(parsed == sample)
        #expect(parsed.version == 1)
        #expect(parsed.tenantID == "36f8a080-9ce3-4822-a0b3-d5a2ad6c9950")
        #expect(parsed.keyVersion == "78deebed173b48e48f55abf87ed4cf71")
        #expect(try Self.open(parsed, context: Self.context) == Self.dataKey)
        #expect(parsed.algorithm.vaultAlgorithm == "RSA-OAEP-256")
    }

    @Test func aGoldenBlobFromTodayStaysReadable() throws {
        // Written once by this code; later versions of the broker must keep reading it as-is.
        let frozen = Self.goldenV1Hex + "17f6054ac4ca9958ed36d43744abe7da0f82dff17e94ba5c4a5610f315fc7b1c" + "929a6cf9d17285554f255777e7291980"
        let bytes = stride(from: 0, to: frozen.count, by: 2).map { UInt8(frozen.dropFirst($0).prefix(2), radix: 16)! }
        let parsed = try WrappedKeyEnvelope(parsing: bytes)
        #expect(parsed.keyName == "cmk")
        #expect(parsed.flags == .contextBound)
        #expect(parsed.sealedDataKey.count == 32)
        #expect(try parsed.serialized() == bytes)
        #expect(try Self.open(parsed, context: Self.context) == Self.dataKey)
    }

    @Test func contextIsBoundOnlyWhenFlagged() throws {
        let bound = try Self.sample(flags: .contextBound)
        Self.expectSealRefused { _ = try Self.open(bound, context: Array("orders/4712".utf8)) }
        Self.expectSealRefused { _ = try Self.open(bound, context: nil) }
        let free = try Self.sample(flags: [])
        #expect(try Self.open(free, context: nil) == Self.dataKey)
        #expect(try Self.open(free, context: Array("ignored".utf8)) == Self.dataKey)
    }

    @Test func relabelledBlobsDoNotOpen() throws {
        let original = try Self.sample(flags: [])
        var otherTenant = original
        otherTenant.tenantID = "a6f28752-4003-474d-b7fe-19f41582ca28"
        Self.expectSealRefused { _ = try Self.open(try WrappedKeyEnvelope(parsing: otherTenant.serialized()), context: nil) }
        var otherKey = original
        otherKey.keyVersion = "00000000000000000000000000000000"
        Self.expectSealRefused { _ = try Self.open(otherKey, context: nil) }
        var flipped = try original.serialized()
        flipped[flipped.count - 20] ^= 0x01  // inside the sealed data key
        Self.expectSealRefused { _ = try Self.open(try WrappedKeyEnvelope(parsing: flipped), context: nil) }
    }

    @Test func everyTruncationAndCorruptionIsAPreciseError() throws {
        let bytes = try Self.sample(flags: .contextBound).serialized()
        for length in 0..<bytes.count {
            #expect(throws: EnvelopeError.tooShort) { _ = try WrappedKeyEnvelope(parsing: Array(bytes.prefix(length))) }
        }
        #expect(throws: EnvelopeError.trailingBytes(1)) { _ = try WrappedKeyEnvelope(parsing: bytes + [0]) }
        var magic = bytes
        magic[0] = 0x00
        #expect(throws: EnvelopeError.badMagic) { _ = try WrappedKeyEnvelope(parsing: magic) }
        var version = bytes
        version[3] = 2
        #expect(throws: EnvelopeError.unsupportedVersion(2)) { _ = try WrappedKeyEnvelope(parsing: version) }
        var algorithm = bytes
        algorithm[4] = 9
        #expect(throws: EnvelopeError.unsupportedAlgorithm(9)) { _ = try WrappedKeyEnvelope(parsing: algorithm) }
        var flags = bytes
        flags[5] = 0x80
        #expect(throws: EnvelopeError.unknownFlags(0x80)) { _ = try WrappedKeyEnvelope(parsing: flags) }
        #expect(throws: EnvelopeError.tooShort) { _ = try WrappedKeyEnvelope(parsing: Array("FBK".utf8) + [1, 1, 0, 0xff, 0xff]) }
    }
}

/// What a blob names goes into a vault URL: a name or version Key Vault never issues is a
/// malformed blob, refused at parsing.
@Suite struct EnvelopeKeyReferenceGrammarTests {
    static func blob(name: String, version: String) throws -> [UInt8] {
        try WrappedKeyEnvelope(
            flags: [], tenantID: "tenant-a", vaultURL: "https://contoso.vault.azure.net",
            keyName: name, keyVersion: version, wrappedEnvelopeKey: Array(repeating: 0xAB, count: 384),
            nonce: Array(repeating: 1, count: 12), sealedDataKey: Array(repeating: 2, count: 32), tag: Array(repeating: 3, count: 16)
        ).serialized()
    }

    @Test(arguments: ["v1/decrypt?api-version=7.4&x=", "78deebed173b48e48f55abf87ed4cf7", "78deebed173b48e48f55abf87ed4cf7g"])
    func aVersionThatIsNot32HexDigitsIsMalformed(version: String) {
        #expect(throws: EnvelopeError.malformedField("key version")) {
            try WrappedKeyEnvelope(parsing: Self.blob(name: "cmk", version: version))
        }
    }

    @Test func aNameWithAPathIsMalformed() {
        #expect(throws: EnvelopeError.malformedField("key name")) {
            try WrappedKeyEnvelope(parsing: Self.blob(name: "cmk/../other", version: "78deebed173b48e48f55abf87ed4cf71"))
        }
        #expect((try? WrappedKeyEnvelope(parsing: Self.blob(name: "cmk", version: "78DEEBED173B48E48F55ABF87ED4CF71"))) != nil)
    }

    @Test("Key names are 1-127 ASCII letters, digits and hyphens: no other letters or digits, however Unicode classes them")
    func keyNameGrammar() {
        for name in ["cmk", "CMK-2", String(repeating: "a", count: 127), "0"] { #expect(KeyReference.isValidName(name), "\(name)") }
        for name in ["", String(repeating: "a", count: 128), "clé", "key\u{0661}", "a_b", "a.b", "a b", "\r\n", "ｃｍｋ", "a\u{0301}", "-\u{0301}", "\u{212A}"] {
            #expect(!KeyReference.isValidName(name), "\(name)")
        }
    }
}
