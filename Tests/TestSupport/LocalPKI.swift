import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

/// A CA, a server certificate for localhost and client certificates, made in memory per run: mutual TLS
/// between the broker and its callers in tests, the smoke test and the benchmark. Nothing is
/// written to disk. Certificates are valid for an hour.
///
/// A client certificate for `name` carries the URI SAN `spiffe://fedbroker.test/<name>` (the
/// identity the broker derives, `callerIdentity(name)`: register callers under it) and `CN=<name>`.
public struct LocalPKI: Sendable {
    let caKey = P256.Signing.PrivateKey()
    public let ca: Certificate

    /// A certificate issued by this CA and its private key.
    public struct Leaf: Sendable {
        public let certificate: Certificate
        public let privateKeyPEM: String
        public var certificatePEM: String { get throws { try certificate.serializeAsPEM().pemString } }
    }

    public init(name: String = "fedbroker test CA") throws {
        let name = try DistinguishedName { CommonName(name) }
        ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey), notValidBefore: Date().addingTimeInterval(-300),
            notValidAfter: Date().addingTimeInterval(3600), issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true))
            }, issuerPrivateKey: .init(caKey))
    }

    /// The caller identity the broker derives from a client certificate made for `name`.
    public static func callerIdentity(_ name: String) -> String { "spiffe://fedbroker.test/\(name)" }

    /// A leaf certificate with exactly this subject and these URI SANs (none: no SAN extension
    /// on a client certificate), for tests of what identity a certificate yields.
    /// `serialNumber`: a chosen one (tests of two CAs that issued the same serial); random by default.
    public func issue(
        subject: DistinguishedName, uris: [String] = [], server: Bool = false, serialNumber: Certificate.SerialNumber = .init()
    ) throws -> Leaf {
        let key = P256.Signing.PrivateKey()
        var names: [GeneralName] = uris.map { .uniformResourceIdentifier($0) }
        if server { names.append(.dnsName("localhost")) }
        let cert = try Certificate(
            version: .v3, serialNumber: serialNumber, publicKey: .init(key.publicKey), notValidBefore: Date().addingTimeInterval(-300),
            notValidAfter: Date().addingTimeInterval(3600), issuer: ca.subject, subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([server ? .serverAuth : .clientAuth])
                if !names.isEmpty { SubjectAlternativeNames(names) }
            }, issuerPrivateKey: .init(caKey))
        return Leaf(certificate: cert, privateKeyPEM: key.pemRepresentation)
    }

    /// The usual leaf for `commonName`: the server's for localhost, or a caller's with its SPIFFE URI.
    public func issue(_ commonName: String, server: Bool) throws -> Leaf {
        try issue(subject: try DistinguishedName { CommonName(commonName) }, uris: server ? [] : [Self.callerIdentity(commonName)], server: server)
    }

    /// A leaf certificate and its private key, PEM-encoded (for files a child process reads).
    public func leafPEM(_ commonName: String, server: Bool) throws -> (certificate: String, privateKey: String) {
        let leaf = try issue(commonName, server: server)
        return (try leaf.certificatePEM, leaf.privateKeyPEM)
    }

    public func leaf(_ commonName: String, server: Bool) throws -> (NIOSSLCertificate, NIOSSLPrivateKey) {
        let (certificate, key) = try leafPEM(commonName, server: server)
        return (try NIOSSLCertificate(bytes: Array(certificate.utf8), format: .pem), try NIOSSLPrivateKey(bytes: Array(key.utf8), format: .pem))
    }

    public var caCertificatePEM: String { get throws { try ca.serializeAsPEM().pemString } }

    public var caCertificate: NIOSSLCertificate { get throws { try NIOSSLCertificate(bytes: Array(try caCertificatePEM.utf8), format: .pem) } }

    public func serverTLS() throws -> TLSConfiguration {
        let (cert, key) = try leaf("localhost", server: true)
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: [.certificate(cert)], privateKey: .privateKey(key))
        tls.certificateVerification = .noHostnameVerification  // a client certificate from our CA is required
        tls.trustRoots = .certificates([try caCertificate])
        tls.minimumTLSVersion = .tlsv13
        return tls
    }

    /// A client trusting this CA, presenting a caller certificate for `commonName` (nil: none).
    public func clientTLS(commonName: String?) throws -> TLSConfiguration {
        try clientTLS(presenting: try commonName.map { try issue($0, server: false) })
    }

    /// A client trusting this CA, presenting `leaf` (nil: no certificate).
    public func clientTLS(presenting leaf: Leaf?) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates([try caCertificate])
        if let leaf {
            tls.certificateChain = [.certificate(try NIOSSLCertificate(bytes: Array(try leaf.certificatePEM.utf8), format: .pem))]
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(leaf.privateKeyPEM.utf8), format: .pem))
        }
        return tls
    }

    /// A CRL of this CA (PEM, RFC 5280 v2, signed with the CA's key) listing `serials`.
    public func crlPEM(revoking serials: [Certificate.SerialNumber], nextUpdate: Date = Date().addingTimeInterval(3600)) throws -> String {
        let algorithm: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 2]  // ecdsa-with-SHA256
        let now = try Self.time(Date().addingTimeInterval(-60))
        var tbs = DER.Serializer()
        try tbs.appendConstructedNode(identifier: .sequence) { list in
            try list.serialize(1)  // v2
            try list.appendConstructedNode(identifier: .sequence) { try $0.serialize(algorithm) }
            try list.serialize(ca.subject)
            try list.serialize(now)
            try list.serialize(try Self.time(nextUpdate))
            if !serials.isEmpty {
                try list.appendConstructedNode(identifier: .sequence) { entries in
                    for serial in serials {
                        try entries.appendConstructedNode(identifier: .sequence) { entry in
                            try entry.serialize(serial.bytes)
                            try entry.serialize(now)
                        }
                    }
                }
            }
        }
        let signature = try caKey.signature(for: tbs.serializedBytes).derRepresentation
        var crl = DER.Serializer()
        try crl.appendConstructedNode(identifier: .sequence) { root in
            try root.serialize(try ASN1Any(derEncoded: tbs.serializedBytes))
            try root.appendConstructedNode(identifier: .sequence) { try $0.serialize(algorithm) }
            try root.serialize(ASN1BitString(bytes: ArraySlice(signature)))
        }
        return PEMDocument(type: "X509 CRL", derBytes: crl.serializedBytes).pemString
    }

    private static func time(_ date: Date) throws -> GeneralizedTime {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: 0)!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return try GeneralizedTime(
            year: c.year ?? 1970, month: c.month ?? 1, day: c.day ?? 1, hours: c.hour ?? 0, minutes: c.minute ?? 0, seconds: c.second ?? 0,
            fractionalSeconds: 0)
    }
}
