import Crypto
import FedBrokerCore
import Foundation
import NIOSSL
import SwiftASN1
import Synchronization
import X509

/// Where the framed listener's TLS comes from when it is read from files (`serve`): the server's
/// certificate chain and key, the CA that issues callers' certificates, and optionally a CRL of
/// that CA. The files are read again every `reloadSeconds`; new connections use what they hold
/// now, so certificates are rotated without a restart.
public struct ServerTLSFiles: Sendable, Equatable {
    public var certificateChain: String
    public var privateKey: String
    public var clientCA: String
    public var crl: String?
    /// How often the files are read again for changes (0: never).
    public var reloadSeconds: Double = 5

    public init(certificateChain: String, privateKey: String, clientCA: String, crl: String? = nil) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.clientCA = clientCA
        self.crl = crl
    }
}

/// The TLS a new connection gets: one context and the CRL that goes with it, replaced together
/// when the files change and the new ones load. A change that does not load (a key that does not
/// match, a half-written file, a CRL whose signature fails) keeps the material in use, so a bad
/// rotation never stops the listener; it is logged and counted until it is fixed.
final class ServerTLSMaterial: Sendable {
    struct Snapshot: Sendable {
        let context: NIOSSLContext
        let crl: CertificateRevocationList?
        /// SHA-256 over the files' contents: a change of any byte reloads.
        let fingerprint: [UInt8]
    }

    enum Reload: Equatable {
        case unchanged
        case reloaded
        case failed(String)
        /// After a failure, the files are back to what is in use (a bad rotation undone).
        case reverted
    }

    let files: ServerTLSFiles?
    private let current: Mutex<Snapshot>
    private let failure = Mutex<String?>(nil)

    /// Why the files last failed to load, until they load again.
    var lastFailure: String? { failure.withLock { $0 } }

    /// Fixed material (tests, embedders): never reloaded, no CRL.
    init(fixed configuration: TLSConfiguration) throws {
        self.files = nil
        self.current = Mutex(Snapshot(context: try NIOSSLContext(configuration: configuration), crl: nil, fingerprint: []))
    }

    /// Reads the files; throws when they do not load (the listener is not started then).
    init(files: ServerTLSFiles) throws(BrokerTransportError) {
        self.files = files
        self.current = Mutex(try Self.load(files))
    }

    var snapshot: Snapshot { current.withLock { $0 } }

    /// Reads the files again and swaps in what they hold if it changed and loads.
    func reload() -> Reload {
        guard let files else { return .unchanged }
        let outcome: Reload
        do {
            let fingerprint = Self.fingerprint(try Self.contents(files))
            guard fingerprint != snapshot.fingerprint else {
                // Nothing to load; but a failure reported before is over, or a later bad
                // rotation would find it still set and go unsaid.
                let wasFailing = failure.withLock { failure -> Bool in
                    defer { failure = nil }
                    return failure != nil
                }
                return wasFailing ? .reverted : .unchanged
            }
            let fresh = try Self.load(files)
            current.withLock { $0 = fresh }
            outcome = .reloaded
        } catch {
            outcome = .failed(error.description)
        }
        failure.withLock {
            if case .failed(let reason) = outcome { $0 = reason } else { $0 = nil }
        }
        return outcome
    }

    // MARK: Loading

    private struct Contents {
        var chain: [UInt8], key: [UInt8], ca: [UInt8], crl: [UInt8]?
    }

    private static func contents(_ files: ServerTLSFiles) throws(BrokerTransportError) -> Contents {
        Contents(
            chain: try read(files.certificateChain, key: "server.tlsCert"), key: try read(files.privateKey, key: "server.tlsKey"),
            ca: try read(files.clientCA, key: "server.clientCA"), crl: try files.crl.map { path throws(BrokerTransportError) in try read(path, key: "server.crlFile") })
    }

    private static func read(_ path: String, key: String) throws(BrokerTransportError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .invalidTLSFile(key: key, path: path, reason: "it cannot be read")
        }
        // PEM certificates, keys and CRLs are kilobytes; a huge file is a wrong path.
        guard data.count <= 16 << 20 else { throw .invalidTLSFile(key: key, path: path, reason: "it is larger than 16 MiB") }
        return Array(data)
    }

    private static func fingerprint(_ contents: Contents) -> [UInt8] {
        var hash = SHA256()
        for part in [contents.chain, contents.key, contents.ca, contents.crl ?? []] {
            hash.update(data: withUnsafeBytes(of: UInt64(part.count).bigEndian) { Array($0) })
            hash.update(data: part)
        }
        return Array(hash.finalize())
    }

    private static func load(_ files: ServerTLSFiles) throws(BrokerTransportError) -> Snapshot {
        let contents = try contents(files)
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        let authorities: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(contents.chain)
        } catch {
            throw .invalidTLSFile(key: "server.tlsCert", path: files.certificateChain, reason: "it is not a PEM certificate chain")
        }
        do {
            key = try NIOSSLPrivateKey(bytes: contents.key, format: .pem)
        } catch {
            throw .invalidTLSFile(key: "server.tlsKey", path: files.privateKey, reason: "it is not a PEM private key")
        }
        let issuers: [Certificate]
        do {
            authorities = try NIOSSLCertificate.fromPEMBytes(contents.ca)
            issuers = try authorities.map { try Certificate(derEncoded: try $0.toDERBytes()) }
        } catch {
            throw .invalidTLSFile(key: "server.clientCA", path: files.clientCA, reason: "it is not a PEM CA certificate")
        }
        guard !chain.isEmpty else { throw .invalidTLSFile(key: "server.tlsCert", path: files.certificateChain, reason: "it holds no certificate") }
        guard !authorities.isEmpty else { throw .invalidTLSFile(key: "server.clientCA", path: files.clientCA, reason: "it holds no certificate") }
        var crl: CertificateRevocationList?
        if let path = files.crl, let bytes = contents.crl {
            do {
                crl = try CertificateRevocationList(contents: bytes, issuers: issuers)
            } catch {
                throw .invalidTLSFile(key: "server.crlFile", path: path, reason: error.description)
            }
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.certificateVerification = .noHostnameVerification  // a client certificate from the CA is required
        tls.trustRoots = .certificates(authorities)
        tls.minimumTLSVersion = .tlsv13
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: tls)
        } catch {
            throw .invalidTLSFile(
                key: "server.tlsKey", path: files.privateKey, reason: "the TLS library refused the certificate and key (do they match?): \(error)")
        }
        return Snapshot(context: context, crl: crl, fingerprint: fingerprint(contents))
    }
}
