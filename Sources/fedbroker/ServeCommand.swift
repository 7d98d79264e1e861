import ArgumentParser
import AzureHTTP
import AzureIdentity
import BrokerApp
import BrokerServer
import BrokerWire
import BrokerStore
import Configuration
import FedBrokerCore
import Foundation
import Logging
import NIOCore
import NIOSSL

/// `fedbroker serve`: the broker. Store (migrated at start), identity chain, vault client,
/// data-key cache and audit writer behind the framed protocol over mutual TLS.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve wrap/unwrap to internal services over the framed protocol (mTLS).",
        discussion: """
            Opens the store (PostgreSQL with --database-url, else SQLite in --data-dir), migrates it, and \
            listens for internal services. Callers authenticate with client certificates from --client-ca; \
            the identity their certificate proves (its URI SAN, else its subject DN: server.callerIdentity) is \
            looked up in the store's callers and grants. Every setting \
            can come from a flag, a FEDBROKER_* variable or the --config JSON file, in that order \
            (docs/configuration.md lists the keys). SIGTERM or SIGINT drains: the listener closes, \
            in-flight calls finish, the audit writer flushes, then the process exits 0.

            Exit status: 0 stopped cleanly; 1 failed; 3 stopped, but audit records could not be \
            written to the store (still pending, or rejected and quarantined in \
            audit.quarantineDirectory/audit-quarantine.jsonl); 64 bad configuration.
            """
    )

    @Option(name: .long, help: "JSON configuration file (keys in docs/configuration.md). Flags win over FEDBROKER_* variables, which win over the file.")
    var config: String?

    @Option(name: .long, help: "Address to listen on, HOST:PORT (server.listen; default 127.0.0.1:7443).")
    var listen: String?

    @Option(name: .long, help: "PEM certificate (chain) the server presents (server.tlsCert).")
    var tlsCert: String?

    @Option(name: .long, help: "PEM private key of --tls-cert (server.tlsKey).")
    var tlsKey: String?

    @Option(name: .long, help: "PEM CA that issues callers' client certificates (server.clientCA; required with TLS).")
    var clientCA: String?

    @Flag(name: .long, help: "Serve without TLS (server.plaintext). Loopback only; every caller is anonymous (identity \"\").")
    var plaintext = false

    @Option(name: .long, help: "postgres://… or sqlite:PATH (store.databaseURL). Default: SQLite in the data dir.")
    var databaseURL: String?

    @Option(name: .long, help: "Directory for the embedded SQLite store and the audit quarantine file (store.dataDir; default fedbroker-data).")
    var dataDir: String?

    @Option(name: .long, help: "Requests one connection may have in flight (server.maxStreams; default 256).")
    var maxStreams: Int?

    @Option(name: .long, help: "Seconds a plaintext data key may be served from memory, the revocation bound (cache.maxAgeSeconds; default 300).")
    var cacheMaxAge: Double?

    @Option(name: .long, help: "Log level (log.level; default info).")
    var logLevel: String?

    @Option(name: .long, help: "The ISV's Entra tenant id; turns the admin API on (admin.staffTenantID).")
    var staffTenant: String?

    @Option(name: .long, help: "HOST:PORT of the admin API (admin.listen; default 127.0.0.1:8443).")
    var adminListen: String?

    @Flag(name: .long, help: "Serve the admin API over plain HTTP (admin.plaintext). Loopback only.")
    var adminPlaintext = false

    @Option(name: .long, help: "Also serve the admin API on this Unix socket, mode 0600, all roles to whoever opens it (admin.unixSocket). Off by default.")
    var adminSocket: String?

    @Option(name: .long, help: "clientId:principalId,… managed identities to create and activate as FIC slots at start (slots.bootstrap).")
    var bootstrapSlots: String?

    @OptionGroup var azure: AzureOptions

    @Flag(name: .long, help: "Read and check the configuration (file, FEDBROKER_* variables, flags) and exit: 0 and `configuration OK` when serve would accept it. Opens none of the files it names (certificates, keys, the store).")
    var checkConfig = false

    @Flag(name: .long, help: "Print every configuration key, one per line, and exit.")
    var listConfigKeys = false

    func validate() throws {
        if let listen, Self.split(listen) == nil { throw ValidationError("--listen must be HOST:PORT") }
    }

    static func split(_ hostPort: String) -> (String, Int)? {
        guard let colon = hostPort.lastIndex(of: ":"), let port = Int(hostPort[hostPort.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        return (String(hostPort[..<colon]), port)
    }

    /// The flags given, as configuration keys.
    var flagValues: [String: ConfigContent] {
        var values: [String: ConfigContent] = [:]
        if let listen { values["server.listen"] = .string(listen) }
        if let tlsCert { values["server.tlsCert"] = .string(tlsCert) }
        if let tlsKey { values["server.tlsKey"] = .string(tlsKey) }
        if let clientCA { values["server.clientCA"] = .string(clientCA) }
        if plaintext { values["server.plaintext"] = .bool(true) }
        if let databaseURL { values["store.databaseURL"] = .string(databaseURL) }
        if let dataDir { values["store.dataDir"] = .string(dataDir) }
        if let maxStreams { values["server.maxStreams"] = .int(maxStreams) }
        if let cacheMaxAge { values["cache.maxAgeSeconds"] = .double(cacheMaxAge) }
        if let logLevel { values["log.level"] = .string(logLevel) }
        if let staffTenant { values["admin.staffTenantID"] = .string(staffTenant) }
        if let adminListen { values["admin.listen"] = .string(adminListen) }
        if adminPlaintext { values["admin.plaintext"] = .bool(true) }
        if let adminSocket { values["admin.unixSocket"] = .string(adminSocket) }
        if let bootstrapSlots { values["slots.bootstrap"] = .string(bootstrapSlots) }
        if let v = azure.imdsURL { values["azure.imdsURL"] = .string(v) }
        if let v = azure.authorityURL { values["azure.authorityURL"] = .string(v) }
        if let v = azure.appClientID { values["azure.appClientID"] = .string(v) }
        if let v = azure.caBundle { values["azure.caBundle"] = .string(v) }
        return values
    }

    func run() async throws {
        if listConfigKeys {
            print(ServeConfiguration.knownKeys.joined(separator: "\n"))
            return
        }
        let settings: ServeConfiguration
        do {
            if let config { try ServeConfiguration.checkFileKeys(config) }
            let reader = try await ServeConfiguration.reader(flags: flagValues, file: config, environment: ProcessInfo.processInfo.environment)
            settings = try ServeConfiguration(reader: reader).validated()
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
        if checkConfig {
            print("configuration OK\(config.map { " (\($0))" } ?? "")")
            return
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: settings.logLevel) ?? .info
            return handler
        }
        let logger = Logger(label: "fedbroker")
        // Before any key is in memory: a core file would write plaintext keys to disk.
        if settings.allowCoreDumps {
            logger.warning("core dumps are allowed (process.allowCoreDumps): a core file of this process holds plaintext data keys")
        } else {
            try ProcessHardening.disableCoreDumps()
        }
        // Whatever serve creates is its own: the SQLite store, the audit journal, the quarantine
        // file, and the admin Unix socket, which is live from its bind until its chmod to 0600.
        umask(0o077)
        let app = try await BrokerApp.build(try settings.appConfiguration(), logger: logger)
        FileHandle.standardOutput.write(
            Data("fedbroker serving on \(settings.listenHost):\(app.port)\(settings.plaintext ? " (plaintext, loopback)" : " (mTLS)")\n".utf8))
        logger.info(
            "serving",
            metadata: [
                "fb.listen": "\(settings.listenHost):\(app.port)", "fb.tls": "\(!settings.plaintext)",
                "fb.cacheMaxAge": "\(settings.service.cache.maximumAge)",
                "fb.tenantConcurrency": "\(settings.service.tenantConcurrency)", "fb.config": "\(config ?? "none")",
                "fb.admin": "\(settings.admin.map { "\($0.listenHost):\($0.listenPort)" } ?? "off")",
            ])
        do {
            try await serve(app, settings: settings)
        } catch let error as AuditIncompleteError {
            // The critical log line has the detail; this one is for whoever reads the exit.
            FileHandle.standardError.write(Data("fedbroker serve: error: \(error)\n".utf8))
            throw ExitCode(3)
        }
    }

    private func serve(_ app: BrokerApp, settings: ServeConfiguration) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            if settings.admin != nil {
                group.addTask {
                    if let port = await app.adminPort() {
                        FileHandle.standardOutput.write(Data("fedbroker admin API on \(settings.admin?.listenHost ?? ""):\(port)\n".utf8))
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}

extension ServeConfiguration {
    /// The assembly's configuration: certificates and keys read, the store resolved.
    func appConfiguration() throws -> BrokerAppConfiguration {
        var storeConfiguration: StoreConfiguration
        if let databaseURL {
            // PGPASSWORD, as for `migrate`: the URL can stay password-free in a ConfigMap.
            storeConfiguration = try StoreConfiguration(databaseURL: databaseURL).withPasswordFromEnvironment()
            if case .postgres(var settings) = storeConfiguration, let seconds = storeConnectTimeoutSeconds {
                settings.connectTimeout = .milliseconds(Int64((seconds * 1000).rounded()))
                storeConfiguration = .postgres(settings)
            }
        } else {
            try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
            storeConfiguration = .sqlite(path: (dataDirectory as NSString).appendingPathComponent("broker.db"))
        }
        var configuration = BrokerAppConfiguration(store: storeConfiguration, service: service)
        configuration.migrateOnStart = migrateOnStart
        configuration.audit = audit
        configuration.auditJournal = auditJournal
        configuration.drainSeconds = drainSeconds
        configuration.metricsRefreshSeconds = metricsRefreshSeconds
        configuration.transport = transport
        configuration.transport.host = listenHost
        configuration.transport.port = listenPort
        configuration.transport.connection.maximumConcurrentStreams = maximumConcurrentStreams
        if !plaintext, let certificate = tlsCertificatePath, let key = tlsKeyPath, let clientCA = clientCAPath {
            // Read (and checked) when the listener binds, then again every tlsReloadSeconds.
            var files = ServerTLSFiles(certificateChain: certificate, privateKey: key, clientCA: clientCA, crl: crlPath)
            files.reloadSeconds = tlsReloadSeconds
            configuration.transport.tlsFiles = files
        }
        if let isvTenantID, let appID = azure.applicationClientID {
            configuration.bootstrapSlots = try bootstrapSlots.map {
                try FICSlotIdentity(
                    applicationID: appID, managedIdentityClientID: $0.clientID, managedIdentityPrincipalID: $0.principalID,
                    issuer: "https://login.microsoftonline.com/\(isvTenantID)/v2.0", subject: $0.principalID)
            }
        }
        configuration.slots = slots
        configuration.slots.isvTenantID = isvTenantID
        configuration.heartbeatSeconds = heartbeatSeconds
        configuration.accessRecovery = accessRecovery
        if let admin {
            var listener = BrokerAppConfiguration.Admin(api: admin.api)
            listener.host = admin.listenHost
            listener.port = admin.listenPort
            listener.unixSocketPath = admin.unixSocketPath
            if !admin.plaintext, let certificate = admin.tlsCertificatePath, let key = admin.tlsKeyPath {
                listener.tls = try Self.serverTLS(certificate: certificate, key: key)
            }
            configuration.admin = listener
        }
        return configuration
    }

    static func serverTLS(certificate: String, key: String) throws -> TLSConfiguration {
        let chain = try NIOSSLCertificate.fromPEMFile(certificate)
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
        tls.minimumTLSVersion = .tlsv13
        return tls
    }
}
