import FedBrokerCore
import Foundation

/// A database of its own on a PostgreSQL server, made empty and dropped afterwards: for the
/// benchmark (`fedbroker-dev bench --database-url`), which seeds tenants and callers and must not
/// meet another run's rows. Never for a production database: it creates and drops databases.
public enum PostgresScratchDatabase {
    /// Creates `fedbroker_<prefix>_<random>` on the server `baseURL` names and returns its URL.
    public static func create(on baseURL: String, prefix: String) async throws -> String {
        let settings = try PostgresSettings(url: baseURL)
        let name = "fedbroker_\(prefix)_\(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16))"
        try await PostgresBackend.executeOutsideTransactionForTesting(settings, "CREATE DATABASE \(name)")
        guard var components = URLComponents(string: baseURL) else {
            throw BrokerError(.invalidArgument, "not a postgres:// URL")
        }
        components.path = "/\(name)"
        guard let url = components.string else { throw BrokerError(.invalidArgument, "not a postgres:// URL") }
        return url
    }

    /// Drops the database `url` names (made by `create`), closing its connections.
    public static func drop(_ url: String, on baseURL: String) async throws {
        let settings = try PostgresSettings(url: baseURL)
        guard let name = URLComponents(string: url)?.path.dropFirst(), name.hasPrefix("fedbroker_"),
            name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") })
        else { throw BrokerError(.invalidArgument, "not a scratch database") }
        try await PostgresBackend.executeOutsideTransactionForTesting(settings, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }
}
