import ArgumentParser
import AsyncHTTPClient
import AzureIdentity
import BrokerServer
import BrokerStore
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
            their certificate's common name is looked up in the store's callers and grants. Azure endpoints \
            come from FEDBROKER_* variables (see README). SIGTERM or SIGINT drains: the listener closes, \
            in-flight calls finish, the audit writer flushes, then the process exits 0.
            """
    )

    @Option(name: .long, help: "Address to listen on, HOST:PORT.")
    var listen: String = "127.0.0.1:7443"

    @Option(name: .long, help: "PEM certificate (chain) the server presents.")
    var tlsCert: String?

    @Option(name: .long, help: "PEM private key of --tls-cert.")
    var tlsKey: String?

    @Option(name: .long, help: "PEM CA that issues callers' client certificates (required with TLS).")
    var clientCA: String?

    @Flag(name: .long, help: "Serve without TLS. Loopback only; every caller is anonymous (identity \"\").")
    var plaintext = false

    @Option(name: .long, help: "postgres://… or sqlite:PATH. Default: SQLite in --data-dir.")
    var databaseURL: String?

    @Option(name: .long, help: "Directory for the embedded SQLite store.")
    var dataDir: String = "fedbroker-data"

    @Option(name: .long, help: "Requests one connection may have in flight.")
    var maxStreams: UInt32 = 256

    @Option(name: .long, help: "Seconds a plaintext data key may be served from memory (the revocation bound).")
    var cacheMaxAge: Double = 300

    @Option(name: .long, help: "Log level.")
    var logLevel: String = "info"

    @OptionGroup var azure: AzureOptions

    func validate() throws {
        guard Self.split(listen) != nil else { throw ValidationError("--listen must be HOST:PORT") }
        if plaintext {
            guard [nil, nil, nil] == [tlsCert, tlsKey, clientCA] as [String?] else { throw ValidationError("--plaintext excludes --tls-cert/--tls-key/--client-ca") }
        } else {
            guard tlsCert != nil, tlsKey != nil, clientCA != nil else {
                throw ValidationError("give --tls-cert, --tls-key and --client-ca (mutual TLS), or --plaintext on loopback")
            }
        }
        guard cacheMaxAge > 0, maxStreams > 0 else { throw ValidationError("--cache-max-age and --max-streams must be positive") }
    }

    static func split(_ hostPort: String) -> (String, Int)? {
        guard let colon = hostPort.lastIndex(of: ":"), let port = Int(hostPort[hostPort.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        return (String(hostPort[..<colon]), port)
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            return handler
        }
        let logger = Logger(label: "fedbroker")
        let (host, port) = Self.split(listen)!
        let environment = azure.resolve()

        let storeConfiguration: StoreConfiguration
        if let databaseURL {
            storeConfiguration = try StoreConfiguration(databaseURL: databaseURL)
        } else {
            try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
            storeConfiguration = .sqlite(path: (dataDir as NSString).appendingPathComponent("broker.db"))
        }
        let store = try await SQLBrokerStore.open(storeConfiguration, logger: logger)
        let report = try await store.migrate()
        logger.info("store ready", metadata: ["fb.store": "\(storeConfiguration)", "fb.schema": "\(report.currentVersion)"])

        let http = try environment.makeHTTPClient()
        let audit = AuditWriter(store: store, logger: logger)
        var serviceConfiguration = BrokerService.Configuration(environment: environment)
        serviceConfiguration.cache.maximumAge = cacheMaxAge
        let service = try BrokerService(configuration: serviceConfiguration, store: store, audit: audit, httpClient: http, logger: logger)

        var transport = BrokerTransportServer.Configuration()
        transport.host = host
        transport.port = port
        transport.connection.maximumConcurrentStreams = maxStreams
        if !plaintext {
            let chain = try NIOSSLCertificate.fromPEMFile(tlsCert!)
            var tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(try NIOSSLPrivateKey(file: tlsKey!, format: .pem)))
            tls.certificateVerification = .noHostnameVerification
            tls.trustRoots = .file(clientCA!)
            tls.minimumTLSVersion = .tlsv13
            transport.tls = tls
        }
        let server = try await BrokerTransportServer.bind(configuration: transport, service: service, logger: logger)
        FileHandle.standardOutput.write(Data("fedbroker serving on \(host):\(server.port)\(plaintext ? " (plaintext, loopback)" : " (mTLS)")\n".utf8))

        let group = ServiceGroup(
            configuration: .init(
                services: [ListenerService(server: server), AuditService(writer: audit)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        try? await audit.shutdown()
        try await http.shutdown()
        try await store.close()
        logger.info("fedbroker stopped")
    }
}

/// Runs until graceful shutdown, then drains: GOAWAY on every connection, in-flight calls
/// finish (bounded by 10 s), then the listener and connections close.
struct ListenerService: Service {
    let server: BrokerTransportServer
    func run() async throws {
        let drained = Synchronization.Mutex<Task<Void, Never>?>(nil)
        try await withGracefulShutdownHandler {
            try await server.channel.closeFuture.get()
        } onGracefulShutdown: {
            drained.withLock { $0 = Task { await server.drain(timeout: 10) } }
        }
        await drained.withLock { $0 }?.value
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
