import ArgumentParser
import AsyncHTTPClient
import AzureIdentity
import BrokerServer
import BrokerStore
import Configuration
import FedBrokerCore
import Foundation
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import Synchronization
import UnixSignals

/// `fedbroker serve`: the broker. Store (migrated at start), identity chain, vault client,
/// data-key cache and audit writer behind the framed protocol over mutual TLS.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve wrap/unwrap to internal services over the framed protocol (mTLS).",
        discussion: """
            Opens the store (PostgreSQL with --database-url, else SQLite in --data-dir), migrates it, and \
            listens for internal services. Callers authenticate with client certificates from --client-ca; \
            their certificate's common name is looked up in the store's callers and grants. Every setting \
            can come from a flag, a FEDBROKER_* variable or the --config JSON file, in that order \
            (docs/configuration.md lists the keys). SIGTERM or SIGINT drains: the listener closes, \
            in-flight calls finish, the audit writer flushes, then the process exits 0.
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

    @Option(name: .long, help: "Directory for the embedded SQLite store (store.dataDir; default fedbroker-data).")
    var dataDir: String?

    @Option(name: .long, help: "Requests one connection may have in flight (server.maxStreams; default 256).")
    var maxStreams: Int?

    @Option(name: .long, help: "Seconds a plaintext data key may be served from memory, the revocation bound (cache.maxAgeSeconds; default 300).")
    var cacheMaxAge: Double?

    @Option(name: .long, help: "Log level (log.level; default info).")
    var logLevel: String?

    @OptionGroup var azure: AzureOptions

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
        if let v = azure.imdsURL { values["azure.imdsURL"] = .string(v) }
        if let v = azure.authorityURL { values["azure.authorityURL"] = .string(v) }
        if let v = azure.appClientID { values["azure.appClientID"] = .string(v) }
        if let v = azure.caBundle { values["azure.caBundle"] = .string(v) }
        return values
    }

    func run() async throws {
        let settings: ServeConfiguration
        do {
            let reader = try await ServeConfiguration.reader(flags: flagValues, file: config, environment: ProcessInfo.processInfo.environment)
            settings = try ServeConfiguration(reader: reader).validated()
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: settings.logLevel) ?? .info
            return handler
        }
        let logger = Logger(label: "fedbroker")
        let (host, port) = (settings.listenHost, settings.listenPort)

        let storeConfiguration: StoreConfiguration
        if let databaseURL = settings.databaseURL {
            storeConfiguration = try StoreConfiguration(databaseURL: databaseURL)
        } else {
            try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true)
            storeConfiguration = .sqlite(path: (settings.dataDirectory as NSString).appendingPathComponent("broker.db"))
        }
        let store = try await SQLBrokerStore.open(storeConfiguration, logger: logger)
        let report = try await store.migrate()
        logger.info("store ready", metadata: ["fb.store": "\(storeConfiguration)", "fb.schema": "\(report.currentVersion)"])

        let http = try settings.azure.makeHTTPClient()
        let audit = AuditWriter(store: store, logger: logger)
        let service = try BrokerService(configuration: settings.service, store: store, audit: audit, httpClient: http, logger: logger)

        var transport = BrokerTransportServer.Configuration()
        transport.host = host
        transport.port = port
        transport.connection.maximumConcurrentStreams = settings.maximumConcurrentStreams
        if !settings.plaintext, let certificate = settings.tlsCertificatePath, let key = settings.tlsKeyPath, let clientCA = settings.clientCAPath {
            let chain = try NIOSSLCertificate.fromPEMFile(certificate)
            var tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            tls.certificateVerification = .noHostnameVerification
            tls.trustRoots = .file(clientCA)
            tls.minimumTLSVersion = .tlsv13
            transport.tls = tls
        }
        let server = try await BrokerTransportServer.bind(configuration: transport, service: service, logger: logger)
        FileHandle.standardOutput.write(Data("fedbroker serving on \(host):\(server.port)\(settings.plaintext ? " (plaintext, loopback)" : " (mTLS)")\n".utf8))
        logger.info(
            "serving",
            metadata: [
                "fb.listen": "\(host):\(server.port)", "fb.tls": "\(!settings.plaintext)", "fb.cacheMaxAge": "\(settings.service.cache.maximumAge)",
                "fb.tenantConcurrency": "\(settings.service.tenantConcurrency)", "fb.config": "\(config ?? "none")",
            ])

        let group = ServiceGroup(
            configuration: .init(
                services: [
                    ListenerService(server: server, drainSeconds: settings.drainSeconds), AuditService(writer: audit),
                    ChangeFollowerService(service: service),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        try? await audit.shutdown()
        try await http.shutdown()
        try await store.close()
        logger.info("fedbroker stopped")
    }
}

/// Runs until graceful shutdown, then drains: GOAWAY on every connection, in-flight calls
/// finish (bounded by server.drainSeconds), then the listener and connections close.
struct ListenerService: Service {
    let server: BrokerTransportServer
    let drainSeconds: Double
    func run() async throws {
        let drained = Synchronization.Mutex<Task<Void, Never>?>(nil)
        try await withGracefulShutdownHandler {
            try await server.channel.closeFuture.get()
        } onGracefulShutdown: {
            drained.withLock { $0 = Task { await server.drain(timeout: drainSeconds) } }
        }
        await drained.withLock { $0 }?.value
    }
}

/// Purges cached keys of tenants the store says were suspended or disabled (by staff, or by
/// another replica), until graceful shutdown.
struct ChangeFollowerService: Service {
    let service: BrokerService
    func run() async throws {
        await cancelWhenGracefulShutdown { await service.followChanges() }
    }
}

/// The audit writer's periodic flush; it stops on graceful shutdown, and `serve` flushes the
/// rest once the listener is closed.
struct AuditService: Service {
    let writer: AuditWriter
    func run() async throws {
        await cancelWhenGracefulShutdown { await writer.run() }
    }
}
