import FedBrokerCore
import Foundation
import Testing

@testable import BrokerStore
import FedBrokerTestSupport

/// The PostgreSQL URL: TLS modes and their defaults, the CA file, and what is refused.
@Suite struct PostgresSettingsTests {
    static func settings(_ url: String) throws -> PostgresSettings { try PostgresSettings(url: url) }

    /// A PEM file of a real CA, removed after the test.
    static func withCAFile<T>(_ body: (String) throws -> T) throws -> T {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fb-ca-\(UUID().uuidString).pem").path
        try Data(try LocalPKI().caCertificatePEM.utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try body(path)
    }

    @Test("Without sslmode a host that is not loopback gets verify-full; loopback keeps prefer",
          arguments: [
              ("db.internal", PostgresSettings.SSLMode.verifyFull),
              ("myserver.postgres.database.azure.com", .verifyFull), ("127.0.0.2", .prefer), ("localhost", .prefer),
              ("127.0.0.1", .prefer), ("[::1]", .prefer), ("127.evil.example", .verifyFull),
          ])
    func defaultsByHost(host: String, mode: PostgresSettings.SSLMode) throws {
        #expect(try Self.settings("postgres://fb@\(host):5432/broker").sslMode == mode)
    }

    @Test("verify-full, explicit or by default, needs a host name: an IP address is refused with what to do instead")
    func ipAddressNeedsAName() throws {
        for url in [
            "postgres://fb@10.0.0.5/broker", "postgres://fb@[fd00::1]:5432/broker", "postgres://fb@127.0.0.1/x?sslmode=verify-full",
        ] {
            do {
                _ = try PostgresSettings(url: url)
                Issue.record("\(url) was accepted")
            } catch let error as BrokerError {
                #expect(error.code == .invalidArgument)
                #expect(error.message.contains("needs the server's DNS name, not an IP address"), "\(error)")
            }
        }
        try Self.withCAFile { ca throws in
            #expect(try Self.settings("postgres://fb@10.0.0.5/broker?sslmode=verify-ca&sslrootcert=\(ca)").sslMode == .verifyCA)
        }
        #expect(PostgresSettings.isIPAddress("10.0.0.5") && PostgresSettings.isIPAddress("[::1]"))
        #expect(!PostgresSettings.isIPAddress("db.internal") && !PostgresSettings.isIPAddress("10.0.0.5.nip.io"))
    }

    @Test("Every libpq mode fedbroker implements is accepted by name", arguments: PostgresSettings.SSLMode.allCases)
    func modesByName(mode: PostgresSettings.SSLMode) throws {
        #expect(try Self.settings("postgres://fb@db/broker?sslmode=\(mode.rawValue)").sslMode == mode)
    }

    @Test("An unknown mode, an unknown or repeated parameter and a bad connect_timeout are refused, naming what is wrong")
    func refused() {
        func refusal(_ url: String) -> String? {
            do {
                _ = try PostgresSettings(url: url)
                return nil
            } catch let error as BrokerError {
                #expect(error.code == .invalidArgument)
                return error.message
            } catch {
                Issue.record("not a BrokerError: \(error)")
                return nil
            }
        }
        #expect(refusal("postgres://db/x?sslmode=allow")?.contains("sslmode must be one of") == true)
        #expect(refusal("postgres://db/x?sslmode=VERIFY-FULL")?.contains("sslmode must be one of") == true)
        #expect(refusal("postgres://db/x?sslcert=/etc/client.pem")?.contains("unsupported parameter 'sslcert'") == true)
        #expect(refusal("postgres://db/x?sslmode=require&sslmode=disable")?.contains("twice") == true)
        #expect(refusal("postgres://db/x?connect_timeout=0")?.contains("connect_timeout") == true)
        #expect(refusal("postgres://db/x?connect_timeout=soon")?.contains("connect_timeout") == true)
        let forged = refusal("postgres://db/x?bad%0Aname=1")
        #expect(forged?.contains("bad\\u{a}name") == true)
        #expect(forged?.contains("\n") == false)
    }

    @Test("sslrootcert: a missing file, a file that is not PEM and a mode that ignores it are clear errors")
    func rootCertificateErrors() throws {
        let missing = "/nonexistent/fedbroker-ca.pem"
        #expect(throws: BrokerError(.invalidArgument, "")) {
            try Self.settings("postgres://db/x?sslmode=verify-full&sslrootcert=\(missing)")
        }
        do {
            _ = try Self.settings("postgres://db/x?sslmode=verify-full&sslrootcert=\(missing)")
            Issue.record("a missing sslrootcert was accepted")
        } catch let error as BrokerError {
            #expect(error.message == "sslrootcert \(missing) does not exist or is not readable")
        }
        let notPEM = FileManager.default.temporaryDirectory.appendingPathComponent("fb-not-pem-\(UUID().uuidString)").path
        try Data("not a certificate\n".utf8).write(to: URL(fileURLWithPath: notPEM))
        defer { try? FileManager.default.removeItem(atPath: notPEM) }
        #expect(throws: BrokerError(.invalidArgument, "")) { try Self.settings("postgres://db/x?sslrootcert=\(notPEM)") }
        try Self.withCAFile { ca throws in
            #expect(throws: BrokerError(.invalidArgument, "")) { try Self.settings("postgres://db/x?sslmode=prefer&sslrootcert=\(ca)") }
            #expect(throws: BrokerError(.invalidArgument, "")) { try Self.settings("postgres://db/x?sslmode=disable&sslrootcert=\(ca)") }
        }
    }

