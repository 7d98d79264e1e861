import BrokerApp
import BrokerClient
import BrokerServer
import BrokerStore
import BrokerWire
import FedBrokerCore
import Foundation
import Logging
import NIOCore
import NIOSSL
import Testing
import X509
import FedBrokerTestSupport

/// Who a certificate makes a caller, over real mutual TLS: the identity's source, the refusal of
/// certificates that prove nobody or were revoked, and certificates rotated without a restart.
@Suite struct CallerCertificateTests {
    static let logger = Logger(label: "caller-certificate-test")

    /// Whether a connection presenting `tls` is served: its preface is answered with SETTINGS.
    /// Refused at the handshake, the server closes it and nothing arrives.
    static func served(port: Int, tls: TLSConfiguration) async -> Bool {
        guard let client = try? await RawClient.connect(port: port, tls: tls) else { return false }
        defer { client.channel.channel.close(promise: nil) }
        guard (try? await client.send(ConnectionPreface.bytes())) != nil else { return false }
        return (try? await client.read(1))?.first?.type == .settings
    }

    /// Polls (bounded) until a connection presenting `tls` is served, or is not.
    static func eventually(port: Int, tls: @autoclosure () throws -> TLSConfiguration, served expected: Bool, within seconds: Double = 30) async throws -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        let tls = try tls()
        while ContinuousClock.now < deadline {
            if await served(port: port, tls: tls) == expected { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    @Test("A certificate with neither a CN nor a URI SAN is refused at the handshake; it is never the anonymous caller")
    func noIdentityIsRefused() async throws {
        let pki = try LocalPKI()
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.tls = try pki.serverTLS()
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: EchoCallerService(), logger: Self.logger)
        let nameless = try pki.issue(subject: try DistinguishedName { OrganizationName("Contoso") })
        #expect(await Self.served(port: server.port, tls: try pki.clientTLS(presenting: nameless)) == false)
        let empty = try pki.issue(subject: DistinguishedName())
        #expect(await Self.served(port: server.port, tls: try pki.clientTLS(presenting: empty)) == false)
        // The same subject with a URI SAN is a caller, named by the URI.
        let named = try pki.issue(subject: try DistinguishedName { OrganizationName("Contoso") }, uris: ["spiffe://fedbroker.test/contoso"])
        let connection = try await BrokerConnection.connect(
            host: "127.0.0.1", port: server.port, tls: try pki.clientTLS(presenting: named), serverHostname: "localhost")
        #expect(try await connection.call(.with { $0.health = .init() }, timeout: 60).health.serverVersion == "spiffe://fedbroker.test/contoso")
        await connection.close()
        try await server.close()
    }

    @Test("Two certificates that differ only in O are two callers: one granted, the other refused")
    func organizationSeparatesCallers() async throws {
        var logger = Logger(label: "identity")
        logger.logLevel = .warning
        try await RunningEmulator.with(logger: logger) { running in
            let pki = try LocalPKI()
            var configuration = BrokerAppConfiguration(
                store: .sqlite(path: running.directory.appendingPathComponent("broker.db").path),
                service: BrokerService.Configuration(environment: running.environment))
            configuration.transport.tls = try pki.serverTLS()
            let app = try await BrokerApp.build(configuration, signals: [], logger: logger)
            try await app.serving {
                let customer = running.scenario.customers[0]
                let tenant = try await app.store.registerTenant(
                    try TenantRegistration(
                        id: TenantID(rawValue: "customer-1")!, entraTenantID: EntraTenantID(validating: customer.tenantID), displayName: "Customer 1",
                        geo: "europe", key: KeyReference(vaultURL: customer.vaultURL, keyName: customer.keyName)),
                    actor: "onboarding")
                _ = try await app.store.createCaller(
                    Caller(id: "billing", identity: "CN=billing,O=Contoso", grants: [CallerGrant(operations: [.keyStatus], tenants: .only([tenant.id]))]),
                    actor: "sre")
                func client(_ organization: String) throws -> FedBrokerClient {
                    let leaf = try pki.issue(subject: try DistinguishedName { OrganizationName(organization); CommonName("billing") })
                    var configuration = FedBrokerClient.Configuration(
                        host: "127.0.0.1", port: app.port, tls: try pki.clientTLS(presenting: leaf), serverHostname: "localhost")
                    configuration.backoff = Backoff(initial: 0.05, maximum: 0.05, maxRetries: 0)
                    return FedBrokerClient(configuration: configuration)
                }
                let contoso = try client("Contoso")
                let fabrikam = try client("Fabrikam")
                let deadline = Date().addingTimeInterval(60)
                #expect(try await contoso.keyStatus(tenant: "customer-1", deadline: deadline).keyStatus.tenant == "customer-1")
                let refused = await #expect(throws: BrokerCallError.self) {
                    _ = try await fabrikam.keyStatus(tenant: "customer-1", deadline: deadline)
                }
                guard case .status(let status) = refused else { Issue.record("not a status: \(String(describing: refused))"); return }
                #expect(status.code == .permissionDenied && status.reason == .notAuthorized)
                await contoso.close()
                await fabrikam.close()
            }
        }
    }

