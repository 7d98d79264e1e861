import AdminAPI
import AsyncHTTPClient
import AzureHTTP
import AzureIdentity
import BrokerServer
import BrokerStore
import FedBrokerCore
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import KeyVault
import Logging
import NIOCore
import ServiceLifecycle
import SlotOperations
import UnixSignals
import Synchronization

/// The broker, assembled once: store, audit writer, Azure HTTP client, service, framed-TCP
/// listener, admin listener and change-feed follower, each a `Service` of one `ServiceGroup`.
///
/// `fedbroker serve`, the end-to-end tests and the benchmarks all build it here, so what is
/// tested is what runs. `build` opens and binds everything (so a port in use or a store that does
/// not answer fails before anything serves); `run` serves until a signal or `shutdown()`, then
/// drains and releases everything in order.
public final class BrokerApp: Sendable {
    public let store: SQLBrokerStore
    public let service: BrokerService
    public let audit: AuditWriter
    /// The local journal key operations' audit records go to first, when configured.
    public let journal: AuditJournal?
    public let transport: BrokerTransportServer
    let httpClient: HTTPClient
    let group: ServiceGroup
    let logger: Logger
    private let adminPorts: AdminPorts

    /// The framed-TCP listener's port.
    public var port: Int { transport.port }

    /// The admin listener's port, once it listens (nil when there is none, or it failed).
    public func adminPort() async -> Int? { await adminPorts.port() }

    private init(
        store: SQLBrokerStore, service: BrokerService, audit: AuditWriter, journal: AuditJournal?, transport: BrokerTransportServer,
        httpClient: HTTPClient, group: ServiceGroup, adminPorts: AdminPorts, logger: Logger
    ) {
        self.store = store
        self.service = service
        self.audit = audit
        self.journal = journal
        self.transport = transport
        self.httpClient = httpClient
        self.group = group
        self.adminPorts = adminPorts
        self.logger = logger
    }

    /// Opens the store (and migrates it), builds the service and binds the framed listener.
    /// `signals` are the ones that start a graceful shutdown (none in tests: call `shutdown()`).
    public static func build(
        _ configuration: BrokerAppConfiguration, clock: any WallClock = SystemWallClock(),
        signals: [UnixSignal] = [.sigterm, .sigint], logger: Logger
    ) async throws -> BrokerApp {
        if let warning = configuration.store.securityWarning {
            logger.warning("the PostgreSQL connection is not verified", metadata: ["fb.store.tls": "\(warning)"])
        }
        let store = try await SQLBrokerStore.open(configuration.store, clock: clock, logger: logger)
        do {
            if configuration.migrateOnStart {
                let report = try await store.migrate()
                logger.info("store ready", metadata: ["fb.store": "\(configuration.store)", "fb.schema": "\(report.currentVersion)"])
            } else {
                // The schema belongs to a migration job; this replica has no DDL rights and only checks.
                let version = try await store.verifySchemaIsCurrent()
                logger.info("store ready (migrations left to the migration job)", metadata: ["fb.store": "\(configuration.store)", "fb.schema": "\(version)"])
            }
            try await Self.bootstrap(configuration.bootstrapSlots, in: store, logger: logger)
            let http = try configuration.service.environment.makeHTTPClient()
            do {
                BrokerMetrics.bootstrap()  // before anything that records is made
                let audit = AuditWriter(store: store, configuration: configuration.audit, logger: logger)
                let journal = try configuration.auditJournal.map { try AuditJournal(store: store, configuration: $0, logger: logger) }
                do {
                    let sources = try Self.assertionSources(configuration, httpClient: http, clock: clock)
                    let service = try BrokerService(
                        configuration: configuration.service, store: store, audit: journal ?? audit, httpClient: http, assertionSources: sources,
                        clock: clock, logger: logger)
                    // Announced before serving, so this replica's first vault call already uses its
                    // share of each vault's budget rather than the whole of it.
                    if let live = try? await store.heartbeat(
                        replica: configuration.replicaID, startedAt: clock.now, liveWithin: configuration.heartbeatSeconds * 3)
                    {
                        service.vault.shareBudget(among: live)
                    }
                    let runner = Self.slotJobRunner(configuration, store: store, service: service, httpClient: http, clock: clock, logger: logger)
                    let adminPorts = AdminPorts(expected: configuration.admin.map { $0.unixSocketPath == nil ? 1 : 2 } ?? 0)
                    // The admin services first: what can fail in building them fails before a port is bound.
                    let adminServices = try configuration.admin.map {
                        try Self.adminServices(
                            $0, store: store, environment: configuration.service.environment, httpClient: http, clock: clock,
                            ports: adminPorts, slotJobSubmitted: { runner?.wake() }, operability: Self.operability(service), logger: logger)
                    } ?? []
                    let transport = try await BrokerTransportServer.bind(
                        configuration: configuration.transport, service: service, logger: logger)
                    let services: [any Service] = [
                        ListenerService(server: transport, drainSeconds: configuration.drainSeconds), AuditService(writer: audit, journal: journal),
                        ChangeFollowerService(service: service),
                        AccessRecoveryService(recovery: AccessRecovery(service: service, configuration: configuration.accessRecovery, logger: logger)),
                        ReplicaHeartbeatService(
                            store: store, vault: service.vault, replicaID: configuration.replicaID, interval: configuration.heartbeatSeconds,
                            clock: clock, logger: logger),
                    ] + (runner.map { [SlotJobService(runner: $0)] } ?? []) + adminServices
                        + Self.operabilityServices(configuration, store: store, service: service, logger: logger)
                    let group = ServiceGroup(
                        configuration: .init(services: services, gracefulShutdownSignals: signals, logger: logger))
                    return BrokerApp(
                        store: store, service: service, audit: audit, journal: journal, transport: transport, httpClient: http, group: group,
                        adminPorts: adminPorts, logger: logger)
                } catch {
                    // Opened but never served: its threads, its empty segment and the directory's
                    // lock go now (a test or the bench that builds again in this process needs it).
                    await journal?.abandon()
                    throw error
                }
            } catch {
                try? await http.shutdown()
                throw error
            }
        } catch {
            try? await store.close()
            throw error
        }
    }

