import FedBrokerCore
import Foundation
import SwiftASN1
import X509

/// The client certificates the CAs of `server.clientCA` have revoked, from the CRLs (RFC 5280,
/// §5) in `server.crlFile`, checked at every handshake.
///
/// NIOSSL offers no CRL hook and swift-certificates does not parse CRLs, so the few fields that
/// matter are read here with SwiftASN1. A CRL is taken only when its signature verifies against
/// a CA of `server.clientCA` whose subject is the CRL's issuer: whoever can write the CRL file
/// cannot revoke (or un-revoke) in a CA's name without that CA's key. The leaf certificate is
/// checked, against the CRL of its issuer; an intermediate CA is revoked by removing it from
/// `server.clientCA`.
public struct CertificateRevocationList: Sendable {
    struct List: Sendable {
        var issuer: DistinguishedName
        /// Serial numbers in their normalised DER integer form (as `Certificate.SerialNumber`).
        var revoked: Set<[UInt8]>
        var thisUpdate: Date
        var nextUpdate: Date?
        /// The key of the CA that signed this CRL. A CA being re-keyed is in `server.clientCA`
        /// twice under one subject; a serial is revoked only for the certificates that key
        /// issued, not for the other key's certificate that happens to carry the same serial.
        var signer: Certificate.PublicKey? = nil
    }

    let lists: [List]

    /// Parses the PEM (`-----BEGIN X509 CRL-----`, any number) or DER contents of a CRL file and
    /// verifies each CRL against `issuers`.
    public init(contents: [UInt8], issuers: [Certificate]) throws(Failure) {
        let ders: [[UInt8]]
        if let text = String(validating: contents, as: UTF8.self), text.contains("-----BEGIN") {
            do {
                ders = try PEMDocument.parseMultiple(pemString: text).filter { $0.discriminator == "X509 CRL" }.map(\.derBytes)
            } catch {
                throw Failure("it is not PEM: \(error)")
            }
            guard !ders.isEmpty else { throw Failure("it holds no -----BEGIN X509 CRL----- block") }
        } else {
            ders = [contents]
        }
        var lists: [List] = []
        for der in ders { lists.append(try Self.parse(der, issuers: issuers)) }
        self.lists = lists
    }

    /// Whether the CRL of `certificate`'s issuer lists its serial number. The signature check,
    /// which tells two keys of one CA subject apart, runs only for a listed serial.
    public func isRevoked(_ certificate: Certificate) -> Bool {
        let serial = Array(certificate.serialNumber.bytes)
        return lists.contains {
            $0.issuer == certificate.issuer && $0.revoked.contains(serial)
                && ($0.signer?.isValidSignature(certificate.signature, for: certificate) ?? true)
        }
    }

    /// The earliest `nextUpdate` passed by `now`, if any: an expired CRL is still applied (its
    /// revocations stay true), but the operator must be told to publish a fresh one.
    public func expired(at now: Date) -> Date? {
        lists.compactMap(\.nextUpdate).filter { $0 < now }.min()
    }

    public var revokedCount: Int { lists.reduce(0) { $0 + $1.revoked.count } }

    /// Why a CRL file cannot be used.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    // MARK: Parsing

