/// Who is calling: the identity the TLS handshake proved, taken from the client certificate as
/// `server.callerIdentity` says (`CallerIdentitySource`), and looked up in the store's callers.
///
/// Equal only when the bytes are: Swift's `String ==` treats canonically equivalent strings as
/// equal (`é` and `e` + combining accent), while the store compares bytes, so two identities
/// must never meet through `String ==`. Identities the transport derives are printable ASCII
/// anyway (`CallerIdentitySource`), where the two agree.
public struct CallerIdentity: Sendable, Hashable, CustomStringConvertible {
    /// The configured identity string: a URI SAN (a SPIFFE ID), or the subject DN in RFC 4514
    /// form. Empty only for `unauthenticated`.
    public let name: String

    /// The name's UTF-8 bytes, kept beside it: every request hashes and compares the identity
    /// (admission, the caller's record), and a contiguous array does both at once where the
    /// string's UTF-8 view goes byte by byte.
    private let bytes: [UInt8]

    public init(name: String) {
        self.name = name
        self.bytes = Array(name.utf8)
    }

    /// What audit records and messages name the caller by.
    public var description: String { name.isEmpty ? "(anonymous)" : name }

    /// Plaintext connections (loopback only, when configured so) carry this identity; no
    /// certificate ever maps to it.
    public static let unauthenticated = CallerIdentity(name: "")

    public static func == (lhs: CallerIdentity, rhs: CallerIdentity) -> Bool {
        lhs.bytes == rhs.bytes
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(bytes.count)
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}
