import FedBrokerCore
import Foundation
import NIOSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// PostgreSQL connection settings, parsed from
/// `postgres://user[:password]@host[:port]/database[?sslmode=…&sslrootcert=PATH&connect_timeout=S]`.
///
/// `sslmode` follows libpq's names, with a safer default:
///
/// | mode | encrypts | verifies the server | default for |
/// |---|---|---|---|
/// | `disable` | no | – | |
/// | `prefer` | if the server offers TLS, else plaintext | no | loopback hosts (`localhost`, `127.0.0.0/8`, `::1`) |
/// | `require` | yes | no; with `sslrootcert`, the chain (as `verify-ca`, as libpq does) | |
/// | `verify-ca` | yes | the chain, against `sslrootcert` | |
/// | `verify-full` | yes | the chain and the host name (an IP address is refused: NIOSSL checks names only) | every other host |
///
/// Why `verify-full` by default: libpq's `prefer` falls back to plaintext without a word, so one
/// on-path attacker who strips TLS reads every tenant, slot and audit record, and the database
/// password. A loopback connection has no path to attack. `sslrootcert` is a PEM file of the CAs
/// that sign the server's certificate; without it (or with `sslrootcert=system`) the system's
/// trust store is used (what Azure Database for PostgreSQL needs). Anything else in the query
/// string is refused rather than ignored, so a libpq option fedbroker does not implement (say
/// `sslcert`) cannot look as if it were applied.
///
/// - Important: `description`, `debugDescription` and the mirror (`dump`, `String(reflecting:)`)
///   redact the password.
public struct PostgresSettings: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public enum SSLMode: String, Sendable, CaseIterable {
        case disable, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    /// The query parameters the URL may carry.
    static let parameters = ["sslmode", "sslrootcert", "connect_timeout"]

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var sslMode: SSLMode
    /// The PEM file of CAs trusted for the server's certificate; nil: the system's trust store.
    public var sslRootCertificatePath: String?
    /// Pool size per process.
    public var maximumConnections: Int = 10
    /// How long a new connection may take to be set up, and how long a query waits for a pooled
    /// connection before it fails with `databaseUnavailable` (`connect_timeout`,
    /// `store.connectTimeoutSeconds`). Without it a query against a server that is down waits
    /// for the pool's circuit breaker, a minute. 10 s, postgres-nio's own default: a request's
    /// deadline (`withStoreDeadline`) is usually what bounds a call on the request path.
    public var connectTimeout: Duration = .seconds(10)
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

        var query: [String: String] = [:]
        for item in components.queryItems ?? [] {
            let name = BoundedText.escaped(item.name, limit: 64)
            guard Self.parameters.contains(item.name) else {
                throw StoreConfiguration.invalid(
                    "the PostgreSQL URL has an unsupported parameter '\(name)' (supported: \(Self.parameters.joined(separator: ", ")))")
            }
            guard query[item.name] == nil else { throw StoreConfiguration.invalid("the PostgreSQL URL gives \(name) twice") }
            query[item.name] = item.value ?? ""
        }