    //   CertificateList ::= SEQUENCE { tbsCertList TBSCertList, signatureAlgorithm AlgorithmIdentifier,
    //                                  signatureValue BIT STRING }
    //   TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature AlgorithmIdentifier, issuer Name,
    //                              thisUpdate Time, nextUpdate Time OPTIONAL,
    //                              revokedCertificates SEQUENCE OF SEQUENCE { userCertificate INTEGER,
    //                                  revocationDate Time, crlEntryExtensions Extensions OPTIONAL } OPTIONAL,
    //                              crlExtensions [0] EXPLICIT Extensions OPTIONAL }
    private static func parse(_ der: [UInt8], issuers: [Certificate]) throws(Failure) -> List {
        do {
            let root = try DER.parse(der)
            let (tbs, algorithm, signature) = try DER.sequence(root, identifier: .sequence) { nodes in
                guard let tbs = nodes.next() else { throw Failure("no tbsCertList") }
                let algorithm = try Self.algorithm(&nodes)
                let signature = try ASN1BitString(derEncoded: &nodes)
                return (tbs, algorithm, signature)
            }
            let list = try DER.sequence(tbs, identifier: .sequence) { nodes in
                var node = nodes.next()
                if node?.identifier == .integer { node = nodes.next() }  // version v2
                guard node?.identifier == .sequence else { throw Failure("no signature algorithm in tbsCertList") }
                guard let issuerNode = nodes.next() else { throw Failure("no issuer") }
                let issuer = try DistinguishedName(derEncoded: issuerNode)
                guard let thisUpdateNode = nodes.next(), let thisUpdate = try Self.time(thisUpdateNode) else { throw Failure("no thisUpdate") }
                var next = nodes.next()
                var nextUpdate: Date?
                if let candidate = next, let time = try Self.time(candidate) {
                    nextUpdate = time
                    next = nodes.next()
                }
                var revoked = Set<[UInt8]>()
                if let entries = next, entries.identifier == .sequence {
                    try DER.sequence(entries, identifier: .sequence) { entryNodes in
                        while let entry = entryNodes.next() {
                            try DER.sequence(entry, identifier: .sequence) { fields in
                                let serial = Certificate.SerialNumber(bytes: try ArraySlice<UInt8>(derEncoded: &fields))
                                revoked.insert(Array(serial.bytes))
                                while fields.next() != nil {}  // revocationDate, entry extensions
                            }
                        }
                    }
                    next = nodes.next()
                }
                while nodes.next() != nil {}  // crlExtensions
                return List(issuer: issuer, revoked: revoked, thisUpdate: thisUpdate, nextUpdate: nextUpdate)
            }
            // Every CA of that subject is tried: during a CA's re-key the old and the new
            // certificate share it, and the CRL is signed by one of them.
            let candidates = issuers.filter { $0.subject == list.issuer }
            guard !candidates.isEmpty else {
                throw Failure("its issuer (\(BoundedText.escaped(list.issuer.rfc4514String))) is not a CA of server.clientCA")
            }
            guard let algorithm,
                let signer = candidates.first(where: {
                    $0.publicKey.isValidSignature(signature.bytes, for: tbs.encodedBytes, signatureAlgorithm: algorithm)
                })
            else {
                throw Failure("its signature does not verify against the CA \(BoundedText.escaped(list.issuer.rfc4514String))")
            }
            var verified = list
            verified.signer = signer.publicKey
            return verified
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure("it is not a DER CertificateList: \(error)")
        }
    }

    /// The signature algorithms swift-certificates verifies; nil for another (the CRL is refused).
    private static func algorithm(_ nodes: inout ASN1NodeCollection.Iterator) throws -> Certificate.SignatureAlgorithm? {
        guard let node = nodes.next() else { throw Failure("no signature algorithm") }
        return try DER.sequence(node, identifier: .sequence) { inner -> Certificate.SignatureAlgorithm? in
            let oid = try ASN1ObjectIdentifier(derEncoded: &inner)
            while inner.next() != nil {}  // parameters
            switch oid {
            case [1, 2, 840, 10045, 4, 3, 2]: return .ecdsaWithSHA256
            case [1, 2, 840, 10045, 4, 3, 3]: return .ecdsaWithSHA384
            case [1, 2, 840, 10045, 4, 3, 4]: return .ecdsaWithSHA512
            case [1, 2, 840, 113549, 1, 1, 11]: return .sha256WithRSAEncryption
            case [1, 2, 840, 113549, 1, 1, 12]: return .sha384WithRSAEncryption
            case [1, 2, 840, 113549, 1, 1, 13]: return .sha512WithRSAEncryption
            case [1, 3, 101, 112]: return .ed25519
            default: return nil
            }
        }
    }

    /// A UTCTime or GeneralizedTime; nil for a node of another type.
    private static func time(_ node: ASN1Node) throws -> Date? {
        var components = DateComponents()
        switch node.identifier {
        case .utcTime:
            let t = try UTCTime(derEncoded: node)
            (components.year, components.month, components.day) = (t.year, t.month, t.day)
            (components.hour, components.minute, components.second) = (t.hours, t.minutes, t.seconds)
        case .generalizedTime:
            let t = try GeneralizedTime(derEncoded: node)
            (components.year, components.month, components.day) = (t.year, t.month, t.day)
            (components.hour, components.minute, components.second) = (t.hours, t.minutes, t.seconds)
        default:
            return nil
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let date = calendar.date(from: components) else { throw Failure("a time in it is not a date") }
        return date
    }
}
