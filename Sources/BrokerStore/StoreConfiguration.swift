import FedBrokerCore
import Foundation

/// Where the store lives, parsed from a database URL.
///
/// - `postgres://user[:password]@host[:port]/database[?sslmode=…&sslrootcert=PATH&connect_timeout=S]`
///   (`postgresql://` too); see `PostgresSettings` for the modes and their defaults.
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

    /// What an operator should hear at start about how the connection is protected (nil: nothing
    /// to say). See `PostgresSettings.securityWarning`.
    public var securityWarning: String? {
        guard case .postgres(let settings) = self else { return nil }
        return settings.securityWarning
    }

    static func invalid(_ message: String) -> BrokerError { BrokerError(.invalidArgument, message) }
}
