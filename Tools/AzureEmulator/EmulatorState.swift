import FedBrokerCore
import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// The shared state behind every emulated endpoint: the directory, the signer, the clock,
/// faults, counters and rate windows. One lock guards the directory; no `await` happens
/// while it is held.
public final class EmulatorState: Sendable {
    let clock: any WallClock
    let authority: TokenAuthority
    public let faults = FaultInjector()
    public let counters = RequestCounters()
    let logger: Logger
    private let directory: Mutex<Directory>
    private let imdsWindow: Mutex<RateWindow>
    private let imdsInFlight = Mutex<Int>(0)
    private let vaultWindows = Mutex<[String: RateWindow]>([:])
    private let endpoints = Mutex<Endpoints>(Endpoints())
    private let persistence: (@Sendable (Directory, Data) -> Void)?
    private let persistLock = Mutex<Void>(())
    let vaultLauncher = Mutex<VaultListenerLauncher?>(nil)

    /// Where each emulated service listens, filled in as listeners bind.
    public struct Endpoints: Sendable {
        public var imds: String = ""
        public var authority: String = ""
        public var graph: String = ""
        public var control: String = ""
        public var vaults: [String: String] = [:]  // lowercased vault name → URL
    }

    init(
        directory: Directory, authority: TokenAuthority, clock: any WallClock, logger: Logger,
        persistence: (@Sendable (Directory, Data) -> Void)?
    ) {
        self.directory = Mutex(directory)
        self.authority = authority
        self.clock = clock
        self.logger = logger
        self.persistence = persistence
        self.imdsWindow = Mutex(RateWindow(limit: directory.settings.imdsRequestsPerSecond, windowSeconds: 1))
    }

    // MARK: Directory access

    /// Reads the directory.
    public func read<T>(_ body: (Directory) throws -> T) rethrows -> T {
        try directory.withLock { try body($0) }
    }

    /// Changes the directory and persists the result when a state dir is configured.
    @discardableResult
    public func mutate<T>(_ body: (inout Directory) throws -> T) rethrows -> T {
        let result = try directory.withLock { try body(&$0) }
        if let persistence {
            // Serialized, and reading the directory afresh: the last write always holds the newest state.
            persistLock.withLock { _ in persistence(directory.withLock { $0 }, authority.privateKeyDER) }
        }
        return result
    }

    var now: Date { clock.now }

    // MARK: Endpoints

    public var currentEndpoints: Endpoints { endpoints.withLock { $0 } }
    func setEndpoints(_ body: (inout Endpoints) -> Void) { endpoints.withLock { body(&$0) } }

    /// The base URL of a vault's data plane (`https://localhost:PORT`), which is also its `kid` prefix.
    func vaultURL(_ name: String) -> String? {
        endpoints.withLock { $0.vaults[name.lowercased()] }
    }

    // MARK: Limits

    /// IMDS: 20 requests per second and 5 concurrent for the identity category.
    func imdsAdmit() -> Bool {
        let limits = read { ($0.settings.imdsRequestsPerSecond, $0.settings.imdsMaxConcurrent) }
        let second = clock.unixSeconds
        let inFlightOK = imdsInFlight.withLock { n -> Bool in
            guard n < limits.1 else { return false }
            n += 1
            return true
        }
        guard inFlightOK else { return false }
        let rateOK = imdsWindow.withLock { window -> Bool in
            if window.limit != limits.0 { window = RateWindow(limit: limits.0, windowSeconds: 1) }
            return window.admit(at: second)
        }
        if !rateOK { imdsDone() }
        return rateOK
    }

    func imdsDone() { imdsInFlight.withLock { $0 -= 1 } }

    /// Counts one transaction against the vault's budget; false when it is spent (429 Throttled).
    func vaultAdmit(_ vault: Directory.Vault) -> Bool {
        let second = clock.unixSeconds
        return vaultWindows.withLock { windows in
            let key = vault.name.lowercased()
            var window = windows[key] ?? RateWindow(limit: vault.budget, windowSeconds: vault.budgetWindowSeconds)
            if window.limit != vault.budget || window.windowSeconds != vault.budgetWindowSeconds {
                window = RateWindow(limit: vault.budget, windowSeconds: vault.budgetWindowSeconds)
            }
            let ok = window.admit(at: second)
            windows[key] = window
            return ok
        }
    }

    // MARK: Faults

    /// A scripted failure to answer with.
    struct InjectedFault {
        var status: Int
        var retryAfter: Int?
    }

    /// Applies the first matching fault: waits its latency, resets the connection (and throws)
    /// for a reset fault, and returns the status to answer with, or nil to carry on.
    func injectFault(
        service: FaultRule.Service, operation: String, target: String?, channel: any Channel
    ) async throws -> InjectedFault? {
        guard let rule = faults.take(service: service, operation: operation, target: target) else { return nil }
        logger.info(
            "injecting fault",
            metadata: ["service": "\(service.rawValue)", "operation": "\(operation)", "fault": "\(rule.id)"])
        if rule.latencyMilliseconds > 0 {
            try? await Task.sleep(for: .milliseconds(rule.latencyMilliseconds))
        }
        if rule.resetConnection {
            await channel.resetConnection()
            throw ConnectionResetByFault()
        }
        return rule.status.map { InjectedFault(status: $0, retryAfter: rule.retryAfterSeconds) }
    }
}
