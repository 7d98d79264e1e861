import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

/// The emulator's own certificate authority and the server certificate its HTTPS listeners
/// present (`localhost`, 127.0.0.1, ::1). Clients trust the CA through
/// FEDBROKER_EMU_CA_BUNDLE; nothing here is product key material.
public struct EmulatorPKI: Sendable {
    public let caCertificatePEM: String
    let caKeyPEM: String
    let serverCertificatePEM: String
    let serverKeyPEM: String

    /// Loads the CA from `directory` when it is there (so clients keep trusting it across
    /// restarts), otherwise makes one; the server certificate is issued anew each start.
    public static func make(directory: URL?, now: Date = Date()) throws -> EmulatorPKI {
        let caKey: P256.Signing.PrivateKey
        let caCertificate: Certificate
        let caCertURL = directory?.appendingPathComponent("ca.pem")
        let caKeyURL = directory?.appendingPathComponent("ca-key.pem")
        if let caCertURL, let caKeyURL,
            let certPEM = try? String(contentsOf: caCertURL, encoding: .utf8),
            let keyPEM = try? String(contentsOf: caKeyURL, encoding: .utf8)
        {
            caKey = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
            caCertificate = try Certificate(pemEncoded: certPEM)
        } else {
            caKey = P256.Signing.PrivateKey()
            let name = try DistinguishedName {
                OrganizationName("fedbroker Azure emulator")
                CommonName("fedbroker-dev emulator CA")
            }
            caCertificate = try Certificate(
                version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
                notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(10 * 365 * 86400),
                issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                    SubjectKeyIdentifier(hash: .init(caKey.publicKey))
                },
                issuerPrivateKey: .init(caKey))
            if let caCertURL, let caKeyURL {
                try caCertificate.serializeAsPEM().pemString.write(to: caCertURL, atomically: true, encoding: .utf8)
                // Created owner-only from the first byte, not chmod'ed afterwards.
                guard FileManager.default.createFile(
                    atPath: caKeyURL.path, contents: Data(caKey.pemRepresentation.utf8), attributes: [.posixPermissions: 0o600])
                else { throw CocoaError(.fileWriteNoPermission) }
            }
        }
        let serverKey = P256.Signing.PrivateKey()
        let serverCertificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(serverKey.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(365 * 86400),
            issuer: caCertificate.subject,
            subject: try DistinguishedName { CommonName("localhost") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([
                    .dnsName("localhost"),
                    .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])),
                    .ipAddress(ASN1OctetString(contentBytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])),
                ])
            },
            issuerPrivateKey: .init(caKey))
        return EmulatorPKI(
            caCertificatePEM: try caCertificate.serializeAsPEM().pemString,
            caKeyPEM: caKey.pemRepresentation,
            serverCertificatePEM: try serverCertificate.serializeAsPEM().pemString + "\n" + caCertificate.serializeAsPEM().pemString,
            serverKeyPEM: serverKey.pemRepresentation)
    }

    /// Server TLS for the HTTPS listeners.
    func serverTLSConfiguration() throws -> TLSConfiguration {
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(serverCertificatePEM.utf8))
        let key = try NIOSSLPrivateKey(bytes: Array(serverKeyPEM.utf8), format: .pem)
        return TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    }
}
