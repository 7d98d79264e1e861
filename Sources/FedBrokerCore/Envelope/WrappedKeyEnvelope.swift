import Foundation

/// The wrapped-key blob the broker hands to internal services: self-describing and versioned,
/// so Unwrap needs the blob alone (ARCHITECTURE.md invariant 2).
///
/// What the customer's vault wraps (RSA-OAEP-256) is a fresh 256-bit *envelope key*; the data key
/// itself is sealed with AES-256-GCM under that envelope key, with the whole header — tenant, key
/// reference, algorithm, flags and the RSA-wrapped envelope key — plus the caller's optional
/// context as associated data. So a blob whose tenant, key or context was altered, or which is
/// presented under another context, fails to open even though the vault would still unwrap its
/// envelope key: a caller authorized for tenant A cannot smuggle tenant B's key material through
/// a relabelled blob.
///
/// Layout (all integers big-endian), version 1:
///
///     magic "FBK" | version u8 = 1 | algorithm u8 | flags u8
///     tenant: u16 length + UTF-8
///     vault URL: u16 length + UTF-8
///     key name: u16 length + UTF-8
///     key version: u16 length + UTF-8
///     wrapped envelope key: u16 length + bytes
///     nonce: 12 bytes
///     sealed data key: u16 length + bytes (ciphertext)
///     tag: 16 bytes
///
/// The associated data of the seal is every byte before the nonce, then, when the context flag
/// is set, `u32 length + context`. The format never changes incompatibly: a new layout gets a
/// new version number, and every version ever written stays readable (golden vectors pin them).
public struct WrappedKeyEnvelope: Sendable, Equatable {
    public static let magic: [UInt8] = Array("FBK".utf8)
    public static let currentVersion: UInt8 = 1
    /// The longest data key a blob seals: generous above Wrap's 318-byte limit (an RSA-3072
    /// OAEP-256 plaintext), small enough that a parse never handles a large allocation.
    public static let maximumSealedLength = 1024
    /// The lengths an RSA wrap of the envelope key can have: the modulus, 2048 to 8192 bits. A
    /// vault answer or a blob field outside them is not a wrap.
    public static let wrappedKeyLengths = 256...1024

    public enum Algorithm: UInt8, Sendable, Equatable {
        /// Envelope key wrapped by the vault with RSA-OAEP-256; data key sealed with AES-256-GCM.
        case rsaOAEP256WithA256GCM = 1

        /// The Key Vault algorithm name for the envelope-key wrap.
        public var vaultAlgorithm: String {
            switch self {
            case .rsaOAEP256WithA256GCM: "RSA-OAEP-256"
            }
        }
    }

    public struct Flags: OptionSet, Sendable, Equatable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// The seal binds a caller-supplied context, which Unwrap must present again.
        public static let contextBound = Flags(rawValue: 1)
    }

    public var version: UInt8
    public var algorithm: Algorithm
    public var flags: Flags
    /// The customer's Entra tenant id.
    public var tenantID: String
    public var vaultURL: String
    public var keyName: String
    /// Always a concrete version: a blob must name the version that wrapped it.
    public var keyVersion: String
    /// The envelope key as the vault wrapped it.
    public var wrappedEnvelopeKey: [UInt8]
    public var nonce: [UInt8]
    public var sealedDataKey: [UInt8]
    public var tag: [UInt8]

    public init(
        algorithm: Algorithm = .rsaOAEP256WithA256GCM, flags: Flags, tenantID: String, vaultURL: String, keyName: String,
        keyVersion: String, wrappedEnvelopeKey: [UInt8], nonce: [UInt8], sealedDataKey: [UInt8], tag: [UInt8]
    ) {
        self.version = Self.currentVersion
        self.algorithm = algorithm
        self.flags = flags
        self.tenantID = tenantID
        self.vaultURL = vaultURL
        self.keyName = keyName
        self.keyVersion = keyVersion
        self.wrappedEnvelopeKey = wrappedEnvelopeKey
        self.nonce = nonce
        self.sealedDataKey = sealedDataKey
        self.tag = tag
    }

    /// The bytes of the header, which the seal authenticates (with the context).
    ///
    /// Throws rather than traps when a field does not fit its 16-bit length: the wrapped envelope
    /// key is whatever the vault returned, and a vault is outside our control.
    public func header() throws(BrokerError) -> [UInt8] {
        var out = Self.magic + [version, algorithm.rawValue, flags.rawValue]
        for (name, field) in [("tenant", tenantID), ("vault URL", vaultURL), ("key name", keyName), ("key version", keyVersion)] {
            try Self.appendLengthPrefixed(Array(field.utf8), named: name, to: &out)
        }
        try Self.appendLengthPrefixed(wrappedEnvelopeKey, named: "wrapped envelope key", to: &out)
        return out
    }

    /// The associated data for sealing and opening the data key.
    public func associatedData(context: [UInt8]?) throws(BrokerError) -> [UInt8] {
        var out = try header()
        if flags.contains(.contextBound) {
            let c = context ?? []
            guard c.count <= Int(UInt32.max) else { throw BrokerError(.invalidArgument, "the context is \(c.count) bytes; at most \(UInt32.max)") }
            out += withUnsafeBytes(of: UInt32(c.count).bigEndian, Array.init)
            out += c
        }
        return out
    }

    public func serialized() throws(BrokerError) -> [UInt8] {
        var out = try header()
        out += nonce
        try Self.appendLengthPrefixed(sealedDataKey, named: "sealed data key", to: &out)
        out += tag
        return out
    }

    private static func appendLengthPrefixed(_ bytes: [UInt8], named name: String, to out: inout [UInt8]) throws(BrokerError) {
        guard let length = UInt16(exactly: bytes.count) else {
            throw BrokerError(.invalidArgument, "the envelope's \(name) is \(bytes.count) bytes; a blob holds at most \(UInt16.max)")
        }
        out += withUnsafeBytes(of: length.bigEndian, Array.init)
        out += bytes
    }
}
