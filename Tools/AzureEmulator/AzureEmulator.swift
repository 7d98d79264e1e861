import FedBrokerCore
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The Azure emulator as one service: IMDS (http), Entra and Graph (https), one https
/// listener per Key Vault, and the control API (http), all on loopback.
///
/// Run it in a `ServiceGroup` (graceful shutdown stops every listener), then
/// `waitUntilReady()` for the endpoints.
public final class AzureEmulator: Service, Sendable {
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        public var imdsPort = 0
        public var authorityPort = 0
        public var graphPort = 0
        public var controlPort = 0
        /// Where the CA, the persisted state and env.sh live; nil keeps everything in memory.
        public var stateDirectory: URL?
        /// Seeds `DefaultScenario` when the directory is empty.
        public var seedDefaultScenario = false
        public var settings = Directory.Settings()
        /// Told of every token signed and every key value wrapped or unwrapped, on the request's
        /// task. For the tests' secret ledger; nil (the default) costs nothing.
        public var secretObserver: (@Sendable (IssuedSecret) -> Void)?
        public init() {}
    }

    public let state: EmulatorState
    public let pki: EmulatorPKI
    private let configuration: Configuration
    private let logger: Logger
    private let vaultRequests: AsyncStream<VaultRequest>
    private let vaultRequestSink: AsyncStream<VaultRequest>.Continuation
    private let readiness = OneShot<EmulatorState.Endpoints>()
    private let seeded = Mutex<DefaultScenario?>(nil)

    struct VaultRequest: Sendable {
        var name: String
        var portHint: Int?
        var bound: CheckedContinuation<Int, any Error>
    }

    /// File names under the state directory.
    static let stateFile = "state.json"
    static let envFile = "env.sh"
    static let caFile = "ca.pem"

    public init(configuration: Configuration, clock: any WallClock = SystemWallClock(), logger: Logger) async throws {
        self.configuration = configuration
        self.logger = logger
        var directory = Directory()
        directory.settings = configuration.settings
        var signingKey: Data?
        if let dir = configuration.stateDirectory {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            if let snapshot = try Self.loadSnapshot(from: dir) {
                directory = snapshot.directory
                signingKey = snapshot.signingKey
                logger.info("loaded emulator state", metadata: ["path": "\(dir.appendingPathComponent(Self.stateFile).path)"])
            }
        }
        self.pki = try EmulatorPKI.make(directory: configuration.stateDirectory)
        let authority = try await TokenAuthority(privateKeyDER: signingKey, observer: configuration.secretObserver)
        var persistence: (@Sendable (Directory, Data) -> Void)?
        if let dir = configuration.stateDirectory {
            persistence = { directory, key in
                Self.saveSnapshot(Snapshot(directory: directory, signingKey: key), to: dir, logger: logger)
            }
        }
        self.state = EmulatorState(directory: directory, authority: authority, clock: clock, logger: logger, persistence: persistence)
        (self.vaultRequests, self.vaultRequestSink) = AsyncStream.makeStream(of: VaultRequest.self)
    }

    /// The seeded default scenario, once `run()` has seeded it.
    public var defaultScenario: DefaultScenario? { seeded.withLock { $0 } }

    /// Waits until every listener is bound (and the default scenario seeded), then returns the endpoints.
    public func waitUntilReady() async throws -> EmulatorState.Endpoints {
        try await readiness.wait()
    }

    public func run() async throws {
        do {
            try await withThrowingDiscardingTaskGroup { group in
                let tls = try pki.serverTLSConfiguration()
                let host = configuration.host
                let imds = try await start(IMDSService(state: state), tls: nil, port: configuration.imdsPort, name: "imds", in: &group)
                let authority = try await start(EntraService(state: state), tls: tls, port: configuration.authorityPort, name: "entra", in: &group)
                let graph = try await start(GraphService(state: state), tls: tls, port: configuration.graphPort, name: "graph", in: &group)
                let control = try await start(
                    ControlService.router(state: state).buildResponder(), tls: nil, port: configuration.controlPort, name: "control", in: &group)
                state.setEndpoints { e in
                    e.imds = "http://\(host):\(imds)"
                    e.authority = "https://localhost:\(authority)"
                    e.graph = "https://localhost:\(graph)"
                    e.control = "http://\(host):\(control)"
                }

                // Vault listeners: started on request (createVault) for as long as the emulator runs.
                let requests = vaultRequests
                let state = state
                group.addTask { [self] in
                    await withGracefulShutdownHandler {
                        await withDiscardingTaskGroup { vaults in
                            for await request in requests {
                                vaults.addTask { await self.serveVault(request, tls: tls) }
                            }
                        }
                    } onGracefulShutdown: {
                        self.vaultRequestSink.finish()
                    }
                }
                state.vaultLauncher.withLock { launcher in
                    launcher = { [sink = vaultRequestSink] name, hint in
                        try await withCheckedThrowingContinuation { continuation in
                            if case .terminated = sink.yield(VaultRequest(name: name, portHint: hint, bound: continuation)) {
                                continuation.resume(throwing: ScenarioError(status: 503, code: "NotRunning", message: "The emulator is shutting down."))
                            }
                        }
                    }
                }
                try await restorePersistedVaults()
                if configuration.seedDefaultScenario, state.read({ $0.tenants.isEmpty }) {
                    let scenario = try await DefaultScenario.seed(into: state)
                    seeded.withLock { $0 = scenario }
                    logger.info("seeded the default scenario", metadata: ["isvTenant": "\(scenario.isvTenantID)", "app": "\(scenario.appClientID)"])
                } else if configuration.seedDefaultScenario {
                    let recovered = try Self.recoverScenario(state)
                    seeded.withLock { $0 = recovered }
                }
                try writeEnvironmentFile()
                readiness.succeed(state.currentEndpoints)
            }
        } catch {
            readiness.fail(error)
            throw error
        }
    }

    /// Binds one listener as a child of `group` and returns its port.
    private func start<Responder: HTTPResponder>(
        _ responder: Responder, tls: TLSConfiguration?, port: Int, name: String,
        in group: inout ThrowingDiscardingTaskGroup<any Error>
    ) async throws -> Int where Responder.Context == EmulatorRequestContext {
        // An explicit port is used as given; otherwise the port of the previous run is tried
        // first, so a restart from the same state dir keeps env.sh valid.
        let remembered = port == 0 ? state.read { $0.listenerPorts[name] } : nil
        for candidate in [remembered, port].compactMap({ $0 }) {
            let bound = OneShot<Int>()
            let app = try makeApplication(responder, tls: tls, port: candidate, name: name, bound: bound)
            group.addTask { try await Self.run(app, reportingTo: bound) }
            do {
                let actual = try await bound.wait()
                if remembered != actual { state.mutate { $0.listenerPorts[name] = actual } }
                return actual
            } catch where candidate == remembered && candidate != port {
                logger.warning("previous port taken, binding a new one", metadata: ["listener": "\(name)", "port": "\(candidate)"])
            }
        }
        throw ScenarioError(status: 500, code: "BindFailed", message: "Could not bind the \(name) listener.")
    }

    /// Runs a listener. A failure to bind goes to whoever waits for the port (who may retry on
    /// another port); a failure after binding is the listener's own and propagates.
    private static func run(_ app: some ApplicationProtocol, reportingTo bound: OneShot<Int>) async throws {
        do {
            try await app.run()
            // Stopped (graceful shutdown) before it ever bound: whoever waits must not wait forever.
            bound.fail(ScenarioError(status: 503, code: "NotRunning", message: "The listener stopped before it bound."))
        } catch {
            if !bound.fail(error) { throw error }
        }
    }

    private func makeApplication<Responder: HTTPResponder>(
        _ responder: Responder, tls: TLSConfiguration?, port: Int, name: String, bound: OneShot<Int>
    ) throws -> Application<Responder> where Responder.Context == EmulatorRequestContext {
        var appLogger = logger
        appLogger[metadataKey: "emulator.service"] = "\(name)"
        let server: HTTPServerBuilder = try tls.map { try .tls(.http1(), tlsConfiguration: $0) } ?? .http1()
        return Application(
            responder: responder, server: server,
            configuration: .init(address: .hostname(configuration.host, port: port), serverName: nil),
            onServerRunning: { channel in bound.succeed(channel.localAddress?.port ?? 0) },
            logger: appLogger)
    }

    /// Serves one vault until shutdown. A persisted port that is taken falls back to a fresh one.
    private func serveVault(_ request: VaultRequest, tls: TLSConfiguration) async {
        var hint = request.portHint
        var continuation: CheckedContinuation<Int, any Error>? = request.bound
        while true {
            let bound = OneShot<Int>()
            do {
                let app = try makeApplication(
                    KeyVaultService(state: state, vaultName: request.name), tls: tls, port: hint ?? 0, name: "keyvault:\(request.name)", bound: bound)
                async let running: Void = Self.run(app, reportingTo: bound)
                let port = try await bound.wait()
                state.setEndpoints { $0.vaults[request.name.lowercased()] = "https://localhost:\(port)" }
                continuation?.resume(returning: port)
                continuation = nil
                try await running
                return
            } catch {
                if continuation != nil, hint != nil {
                    logger.warning("vault port taken, binding a new one", metadata: ["vault": "\(request.name)", "port": "\(hint!)"])
                    hint = nil
                    continue
                }
                continuation?.resume(throwing: error)
                if continuation == nil { logger.error("vault listener failed", metadata: ["vault": "\(request.name)", "error": "\(error)"]) }
                return
            }
        }
    }

    private func restorePersistedVaults() async throws {
        let vaults = state.read { $0.vaults.values.map { ($0.name, $0.port) } }
        guard let launcher = state.vaultLauncher.withLock({ $0 }) else { return }
        for (name, port) in vaults {
            let bound = try await launcher(name, port)
            state.mutate { $0.vaults[name.lowercased()]?.port = bound }
        }
    }

    /// After a restart from a state dir, rebuilds the scenario description from the directory.
    private static func recoverScenario(_ state: EmulatorState) throws -> DefaultScenario? {
        guard let isvTenantID = state.read({ $0.applications.values.first { $0.displayName == "fabrikam-cmk" }?.homeTenantId }) else {
            return nil
        }
        let staff = try DefaultScenario.recoverStaff(from: state, isvTenantID: isvTenantID)
        return state.read { dir in
            guard let app = dir.applications.values.first(where: { $0.displayName == "fabrikam-cmk" }) else { return nil }
            let identities = dir.managedIdentities.values.filter { $0.name.hasPrefix("fedbroker-fic-") }.sorted { $0.name < $1.name }
            let customers = ["contoso-kv", "northwind-kv"].compactMap { name -> DefaultScenario.Customer? in
                guard let vault = dir.vaults[name], let sp = dir.servicePrincipal(appID: app.appId, tenantID: vault.tenantId) else { return nil }
                return .init(tenantID: vault.tenantId, vaultName: vault.name, vaultURL: state.vaultURL(vault.name) ?? "", keyName: "cmk",
                             servicePrincipalObjectID: sp.objectId)
            }
            return DefaultScenario(
                isvTenantID: app.homeTenantId, appClientID: app.appId, appObjectID: app.objectId, managedIdentities: identities,
                customers: customers, ungrantedKeyName: "cmk-ungranted", adminAppID: staff.appID,
                adminAudience: DefaultScenario.adminAudienceURI, staffUserObjectIDs: staff.users)
        }
    }

    // MARK: Files under the state directory

    private func writeEnvironmentFile() throws {
        guard let dir = configuration.stateDirectory else { return }
        let caPath = dir.appendingPathComponent(Self.caFile).path
        var lines = ["# Written by `fedbroker-dev emulator`; source it: . \(dir.appendingPathComponent(Self.envFile).path)"]
        var env: [(String, String)] = [
            ("FEDBROKER_EMU_IMDS_URL", state.currentEndpoints.imds), ("FEDBROKER_EMU_AUTHORITY_URL", state.currentEndpoints.authority),
            ("FEDBROKER_EMU_GRAPH_URL", state.currentEndpoints.graph), ("FEDBROKER_EMU_CONTROL_URL", state.currentEndpoints.control),
            ("FEDBROKER_EMU_CA_BUNDLE", caPath),
            ("FEDBROKER_IMDS_URL", state.currentEndpoints.imds), ("FEDBROKER_AUTHORITY_URL", state.currentEndpoints.authority),
            ("FEDBROKER_GRAPH_URL", state.currentEndpoints.graph), ("FEDBROKER_CA_BUNDLE", caPath),
            ("FEDBROKER_VAULT_HOST_SUFFIXES", "localhost"),
        ]
        if let scenario = defaultScenario { env = scenario.environment(endpoints: state.currentEndpoints, caBundlePath: caPath) }
        for (name, value) in env { lines.append("export \(name)='\(value)'") }
        let url = dir.appendingPathComponent(Self.envFile)
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
    }

    struct Snapshot: Codable {
        var directory: Directory
        var signingKey: Data
    }

    static func loadSnapshot(from dir: URL) throws -> Snapshot? {
        let url = dir.appendingPathComponent(stateFile)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        do {
            return try JSONDecoder().decode(Snapshot.self, from: Data(contentsOf: url))
        } catch {
            throw ScenarioError(status: 500, code: "CorruptState", message: "Cannot read \(url.path): \(error). Move it away to start afresh.")
        }
    }

    /// Writes the snapshot atomically (temp file + rename), readable by the owner only: it holds
    /// the emulated vaults' private keys.
    static func saveSnapshot(_ snapshot: Snapshot, to dir: URL, logger: Logger) {
        let url = dir.appendingPathComponent(stateFile)
        do {
            let data = try JSONEncoder().encode(snapshot)
            let temp = dir.appendingPathComponent(".\(stateFile).tmp")
            guard FileManager.default.createFile(atPath: temp.path, contents: data, attributes: [.posixPermissions: 0o600]) else {
                throw CocoaError(.fileWriteUnknown)
            }
            guard rename(temp.path, url.path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        } catch {
            logger.error("could not persist emulator state", metadata: ["path": "\(url.path)", "error": "\(error)"])
        }
    }
}

