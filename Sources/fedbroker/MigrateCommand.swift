import ArgumentParser
import BrokerStore
import FedBrokerCore
import Foundation
import Logging

/// `fedbroker migrate`: brings a database to the schema this binary ships.
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Create or upgrade the broker's database schema (PostgreSQL or SQLite).",
        discussion: """
            Applies the numbered migrations compiled into this binary (sql/postgres/*.sql or sql/sqlite/*.sql \
            in the source tree) that the database has not seen, each recorded in fedbroker_schema_migrations. \
            Safe to run again (a no-op when current) and from many replicas at once: on PostgreSQL the run \
            holds an advisory lock, so one replica migrates while the others wait and then find nothing to do. \
            A database migrated by a newer fedbroker is refused, untouched.

            Examples:
              fedbroker migrate --database-url \\
                'postgres://fedbroker@db.internal/fedbroker?sslrootcert=/etc/pg-ca.pem'
              fedbroker migrate --database-url \\
                'postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
              fedbroker migrate --database-url sqlite:///var/lib/fedbroker/broker.db

            TLS: sslmode is disable, prefer, require, verify-ca or verify-full. The default is \
            verify-full (encrypted, certificate chain and host name checked; the host must be a DNS \
            name, not an IP address) for every host but loopback, where it is prefer. sslrootcert=PATH names a PEM file of the CAs that sign \
            the server's certificate (default: the system's trust store); require without it \
            encrypts but verifies nothing, and a warning says so. connect_timeout=SECONDS (default \
            10) bounds connecting. Other URL parameters are refused.

            The password may be given in the URL or, better, in PGPASSWORD; it is never printed. \
            Exit status: 0 migrated or already current, 1 failed (database down, TLS refused, newer \
            schema, bad SQL).
            """
    )

    @Option(
        name: .long,
        help: ArgumentHelp(
            "postgres://user@host:port/db[?sslmode=disable|prefer|require|verify-ca|verify-full][&sslrootcert=PATH][&connect_timeout=S], or sqlite:PATH.",
            valueName: "url"))
    var databaseURL: String

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "warning"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level '\(logLevel)' is not a log level.") }
        do { _ = try StoreConfiguration(databaseURL: databaseURL) } catch let error as BrokerError {
            throw ValidationError("--database-url: \(error.message)")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .warning
        var logger = Logger(label: "fedbroker.migrate") { label in StreamLogHandler.standardError(label: label) }
        logger.logLevel = level
        let configuration = try StoreConfiguration(databaseURL: databaseURL).withPasswordFromEnvironment()

        Self.say("fedbroker migrate: connecting to \(configuration)")
        if let warning = configuration.securityWarning {
            FileHandle.standardError.write(Data("fedbroker migrate: warning: \(warning)\n".utf8))
        }
        let started = ContinuousClock.now
        let store: SQLBrokerStore
        do {
            store = try await SQLBrokerStore.open(configuration, logger: logger)
        } catch let error as BrokerError {
            throw Self.failure(error)
        }
        do {
            let report = try await store.migrate()
            if report.applied.isEmpty {
                Self.say("fedbroker migrate: schema is current at version \(report.currentVersion); nothing to do")
            } else {
                for file in report.applied { Self.say("fedbroker migrate: applied \(file)") }
                Self.say(
                    "fedbroker migrate: schema version \(report.previousVersion) -> \(report.currentVersion) "
                        + "(\(report.applied.count) migration(s) in \(ContinuousClock.now - started))")
            }
            try await store.close()
        } catch let error as BrokerError {
            try? await store.close()
            throw Self.failure(error)
        }
    }

    /// Progress goes to stdout, unbuffered, so a supervisor or CI log shows it as it happens.
    static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    static func failure(_ error: BrokerError) -> any Error {
        let hint: String =
            switch error.code {
            case .databaseUnavailable where error.message.hasPrefix("TLS"): ""
            case .databaseUnavailable: " (is the server running and reachable? check host, port and credentials)"
            case .schemaTooNew: ""
            default: ""
            }
        FileHandle.standardError.write(Data("fedbroker migrate: error: \(error)\(hint)\n".utf8))
        return ExitCode.failure
    }
}