    @Test("The TLS configuration verifies what the mode says, with sslrootcert's CAs or the system's")
    func verificationByMode() throws {
        try Self.withCAFile { ca throws in
            let full = try Self.settings("postgres://db/x?sslrootcert=\(ca)")
            #expect(full.sslMode == .verifyFull)
            #expect(full.sslRootCertificatePath == ca)
            #expect(full.tlsConfiguration?.certificateVerification == .fullVerification)
            #expect(full.tlsConfiguration?.trustRoots == .file(ca))
            let requireWithCA = try Self.settings("postgres://db/x?sslmode=require&sslrootcert=\(ca)")
            #expect(requireWithCA.tlsConfiguration?.certificateVerification == .noHostnameVerification)
            #expect(try Self.settings("postgres://db/x?sslmode=verify-ca&sslrootcert=\(ca)").tlsConfiguration?.certificateVerification
                == .noHostnameVerification)
        }
        let system = try Self.settings("postgres://db/x?sslrootcert=system")
        #expect(system.sslRootCertificatePath == nil)
        #expect(system.tlsConfiguration?.trustRoots == .default)
        #expect(system.tlsConfiguration?.certificateVerification == .fullVerification)
        #expect(try Self.settings("postgres://db/x?sslmode=require").tlsConfiguration?.certificateVerification == .some(.none))
        #expect(try Self.settings("postgres://db/x?sslmode=prefer").tlsConfiguration?.certificateVerification == .some(.none))
        #expect(try Self.settings("postgres://db/x?sslmode=disable").tlsConfiguration == nil)
    }

    @Test("A connection that is not verified, or may be plaintext across a network, is named by a warning")
    func warnings() throws {
        #expect(try Self.settings("postgres://db/x?sslmode=require").securityWarning?.contains("does not verify") == true)
        #expect(try Self.settings("postgres://db/x?sslmode=prefer").securityWarning?.contains("may be plaintext") == true)
        #expect(try Self.settings("postgres://db/x?sslmode=disable").securityWarning != nil)
        #expect(try Self.settings("postgres://db/x").securityWarning == nil)
        #expect(try Self.settings("postgres://db/x?sslmode=verify-ca").securityWarning?.contains("without sslrootcert") == true)
        #expect(try Self.settings("postgres://127.0.0.1/x?sslmode=disable").securityWarning == nil)
        try Self.withCAFile { ca throws in
            #expect(try Self.settings("postgres://db/x?sslmode=require&sslrootcert=\(ca)").securityWarning == nil)
            #expect(try Self.settings("postgres://db/x?sslmode=verify-ca&sslrootcert=\(ca)").securityWarning == nil)
        }
        #expect(try StoreConfiguration(databaseURL: "sqlite:/tmp/x.db").securityWarning == nil)
    }

    @Test("connect_timeout sets the connection bound; the description shows mode and CA, never the password")
    func timeoutsAndDescription() throws {
        let settings = try Self.settings("postgres://fb:s3cret@db:6543/broker?connect_timeout=2&sslmode=verify-ca")
        #expect(settings.connectTimeout == .seconds(2))
        #expect(try Self.settings("postgres://db/x").connectTimeout == .seconds(10))
        #expect(settings.redactedDescription == "postgres://fb:***@db:6543/broker?sslmode=verify-ca")
        #expect(!String(reflecting: settings).contains("s3cret"))
    }
}