/// A result that arrives once, for any number of waiters: the port a listener bound (or why it
/// could not), the endpoints once the emulator is ready.
final class OneShot<Value: Sendable>: Sendable {
    private enum State {
        case pending([CheckedContinuation<Value, any Error>])
        case done(Result<Value, any Error>)
    }
    private let state = Mutex<State>(.pending([]))

    func succeed(_ value: Value) { finish(.success(value)) }

    /// Returns false when the result had already arrived (for a listener: the error came after binding).
    @discardableResult
    func fail(_ error: any Error) -> Bool { finish(.failure(error)) }

    @discardableResult
    private func finish(_ result: Result<Value, any Error>) -> Bool {
        let waiters = state.withLock { s -> [CheckedContinuation<Value, any Error>]? in
            guard case .pending(let list) = s else { return nil }
            s = .done(result)
            return list
        }
        for w in waiters ?? [] { w.resume(with: result) }
        return waiters != nil
    }

    func wait() async throws -> Value {
        try await withCheckedThrowingContinuation { c in
            state.withLock { s in
                switch s {
                case .pending(var list):
                    list.append(c)
                    s = .pending(list)
                case .done(let r): c.resume(with: r)
                }
            }
        }
    }
}

extension AzureEmulator {
    /// Starts an emulator, waits until it is ready, runs `body` with it, and shuts it down
    /// (gracefully, also when `body` throws). For tests, the demo and benchmarks.
    public static func withRunning<T: Sendable>(
        configuration: Configuration, clock: any WallClock = SystemWallClock(), logger: Logger,
        _ body: (AzureEmulator, EmulatorState.Endpoints) async throws -> T
    ) async throws -> T {
        let emulator = try await AzureEmulator(configuration: configuration, clock: clock, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [emulator], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let result: Result<T, any Error>
            do {
                let endpoints = try await emulator.waitUntilReady()
                result = .success(try await body(emulator, endpoints))
            } catch {
                result = .failure(error)
            }
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            return try result.get()
        }
    }
}
