import FedBrokerCore
import Foundation
import Testing

@testable import BrokerStore
import FedBrokerTestSupport

/// TLS to a real PostgreSQL (a server of the test's own, its certificate from the test PKI):
/// verify-full connects with the right CA and refuses a wrong CA, a wrong host name, and a server
/// that offers no TLS (no silent fallback to plaintext). Runs where scripts/test.sh runs the
/// PostgreSQL tests.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["FEDBROKER_TEST_DATABASE_URL"].map { !$0.isEmpty } ?? false))
struct PostgresTLSTests {
    /// Writes `text` as a file the server reads: mode 0600, owned by `postgres` when the test runs
    /// as root (the server then runs as `postgres`; PostgreSQL refuses a key others may read).
    static func installServerFile(_ text: String, at path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        var attributes: [FileAttributeKey: Any] = [.posixPermissions: 0o600]
        if getuid() == 0 {
            attributes[.ownerAccountName] = "postgres"
            attributes[.groupOwnerAccountName] = "postgres"
        }
        try FileManager.default.setAttributes(attributes, ofItemAtPath: path)
    }

    static func writeTemporary(_ text: String, name: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fb-\(UUID().uuidString)-\(name)").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Whether the store's connection is encrypted, as the server sees it.
    static func encrypted(_ store: SQLBrokerStore) async throws -> Bool {
        try await store.backend.withReadTransaction { session in
            try await session.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", []).first?.bool("ssl") ?? false
        }
    }

    static func open(_ url: String) async throws -> SQLBrokerStore {
        try await SQLBrokerStore.open(StoreConfiguration(databaseURL: url), logger: TestDatabase.logger)
    }

    /// Opens `url` expecting a TLS refusal: `databaseUnavailable` whose message says TLS.
    static func expectTLSRefusal(_ url: String, sourceLocation: SourceLocation = #_sourceLocation) async {
        do {
            let store = try await Self.open(url)
            try? await store.close()
            Issue.record("\(url) connected", sourceLocation: sourceLocation)
        } catch let error as BrokerError {
            #expect(error.code == .databaseUnavailable, sourceLocation: sourceLocation)
            #expect(error.message.hasPrefix("TLS with PostgreSQL failed"), "\(String(reflecting: error))", sourceLocation: sourceLocation)
        } catch {
            Issue.record("not a BrokerError: \(String(reflecting: error))", sourceLocation: sourceLocation)
        }
    }

    @Test("verify-full: the right CA connects encrypted; a wrong CA, a wrong host name and a server without TLS are refused clearly")
    func verification() async throws {
        let postgres = try ThrowawayPostgres()
        defer { postgres.destroy() }
        let pki = try LocalPKI()
        let ca = try Self.writeTemporary(try pki.caCertificatePEM, name: "ca.pem")
        let otherCA = try Self.writeTemporary(try LocalPKI(name: "another CA").caCertificatePEM, name: "other-ca.pem")
        defer {
            try? FileManager.default.removeItem(atPath: ca)
            try? FileManager.default.removeItem(atPath: otherCA)
        }
        let base = "postgres://postgres@localhost:\(postgres.port)/postgres"
        let byIP = "postgres://postgres@127.0.0.1:\(postgres.port)/postgres"

        // No TLS on the server yet: verify-full does not fall back to plaintext.
        await Self.expectTLSRefusal("\(base)?connect_timeout=60&sslmode=verify-full&sslrootcert=\(ca)")

        // TLS on, with a certificate for `localhost` from the test CA.
        let (certificate, key) = try pki.leafPEM("localhost", server: true)
        try Self.installServerFile(certificate, at: postgres.directory.appendingPathComponent("server.crt").path)
        try Self.installServerFile(key, at: postgres.directory.appendingPathComponent("server.key").path)
        let admin = try PostgresSettings(url: postgres.url)
        try await PostgresBackend.executeOutsideTransactionForTesting(admin, "ALTER SYSTEM SET ssl = on")
        try await PostgresBackend.executeOutsideTransactionForTesting(admin, "SELECT pg_reload_conf()")
        // The reload is asynchronous: poll (bounded) until the server offers TLS.
        var tlsUp = false
        let began = ContinuousClock.now
        while !tlsUp, ContinuousClock.now - began < .seconds(15) {
            if let store = try? await Self.open("\(byIP)?connect_timeout=60&sslmode=require") {
                tlsUp = true
                try await store.close()
            } else {
                await Task.yield()
            }
        }
        let log = (try? String(contentsOf: postgres.directory.appendingPathComponent("log"), encoding: .utf8)) ?? ""
        try #require(tlsUp, "the server did not turn TLS on; its log ends: \(log.suffix(1500))")

        let verified = try await Self.open("\(base)?connect_timeout=60&sslmode=verify-full&sslrootcert=\(ca)")
        #expect(try await Self.encrypted(verified))
        _ = try await verified.migrate()
        try await verified.close()

        await Self.expectTLSRefusal("\(base)?connect_timeout=60&sslmode=verify-full&sslrootcert=\(otherCA)")
        await Self.expectTLSRefusal("\(base)?connect_timeout=60&sslmode=verify-ca&sslrootcert=\(otherCA)")
        // verify-full checks a host name, so an IP address is refused before connecting; verify-ca
        // checks the chain only and takes the IP address.
        #expect(throws: BrokerError(.invalidArgument, "")) {
            try StoreConfiguration(databaseURL: "\(byIP)?connect_timeout=60&sslmode=verify-full&sslrootcert=\(ca)")
        }
        let chainOnly = try await Self.open("\(byIP)?connect_timeout=60&sslmode=verify-ca&sslrootcert=\(ca)")
        #expect(try await Self.encrypted(chainOnly))
        try await chainOnly.close()

        // require without a CA: encrypted, unverified (libpq's meaning), and said so.
        #expect(try StoreConfiguration(databaseURL: "\(byIP)?connect_timeout=60&sslmode=require").securityWarning != nil)
        let unverified = try await Self.open("\(byIP)?connect_timeout=60&sslmode=require")
        #expect(try await Self.encrypted(unverified))
        try await unverified.close()
        let plaintext = try await Self.open("\(byIP)?connect_timeout=60&sslmode=disable")
        #expect(try await Self.encrypted(plaintext) == false)
        try await plaintext.close()
    }
}