        if let mode = query["sslmode"] {
            guard let sslMode = SSLMode(rawValue: mode) else {
                throw StoreConfiguration.invalid(
                    "sslmode must be one of \(SSLMode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            self.sslMode = sslMode
        } else {
            self.sslMode = Self.isLoopback(host) ? .prefer : .verifyFull
        }

        // NIOSSL checks a certificate against a host name only (an IP address cannot be the TLS
        // server name), so verify-full to an IP address could never connect: say so now.
        if self.sslMode == .verifyFull, Self.isIPAddress(host) {
            throw StoreConfiguration.invalid(
                "sslmode=verify-full\(query["sslmode"] == nil ? " (the default for a host that is not loopback)" : "") "
                    + "needs the server's DNS name, not an IP address; use the name in its certificate, or sslmode=verify-ca with sslrootcert")
        }

        if let root = query["sslrootcert"], root != "system" {
            guard [.require, .verifyCA, .verifyFull].contains(self.sslMode) else {
                throw StoreConfiguration.invalid(
                    "sslrootcert needs sslmode=require, verify-ca or verify-full (sslmode is \(self.sslMode.rawValue))")
            }
            try Self.checkRootCertificates(root)
            self.sslRootCertificatePath = root
        }

        if let timeout = query["connect_timeout"] {
            guard let seconds = Int(timeout), (1...3600).contains(seconds) else {
                throw StoreConfiguration.invalid("connect_timeout must be whole seconds from 1 to 3600")
            }
            self.connectTimeout = .seconds(seconds)
        }
    }

    /// The file must hold at least one PEM certificate now: a typo found at start, not at the
    /// first connection.
    static func checkRootCertificates(_ path: String) throws {
        let shown = BoundedText.escaped(path, limit: 256)
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw StoreConfiguration.invalid("sslrootcert \(shown) does not exist or is not readable")
        }
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw BrokerError(.invalidArgument, "sslrootcert \(shown) is not a PEM certificate file", underlying: error)
        }
        guard !certificates.isEmpty else {
            throw StoreConfiguration.invalid("sslrootcert \(shown) holds no PEM certificate")
        }
    }

    /// An IPv4 or IPv6 address literal (bracketed or not) rather than a name.
    static func isIPAddress(_ host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, bare, &v4) == 1 || inet_pton(AF_INET6, bare, &v6) == 1
    }

    /// Loopback in the sense of "no network path to attack": `localhost`, `127.0.0.0/8`, `::1`.
    static func isLoopback(_ host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if LoopbackHost.contains(bare) { return true }
        let octets = bare.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// A connection that is not verified, or may not be encrypted, to a host across a network;
    /// nil when there is nothing to say. `serve` and `migrate` log it at start.
    public var securityWarning: String? {
        switch self.sslMode {
        case .verifyFull:
            return nil
        case .verifyCA:
            guard self.sslRootCertificatePath == nil else { return nil }
            return "sslmode=verify-ca without sslrootcert accepts any certificate the system's trust store accepts, "
                + "for any host; add sslrootcert=PATH or use sslmode=verify-full with the server's DNS name"
        case .require where self.sslRootCertificatePath != nil:
            return nil
        case .require:
            return "sslmode=require encrypts the PostgreSQL connection but does not verify the server's certificate, "
                + "so anyone on the network path can pose as the database; add sslrootcert=PATH or use sslmode=verify-full"
        case .prefer, .disable:
            guard !Self.isLoopback(self.host) else { return nil }
            return "sslmode=\(self.sslMode.rawValue) to a host that is not loopback: the PostgreSQL connection may be "
                + "plaintext and is not verified; use sslmode=verify-full"
        }
    }

    /// The URL with the password replaced, for logs and progress lines.
    public var redactedDescription: String {
        let credentials = self.password == nil ? self.username : "\(self.username):***"
        let root = self.sslRootCertificatePath.map { "&sslrootcert=\($0)" } ?? ""
        return "postgres://\(credentials)@\(self.host):\(self.port)/\(self.database)?sslmode=\(self.sslMode.rawValue)\(root)"
    }

    public var description: String { self.redactedDescription }
    public var debugDescription: String { "PostgresSettings(\(self.redactedDescription))" }
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "host": self.host, "port": self.port, "username": self.username,
                "password": self.password == nil ? "nil" : "***", "database": self.database,
                "sslMode": self.sslMode.rawValue, "sslRootCertificatePath": self.sslRootCertificatePath ?? "system",
                "maximumConnections": self.maximumConnections, "connectTimeout": self.connectTimeout,
                "statementTimeout": self.statementTimeout, "lockTimeout": self.lockTimeout,
            ],
            displayStyle: .struct)
    }
}
