import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

/// A CA, a server certificate for localhost and client certificates, made in memory per run: mutual TLS
/// between the broker and its callers in tests, the smoke test and the benchmark. Nothing is
/// written to disk. Certificates are valid for an hour.
public struct LocalPKI: Sendable {
    let caKey = P256.Signing.PrivateKey()
    public let ca: Certificate

    public init() throws {
        let name = try DistinguishedName { CommonName("fedbroker test CA") }
        ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey), notValidBefore: Date().addingTimeInterval(-300),
            notValidAfter: Date().addingTimeInterval(3600), issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true))
            }, issuerPrivateKey: .init(caKey))
    }

    /// A leaf certificate and its private key, PEM-encoded (for files a child process reads).
    public func leafPEM(_ commonName: String, server: Bool) throws -> (certificate: String, privateKey: String) {
        let key = P256.Signing.PrivateKey()
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: Date().addingTimeInterval(-300),
            notValidAfter: Date().addingTimeInterval(3600), issuer: ca.subject, subject: try DistinguishedName { CommonName(commonName) },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([server ? .serverAuth : .clientAuth])
                if server { SubjectAlternativeNames([.dnsName("localhost")]) }
            }, issuerPrivateKey: .init(caKey))
        return (try cert.serializeAsPEM().pemString, key.pemRepresentation)
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

    public func clientTLS(commonName: String?) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates([try caCertificate])
        if let commonName {
            let (cert, key) = try leaf(commonName, server: false)
            tls.certificateChain = [.certificate(cert)]
            tls.privateKey = .privateKey(key)
        }
        return tls
    }
}