    /// Makes sure every configured slot exists and is active. Idempotent, so a restart after a
    /// crash between creating and activating a slot finishes the job, and replicas starting
    /// together (racing on the same names) all end up with the same slots.
    static func bootstrap(_ identities: [FICSlotIdentity], in store: any BrokerStore, logger: Logger) async throws {
        for (index, identity) in identities.enumerated() {
            guard let id = FICSlotID(rawValue: "fic-\(index + 1)") else { continue }
            var slot = try await store.slots().first { $0.identity.managedIdentityClientID == identity.managedIdentityClientID }
            if slot == nil {
                do {
                    slot = try await store.createSlot(id, identity: identity, actor: "fedbroker:bootstrap")
                } catch let error as BrokerError where error.code == .uniqueConflict {
                    slot = try await store.slot(id)  // another replica created it a moment ago
                }
            }
            guard let current = slot else { continue }
            guard current.identity.managedIdentityClientID == identity.managedIdentityClientID else {
                throw BrokerError(
                    .uniqueConflict, "slot \(id) exists for another managed identity; slots.bootstrap cannot create \(identity.managedIdentityClientID) under that name")
            }
            if current.state == .provisioning {
                do {
                    _ = try await store.transitionSlot(current.id, expectedVersion: current.version, event: .activate, actor: "fedbroker:bootstrap")
                    logger.notice(
                        "bootstrap FIC slot created and activated",
                        metadata: ["fb.slot": "\(current.id)", "fb.identity": "\(identity.managedIdentityClientID)"])
                } catch let error as BrokerError where error.code == .versionConflict {
                    // Another replica activated it.
                }
            }
        }
    }

