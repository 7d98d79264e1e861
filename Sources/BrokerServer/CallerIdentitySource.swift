import FedBrokerCore
import X509

/// Where a caller's identity comes from in its client certificate (`server.callerIdentity`).
///
/// A certificate that yields none is refused at the handshake; it never becomes the empty
/// identity plaintext mode uses. The identity is the whole URI SAN or the whole subject (which
/// must hold a CN), never one attribute of it: two certificates that differ only in O (or OU, or
/// any other attribute) are two callers. Every CA in `server.clientCA` may assert any identity.
public enum CallerIdentitySource: String, Sendable, CaseIterable {
    /// The certificate's one URI SAN (a SPIFFE ID); a certificate without one is refused.
    case uri
    /// The subject DN in RFC 4514 form; SANs are not looked at.
    case subject
    /// The one URI SAN if there is one, otherwise the subject DN: the default.
    case uriOrSubject = "uri-or-subject"

    /// The longest identity accepted, in bytes (the admin API stores up to 512 characters).
    public static let maximumLength = 512

    /// The identity `certificate` proves, or why it proves none.
    ///
    /// A URI SAN must be an absolute URI of RFC 3986's characters (`scheme:` first), so it can
    /// never equal a subject's RFC 4514 string (whose first `=` comes before any `:`): one
    /// source cannot impersonate the other. More than one URI SAN is refused, as SPIFFE requires.
    public func identity(of certificate: Certificate) throws(CallerCertificateRefusal) -> CallerIdentity {
        if self != .subject {
            let names: SubjectAlternativeNames?
            do {
                names = try certificate.extensions.subjectAlternativeNames
            } catch {
                throw CallerCertificateRefusal(.unreadable, "its subjectAltName extension cannot be parsed")
            }
            let uris = (names.map { Array($0) } ?? []).compactMap { name -> String? in
                if case .uniformResourceIdentifier(let uri) = name { return uri }
                return nil
            }
            if uris.count > 1 {
                throw CallerCertificateRefusal(.ambiguousIdentity, "it has \(uris.count) URI SANs; a caller certificate carries one")
            }
            if let uri = uris.first {
                guard Self.isIdentityURI(uri) else {
                    throw CallerCertificateRefusal(
                        .invalidIdentity, "its URI SAN '\(BoundedText.escaped(uri, limit: 80))' is not an absolute URI of at most \(Self.maximumLength) bytes")
                }
                return CallerIdentity(name: uri)
            }
            if self == .uri {
                throw CallerCertificateRefusal(.noIdentity, "it has no URI SAN (server.callerIdentity is uri)")
            }
        }
        // A subject names a caller only with a CN in it (O or OU alone name an organisation).
        guard certificate.subject.contains(where: { $0.contains { $0.type == .RDNAttributeType.commonName } }) else {
            throw CallerCertificateRefusal(
                .noIdentity, self == .subject ? "its subject has no CN" : "it has no URI SAN and its subject has no CN")
        }
        let subject = certificate.subject.rfc4514String
        guard subject.utf8.count <= Self.maximumLength else {
            throw CallerCertificateRefusal(
                .invalidIdentity, "its subject '\(BoundedText.escaped(subject, limit: 80))' is longer than \(Self.maximumLength) bytes")
        }
        return CallerIdentity(name: subject)
    }

    /// `scheme:rest`, RFC 3986 characters only (no space, no control, no non-ASCII), bounded.
    static func isIdentityURI(_ uri: String) -> Bool {
        let bytes = Array(uri.utf8)
        guard (1...maximumLength).contains(bytes.count), let colon = bytes.firstIndex(of: UInt8(ascii: ":")), colon > 0,
            colon < bytes.count - 1
        else { return false }
        let isLetter = { (b: UInt8) in (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b) }
        let isDigit = { (b: UInt8) in (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) }
        guard isLetter(bytes[0]), bytes[1..<colon].allSatisfy({ isLetter($0) || isDigit($0) || "+-.".utf8.contains($0) }) else { return false }
        return bytes.allSatisfy { isLetter($0) || isDigit($0) || "-._~:/?#[]@!$&'()*+,;=%".utf8.contains($0) }
    }
}