    /// The server's TLS files in a scratch directory, written whole (atomically) each time.
    struct TLSFiles {
        let directory: URL
        var files: ServerTLSFiles {
            var files = ServerTLSFiles(
                certificateChain: path("server.pem"), privateKey: path("server-key.pem"), clientCA: path("callers-ca.pem"), crl: path("callers.crl"))
            files.reloadSeconds = 0.2
            return files
        }

        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("fedbroker-tls-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        }

        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

        /// The server certificate and client CA of `pki`, and its CRL revoking `revoked`.
        func write(_ pki: LocalPKI, revoking revoked: [Certificate] = []) throws {
            let server = try pki.leafPEM("localhost", server: true)
            try server.certificate.write(toFile: path("server.pem"), atomically: true, encoding: .utf8)
            try server.privateKey.write(toFile: path("server-key.pem"), atomically: true, encoding: .utf8)
            try pki.caCertificatePEM.write(toFile: path("callers-ca.pem"), atomically: true, encoding: .utf8)
            try pki.crlPEM(revoking: revoked.map(\.serialNumber)).write(toFile: path("callers.crl"), atomically: true, encoding: .utf8)
        }

        func remove() { try? FileManager.default.removeItem(at: directory) }
    }

    @Test("A certificate on the client CA's CRL is refused at the handshake; the others are served")
    func revokedCertificateIsRefused() async throws {
        let pki = try LocalPKI()
        let files = try TLSFiles()
        defer { files.remove() }
        let revoked = try pki.issue("revoked", server: false)
        try files.write(pki, revoking: [revoked.certificate])
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.tlsFiles = files.files
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: EchoCallerService(), logger: Self.logger)
        #expect(await Self.served(port: server.port, tls: try pki.clientTLS(presenting: revoked)) == false)
        #expect(await Self.served(port: server.port, tls: try pki.clientTLS(commonName: "kept")))
        try await server.close()
    }

    @Test("Rewritten certificate, key, client CA and CRL files are taken without a restart; files that do not load keep the old ones")
    func filesAreReloaded() async throws {
        let old = try LocalPKI(name: "old CA")
        let new = try LocalPKI(name: "new CA")
        let files = try TLSFiles()
        defer { files.remove() }
        try files.write(old)
        var configuration = BrokerTransportServer.Configuration.generousForTests()
        configuration.tlsFiles = files.files
        let server = try await BrokerTransportServer.bind(configuration: configuration, service: EchoCallerService(), logger: Self.logger)
        let port = server.port
        #expect(await Self.served(port: port, tls: try old.clientTLS(commonName: "svc")))
        // A client that trusts only the new CA (for the server) and holds a certificate from it.
        #expect(await Self.served(port: port, tls: try new.clientTLS(commonName: "svc")) == false)

        try files.write(new)
        #expect(try await Self.eventually(port: port, tls: try new.clientTLS(commonName: "svc"), served: true))
        #expect(await Self.served(port: port, tls: try old.clientTLS(commonName: "svc")) == false)

        // A half-done rotation (a key that is not the certificate's) is refused; the new files stay in use.
        let keyInUse = try String(contentsOfFile: files.path("server-key.pem"), encoding: .utf8)
        try new.leafPEM("localhost", server: true).privateKey.write(toFile: files.path("server-key.pem"), atomically: true, encoding: .utf8)
        let deadline = ContinuousClock.now + .seconds(30)
        while server.tlsReloadFailure == nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(server.tlsReloadFailure?.contains("server.tlsKey") == true)
        #expect(await Self.served(port: port, tls: try new.clientTLS(commonName: "svc")))
        // Undone (the key in use written back): the failure is over, though nothing was loaded.
        try keyInUse.write(toFile: files.path("server-key.pem"), atomically: true, encoding: .utf8)
        let undone = ContinuousClock.now + .seconds(30)
        while server.tlsReloadFailure != nil, ContinuousClock.now < undone { try await Task.sleep(for: .milliseconds(50)) }
        #expect(server.tlsReloadFailure == nil, "a reverted rotation left the failure standing")

        // A CRL revoking a certificate takes effect the same way (with a matching key again).
        let leaf = try new.issue("later-revoked", server: false)
        #expect(await Self.served(port: port, tls: try new.clientTLS(presenting: leaf)))
        try files.write(new, revoking: [leaf.certificate])
        #expect(try await Self.eventually(port: port, tls: try new.clientTLS(presenting: leaf), served: false))
        try await server.close()
    }
}