    /// Serves until a shutdown signal or `shutdown()`: the listeners drain, the audit writer
    /// flushes what is left, then the HTTP client and the store close.
    ///
    /// - Throws: the service group's failure; else `AuditIncompleteError` when audit records could
    ///   not be written to the store (still pending, or quarantined): the trail has a hole, so
    ///   `serve` must not exit 0. Everything is closed either way.
    public func run() async throws {
        var failure: (any Error)?
        do {
            try await group.run()
        } catch {
            failure = error
        }
        await adminPorts.finish()
        // A loss of access being recorded finishes first: the store closes below.
        await service.lossRecordings.drain()
        var auditFailure: AuditIncompleteError?
        // The journal first: what it cannot ship stays on its disk for the next start.
        if let journal {
            do { try await Self.shutdown(journal, logger: logger) } catch let failure as AuditIncompleteError { auditFailure = failure } catch {}
        }
        do {
            try await audit.shutdown()
        } catch {
            let failure = AuditIncompleteError(
                unwritten: await audit.pendingCount, quarantined: await audit.quarantinedCount,
                quarantineFile: audit.quarantineFilePath,
                underlying: error as? BrokerError ?? BrokerError(.storeFailure, "audit shutdown failed", underlying: error))
            auditFailure = failure
            logger.critical(
                "audit records were not written at shutdown; the audit trail is incomplete",
                metadata: [
                    "fb.audit.unwritten": "\(failure.unwritten)", "fb.audit.quarantined": "\(failure.quarantined)",
                    "fb.auditQuarantineFile": "\(failure.quarantineFile ?? "none (memory only)")",
                    "fb.error": "\(failure.underlying.code)", "fb.message": "\(failure.underlying.message)",
                ])
        }
        try? await httpClient.shutdown()
        try? await store.close()
        logger.info("fedbroker stopped")
        if let failure { throw failure }
        if let auditFailure { throw auditFailure }
    }

    /// Ships the journal's rest to the store; an `AuditIncompleteError` (logged) when it could not.
    static func shutdown(_ journal: AuditJournal, logger: Logger) async throws {
        do {
            try await journal.shutdown()
        } catch let error as BrokerError where error.code == .invalidData {
            // Everything was shipped but what the database refused: nothing waits in the journal,
            // and saying so would send the SRE looking for a backlog that is not there.
            let quarantineFile = journal.quarantineFilePath
            logger.critical(
                "audit records were rejected by the database and quarantined; the store's audit trail lacks them",
                metadata: [
                    "fb.audit.quarantined": "\(journal.quarantinedCount)",
                    "fb.auditQuarantineFile": "\(quarantineFile ?? "none (the log only)")", "fb.message": "\(error.message)",
                ])
            throw AuditIncompleteError(unwritten: 0, quarantined: journal.quarantinedCount, quarantineFile: quarantineFile, underlying: error)
        } catch {
            let underlying = error as? BrokerError ?? BrokerError(.storeFailure, "audit journal shutdown failed", underlying: error)
            let health = await journal.health
            logger.critical(
                "audit records are not in the store at shutdown; the journal keeps them for the next start",
                metadata: [
                    "fb.auditJournal": "\(journal.configuration.directory)", "fb.audit.unwritten": "\(health.backlog)",
                    "fb.audit.quarantined": "\(journal.quarantinedCount)", "fb.error": "\(underlying.code)", "fb.message": "\(underlying.message)",
                ])
            throw AuditIncompleteError(
                unwritten: health.backlog, quarantined: journal.quarantinedCount, quarantineFile: journal.quarantineFilePath,
                underlying: underlying)
        }
    }

