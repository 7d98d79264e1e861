import Foundation

/// Why a blob is not a wrapped key this broker can read. Stable codes: they reach callers as
/// BLOB_INVALID with the reason.
public enum EnvelopeError: Error, Sendable, Equatable, CustomStringConvertible {
    case tooShort
    case badMagic
    case unsupportedVersion(UInt8)
    case unsupportedAlgorithm(UInt8)
    case unknownFlags(UInt8)
    case malformedField(String)
    case trailingBytes(Int)

    public var description: String {
        switch self {
        case .tooShort: "the blob is truncated"
        case .badMagic: "the blob is not a fedbroker wrapped key"
        case .unsupportedVersion(let v): "blob format version \(v) is newer than this broker"
        case .unsupportedAlgorithm(let a): "blob algorithm \(a) is unknown"
        case .unknownFlags(let f): "blob flags \(f) are unknown"
        case .malformedField(let f): "the blob's \(f) is malformed"
        case .trailingBytes(let n): "the blob has \(n) bytes after its end"
        }
    }
}

extension WrappedKeyEnvelope {
    /// Parses a blob of any version this broker has ever written.
    public init(parsing bytes: [UInt8]) throws(EnvelopeError) {
        var reader = Reader(bytes: bytes)
        guard bytes.count >= 6 else { throw .tooShort }
        guard bytes[0..<3].elementsEqual(Self.magic) else { throw .badMagic }
        reader.offset = 3
        let version = try reader.byte()
        guard version == 1 else { throw .unsupportedVersion(version) }
        let algorithmByte = try reader.byte()
        guard let algorithm = Algorithm(rawValue: algorithmByte) else { throw .unsupportedAlgorithm(algorithmByte) }
        let flagsByte = try reader.byte()
        let flags = Flags(rawValue: flagsByte)
        guard flags.subtracting(.contextBound).isEmpty else { throw .unknownFlags(flagsByte) }
        let tenant = try reader.string("tenant")
        let vault = try reader.string("vault URL")
        let name = try reader.string("key name")
        let keyVersion = try reader.string("key version")
        guard !tenant.isEmpty, !vault.isEmpty, !name.isEmpty, !keyVersion.isEmpty else { throw .malformedField("key reference") }
        // The name and version go into a vault URL: only what Key Vault itself issues is accepted.
        guard KeyReference.isValidName(name) else { throw .malformedField("key name") }
        guard KeyReference.isValidVersion(keyVersion) else { throw .malformedField("key version") }
        // Every field is held to the grammar the broker itself writes, so nothing a caller
        // invents reaches a lookup, a log line or a vault request.
        guard TenantID(rawValue: tenant) != nil else { throw .malformedField("tenant") }
        guard KeyReference.canonicalVaultURL(vault) != nil else { throw .malformedField("vault URL") }
        let wrapped = try reader.lengthPrefixed()
        // An RSA wrap is as long as the modulus: 256 bytes (2048-bit) up to 1,024 (8192-bit).
        guard Self.wrappedKeyLengths.contains(wrapped.count) else { throw .malformedField("wrapped envelope key") }
        let nonce = try reader.take(12)
        let sealed = try reader.lengthPrefixed()
        guard (1...Self.maximumSealedLength).contains(sealed.count) else { throw .malformedField("sealed data key") }
        let tag = try reader.take(16)
        guard reader.remaining == 0 else { throw .trailingBytes(reader.remaining) }
        self.init(
            algorithm: algorithm, flags: flags, tenantID: tenant, vaultURL: vault, keyName: name, keyVersion: keyVersion,
            wrappedEnvelopeKey: wrapped, nonce: nonce, sealedDataKey: sealed, tag: tag)
        self.version = version
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0
        var remaining: Int { bytes.count - offset }

        mutating func take(_ n: Int) throws(EnvelopeError) -> [UInt8] { Array(try slice(n)) }

        mutating func slice(_ n: Int) throws(EnvelopeError) -> ArraySlice<UInt8> {
            guard remaining >= n else { throw .tooShort }
            defer { offset += n }
            return bytes[offset..<offset + n]
        }

        // Bytes, lengths and texts are read in place: a blob is parsed on every Unwrap, cached or
        // not, and an array per field was most of the parse's cost.
        mutating func byte() throws(EnvelopeError) -> UInt8 {
            let byte = try slice(1)
            return byte[byte.startIndex]
        }

        mutating func length() throws(EnvelopeError) -> Int {
            let length = try slice(2)
            return Int(length[length.startIndex]) << 8 | Int(length[length.startIndex + 1])
        }

        mutating func lengthPrefixed() throws(EnvelopeError) -> [UInt8] { try take(try length()) }

        mutating func string(_ field: String) throws(EnvelopeError) -> String {
            guard let s = try slice(try length()).withUnsafeBufferPointer({ String(validating: $0, as: UTF8.self) }) else {
                throw .malformedField(field)
            }
            return s
        }
    }
}
