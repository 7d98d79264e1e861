import Crypto
import FedBrokerCore
import Foundation

/// Seals a data key into a `WrappedKeyEnvelope` and opens one (docs/envelope.md): a fresh
/// envelope key wrapped by the customer's vault, the data key sealed under it with AES-256-GCM
/// over the header and the optional context. The vault calls are injected, so this is tested
/// without a vault and used with `KeyVaultClient` in the server.
public enum EnvelopeCrypto {
    /// Where the envelope key is wrapped: the vault key reference, and the vault call that
    /// returns the wrapping key version (its `kid` version) and the wrapped bytes.
    public struct Wrapping: Sendable {
        public var tenantID: String
        public var vaultURL: String
        public var keyName: String
        public var wrap: @Sendable (_ envelopeKey: [UInt8]) async throws -> (keyVersion: String, wrapped: [UInt8])

        public init(
            tenantID: String, vaultURL: String, keyName: String,
            wrap: @escaping @Sendable (_ envelopeKey: [UInt8]) async throws -> (keyVersion: String, wrapped: [UInt8])
        ) {
            self.tenantID = tenantID
            self.vaultURL = vaultURL
            self.keyName = keyName
            self.wrap = wrap
        }
    }

    public enum Failure: Error, Equatable, Sendable {
        /// The seal does not verify: the blob was altered, relabelled, or presented under another context.
        case authenticationFailed
        /// The vault returned an envelope key of the wrong size.
        case badEnvelopeKey
    }

    /// Seals `dataKey` for the wrapping's tenant and key; binds `context` when given.
    public static func seal(_ dataKey: SecretBytes, context: [UInt8]?, with wrapping: Wrapping) async throws -> WrappedKeyEnvelope {
        let envelopeKey = SymmetricKey(size: .bits256)
        let envelopeKeyBytes = envelopeKey.withUnsafeBytes { SecretBytes($0) }
        let (version, wrapped) = try await wrapping.wrap(envelopeKeyBytes.bytes)
        var envelope = WrappedKeyEnvelope(
            flags: context == nil ? [] : .contextBound, tenantID: wrapping.tenantID, vaultURL: wrapping.vaultURL,
            keyName: wrapping.keyName, keyVersion: version, wrappedEnvelopeKey: wrapped, nonce: Array(AES.GCM.Nonce()),
            sealedDataKey: [], tag: [])
        let box = try dataKey.withBytes { plaintext in
            try AES.GCM.seal(
                plaintext, using: envelopeKey, nonce: try AES.GCM.Nonce(data: envelope.nonce),
                authenticating: envelope.associatedData(context: context))
        }
        envelope.sealedDataKey = Array(box.ciphertext)
        envelope.tag = Array(box.tag)
        return envelope
    }

    /// Opens `envelope` with its envelope key (as the vault unwrapped it) and the context.
    public static func open(_ envelope: WrappedKeyEnvelope, envelopeKey: SecretBytes, context: [UInt8]?) throws -> SecretBytes {
        guard envelopeKey.count == 32 else { throw Failure.badEnvelopeKey }
        do {
            let key = envelopeKey.withBytes { SymmetricKey(data: $0) }
            let box = try AES.GCM.SealedBox(
                nonce: AES.GCM.Nonce(data: envelope.nonce), ciphertext: envelope.sealedDataKey, tag: envelope.tag)
            let opened = try AES.GCM.open(box, using: key, authenticating: envelope.associatedData(context: context))
            return SecretBytes(opened)
        } catch {
            throw Failure.authenticationFailed
        }
    }
}