    /// Serves while `body` runs, then shuts down and waits until everything is released, whether
    /// `body` returned or threw: for tests, the bench and the demo, which drive a broker of their own.
    public func serving<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        let running = Task { try await self.run() }
        let result: Result<T, any Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        await self.shutdown()
        let stopped = await running.result
        let value = try result.get()
        try stopped.get()
        return value
    }

    /// Starts the graceful shutdown `run()` finishes.
    public func shutdown() async {
        await group.triggerGracefulShutdown()
    }

    static func adminServices(
        _ admin: BrokerAppConfiguration.Admin, store: SQLBrokerStore, environment: AzureEnvironment, httpClient: HTTPClient,
        clock: any WallClock, ports: AdminPorts, slotJobSubmitted: @escaping @Sendable () -> Void = {},
        operability: AdminOperability? = nil, logger: Logger
    ) throws -> [any Service] {
        let verifier = EntraTokenVerifier(
            authorityURL: environment.authorityURL, configuration: admin.api, httpClient: httpClient, clock: clock, logger: logger)
        let router = try AdminRouter.make(
            store: store, environment: environment, configuration: admin.api, authentication: .entra(verifier),
            httpClient: httpClient, clock: clock, slotJobSubmitted: slotJobSubmitted, operability: operability, logger: logger)
        var services: [any Service] = []
        let onRunning: @Sendable (any Channel) async -> Void = { channel in
            await ports.listening(port: channel.localAddress?.port)
            logger.info("admin API listening", metadata: ["fb.admin": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
        }
        guard admin.tls != nil || LoopbackHost.contains(admin.host) else {
            throw BrokerError(.invalidArgument, "the admin listener serves plaintext on loopback only, not on \(admin.host)")
        }
        let server: HTTPServerBuilder = try admin.tls.map { try .tls(.http1(), tlsConfiguration: $0) } ?? .http1()
        services.append(
            Application(
                router: router, server: server,
                configuration: .init(address: .hostname(admin.host, port: admin.port), serverName: "fedbroker-admin"),
                onServerRunning: onRunning, logger: logger))
        if let path = admin.unixSocketPath {
            let local = StaffPrincipal(objectID: "local-socket", name: "local admin socket", roles: Set(AdminRole.allCases))
            let socketRouter = try AdminRouter.make(
                store: store, environment: environment, configuration: admin.api, authentication: .localSocket(local),
                httpClient: httpClient, clock: clock, slotJobSubmitted: slotJobSubmitted, operability: operability, logger: logger)
            // Replace a socket left by an earlier run, never any other file.
            if let type = (try? FileManager.default.attributesOfItem(atPath: path))?[.type] as? FileAttributeType {
                guard type == .typeSocket else {
                    throw BrokerError(.invalidArgument, "admin.unixSocket \(path) exists and is not a socket")
                }
                try FileManager.default.removeItem(atPath: path)
            }
            services.append(
                Application(
                    router: socketRouter, configuration: .init(address: .unixDomainSocket(path: path), serverName: "fedbroker-admin"),
                    onServerRunning: { channel in
                        // Owner only: the file mode is the socket's whole access control, so a
                        // socket that cannot be restricted is closed rather than served.
                        if chmod(path, 0o600) == 0 {
                            logger.info("admin API listening on a Unix socket (owner only)", metadata: ["fb.socket": "\(path)"])
                        } else {
                            logger.critical("cannot restrict the admin socket to its owner; closing it", metadata: ["fb.socket": "\(path)"])
                            try? await channel.close()
                        }
                        await ports.listening(port: nil)
                    }, logger: logger))
        }
        return services
    }
}

/// Runs until graceful shutdown, then drains: GOAWAY on every connection, in-flight calls
/// finish (bounded by drainSeconds), then the listener and connections close.
struct ListenerService: Service {
    let server: BrokerTransportServer
    let drainSeconds: Double
    func run() async throws {
        let drained = Mutex<Task<Void, Never>?>(nil)
        try await withGracefulShutdownHandler {
            try await server.channel.closeFuture.get()
        } onGracefulShutdown: {
            drained.withLock { $0 = Task { await server.drain(timeout: drainSeconds) } }
        }
        await drained.withLock { $0 }?.value
    }
}

/// Purges cached keys of tenants the store says were suspended, offboarded or lost access (by
/// staff, or through another replica), until graceful shutdown.
struct ChangeFollowerService: Service {
    let service: BrokerService
    func run() async throws {
        await cancelWhenGracefulShutdown { await service.followChanges() }
    }
}

/// The audit writer's periodic flush; it stops on graceful shutdown, and `run()` flushes the
/// rest once the listeners are closed.
struct AuditService: Service {
    let writer: AuditWriter
    let journal: AuditJournal?
    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await writer.run() }
                if let journal { group.addTask { await journal.run() } }
            }
        }
    }
}

/// The admin listener's port, for whoever asks before it is bound: answered once every admin
/// listener (HTTPS, and the Unix socket when configured) is listening.
actor AdminPorts {
    private var value: Int?
    private var remaining: Int
    private var waiters: [CheckedContinuation<Int?, Never>] = []

    init(expected: Int) { self.remaining = expected }

    /// One listener is up; `port` is the TCP listener's (nil for the socket).
    func listening(port: Int?) {
        if let port, value == nil { value = port }
        remaining -= 1
        if remaining <= 0 { finish() }
    }

    func finish() {
        remaining = 0
        for waiter in waiters { waiter.resume(returning: value) }
        waiters.removeAll()
    }

    func port() async -> Int? {
        if remaining <= 0 { return value }
        return await withCheckedContinuation { waiters.append($0) }
    }
}
