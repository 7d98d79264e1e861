import AzureEmulator
import BrokerServer
import Crypto
import CryptoExtras
import FedBrokerCore
import Foundation
import Testing

/// Seal and open with a local RSA-3072 key standing in for the vault.
@Suite struct EnvelopeCryptoTests {
    static let vaultKeyDER = try! RSAKeyMaterial.spareKeyDER(bits: 3072)
    static var vaultKey: _RSA.Encryption.PrivateKey { try! _RSA.Encryption.PrivateKey(derRepresentation: vaultKeyDER) }

    func wrapping(tenant: String = "tenant-a") -> EnvelopeCrypto.Wrapping {
        EnvelopeCrypto.Wrapping(tenantID: tenant, vaultURL: "https://a.vault.azure.net", keyName: "cmk") { envelopeKey in
            ("78deebed173b48e48f55abf87ed4cf71", Array(try Self.vaultKey.publicKey.encrypt(envelopeKey, padding: .PKCS1_OAEP_SHA256)))
        }
    }

    func unwrap(_ e: WrappedKeyEnvelope) throws -> SecretBytes {
        SecretBytes(try Self.vaultKey.decrypt(e.wrappedEnvelopeKey, padding: .PKCS1_OAEP_SHA256))
    }

    @Test func sealsAndOpensThroughTheBlobFormat() async throws {
        let dataKey = SecretBytes((0..<32).map { UInt8($0) })
        let envelope = try await EnvelopeCrypto.seal(dataKey, context: Array("ctx".utf8), with: wrapping())
        let blob = try envelope.serialized()
        let parsed = try WrappedKeyEnvelope(parsing: blob)
        #expect(parsed.tenantID == "tenant-a")
        #expect(parsed.keyVersion == "78deebed173b48e48f55abf87ed4cf71")
        #expect(parsed.wrappedEnvelopeKey.count == 384)
        let opened = try EnvelopeCrypto.open(parsed, envelopeKey: try unwrap(parsed), context: Array("ctx".utf8))
        #expect(opened == dataKey)
    }

    @Test func aRelabelledOrRecontextedBlobDoesNotOpen() async throws {
        let envelope = try await EnvelopeCrypto.seal(SecretBytes([1, 2, 3]), context: Array("ctx".utf8), with: wrapping())
        var stolen = envelope
        stolen.tenantID = "tenant-b"  // a caller of tenant B relabels A's blob
        #expect(throws: EnvelopeCrypto.Failure.authenticationFailed) {
            _ = try EnvelopeCrypto.open(stolen, envelopeKey: try unwrap(stolen), context: Array("ctx".utf8))
        }
        #expect(throws: EnvelopeCrypto.Failure.authenticationFailed) {
            _ = try EnvelopeCrypto.open(envelope, envelopeKey: try unwrap(envelope), context: Array("other".utf8))
        }
        #expect(throws: EnvelopeCrypto.Failure.badEnvelopeKey) {
            _ = try EnvelopeCrypto.open(envelope, envelopeKey: SecretBytes([1]), context: Array("ctx".utf8))
        }
    }

    @Test func everySealUsesAFreshEnvelopeKeyAndNonce() async throws {
        let a = try await EnvelopeCrypto.seal(SecretBytes([9]), context: nil, with: wrapping())
        let b = try await EnvelopeCrypto.seal(SecretBytes([9]), context: nil, with: wrapping())
        #expect(a.nonce != b.nonce)
        #expect(try unwrap(a) != (try unwrap(b)))
        #expect(a.flags == [])
    }
}
