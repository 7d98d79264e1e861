import FedBrokerCore
import Foundation
import NIOSSL
import PostgresNIO

/// Where the store lives, parsed from a database URL.
///
/// - `postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require]`
///   (`postgresql://` too). `sslmode` defaults to `prefer`, like libpq.
/// - `sqlite:///absolute/path.db`, `sqlite:relative/path.db`, or a bare path ending in `.db`,
///   `.sqlite` or `.sqlite3`.
///
/// - Important: `description` never shows the password; log it, not the URL.
public enum StoreConfiguration: Sendable, CustomStringConvertible {
    case postgres(PostgresSettings)
    case sqlite(path: String)

    public init(databaseURL: String) throws {
        let trimmed = databaseURL.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("postgres://") || trimmed.hasPrefix("postgresql://") {
            self = .postgres(try PostgresSettings(url: trimmed))
        } else if trimmed.hasPrefix("sqlite://") {
            let path = String(trimmed.dropFirst("sqlite://".count))
            guard !path.isEmpty else { throw Self.invalid("sqlite:// needs a path, e.g. sqlite:///var/lib/fedbroker/broker.db") }
            self = .sqlite(path: path)
        } else if trimmed.hasPrefix("sqlite:") {
            let path = String(trimmed.dropFirst("sqlite:".count))
            guard !path.isEmpty else { throw Self.invalid("sqlite: needs a path") }
            self = .sqlite(path: path)
        } else if !trimmed.contains("://"), [".db", ".sqlite", ".sqlite3"].contains(where: { trimmed.hasSuffix($0) }) {
            self = .sqlite(path: trimmed)
        } else {
            throw Self.invalid("database URL must start with postgres://, postgresql:// or sqlite:")
        }
    }

    public var description: String {
        switch self {
        case .postgres(let settings): settings.redactedDescription
        case .sqlite(let path): "sqlite:\(path)"
        }
    }

    /// The configuration with the PostgreSQL password taken from `PGPASSWORD` when the URL has
    /// none (libpq's convention; keeps the password out of `ps` and shell history). Shared by
    /// every command that opens the store.
    public func withPasswordFromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> StoreConfiguration {
        guard case .postgres(var settings) = self, settings.password == nil,
            let password = environment["PGPASSWORD"], !password.isEmpty
        else { return self }
        settings.password = password
        return .postgres(settings)
    }

    static func invalid(_ message: String) -> BrokerError { BrokerError(.invalidArgument, message) }
}

/// PostgreSQL connection settings.
///
/// - Important: `description`, `debugDescription` and the mirror (`dump`, `String(reflecting:)`)
///   redact the password.
public struct PostgresSettings: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public enum SSLMode: String, Sendable {
        case disable, prefer, require
    }

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var sslMode: SSLMode
    /// Pool size per process.
    public var maximumConnections: Int = 10
    public var connectTimeoutSeconds: Int64 = 5
    /// `SET LOCAL statement_timeout` for every transaction: no statement runs longer (invariant 5).
    public var statementTimeout: Duration = .seconds(10)
    /// `SET LOCAL lock_timeout` for every transaction: no row or advisory lock is waited for longer.
    public var lockTimeout: Duration = .seconds(5)
    /// Attempts of a transaction body the server aborted with a serialization failure or a
    /// deadlock (40001, 40P01) before `transactionConflict` is thrown.
    public var transactionAttempts: Int = 3

    public init(url: String) throws {
        guard let components = URLComponents(string: url), let host = components.host, !host.isEmpty else {
            throw StoreConfiguration.invalid("cannot parse the PostgreSQL URL (expected postgres://user@host:port/database)")
        }
        self.host = host
        self.port = components.port ?? 5432
        self.username = components.user.flatMap { $0.removingPercentEncoding } ?? "postgres"
        self.password = components.password.flatMap { $0.removingPercentEncoding }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? self.username : path
        let mode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
        guard let sslMode = SSLMode(rawValue: mode) else {
            throw StoreConfiguration.invalid("sslmode must be disable, prefer or require")
        }
        self.sslMode = sslMode
    }

    /// The URL with the password replaced, for logs and progress lines.
    public var redactedDescription: String {
        let credentials = self.password == nil ? self.username : "\(self.username):***"
        return "postgres://\(credentials)@\(self.host):\(self.port)/\(self.database)?sslmode=\(self.sslMode.rawValue)"
    }

    public var description: String { self.redactedDescription }
    public var debugDescription: String { "PostgresSettings(\(self.redactedDescription))" }
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "host": self.host, "port": self.port, "username": self.username,
                "password": self.password == nil ? "nil" : "***", "database": self.database,
                "sslMode": self.sslMode.rawValue, "maximumConnections": self.maximumConnections,
                "statementTimeout": self.statementTimeout, "lockTimeout": self.lockTimeout,
            ],
            displayStyle: .struct)
    }

    var clientTLS: PostgresClient.Configuration.TLS {
        switch self.sslMode {
        case .disable: .disable
        case .prefer: .prefer(.makeClientConfiguration())
        case .require: .require(.makeClientConfiguration())
        }
    }

    func connectionTLS() throws -> PostgresConnection.Configuration.TLS {
        switch self.sslMode {
        case .disable: .disable
        case .prefer: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
    }
}
