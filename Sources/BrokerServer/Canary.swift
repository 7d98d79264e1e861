import AzureIdentity
import BrokerStore
import FedBrokerCore
import Foundation
import KeyVault
import Logging
import Synchronization

/// The deep canary: the whole chain on a key the ISV owns in its own vault, in its own tenant —
/// an active slot's assertion → the exchange in the ISV's tenant → the vault's challenge (it must
/// answer for the ISV's tenant) → get key → wrap and unwrap of 32 random bytes — at most once per
/// `intervalSeconds`. Never on a customer's vault: a vault that holds a registered tenant's key,
/// or answers for another tenant, is refused before any key operation.
///
/// It walks the chain with `ChainProbe` and fresh tokens (no cache), so what it proves is that
/// the chain works now, not that a token was cached. Its last result is a readiness check.
public final class Canary: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// The ISV's Entra tenant, where the canary key's vault lives.
        public var tenantID: String
        public var vaultURL: String
        public var keyName: String
        /// The least time between two runs.
        public var intervalSeconds: Double = 60
        /// The longest one run may take.
        public var timeoutSeconds: Double = 20

        public init(tenantID: String, vaultURL: String, keyName: String) {
            self.tenantID = tenantID
            self.vaultURL = vaultURL
            self.keyName = keyName
        }
    }

    public struct Result: Sendable, Equatable {
        public var finishedAt: Date
        public var ok: Bool
        /// The step that failed with its stable code, or the round trip's time.
        public var detail: String

        public init(finishedAt: Date, ok: Bool, detail: String) {
            self.finishedAt = finishedAt
            self.ok = ok
            self.detail = detail
        }
    }

    private struct State {
        var last: Result?
        var lastStarted: Date?
        var running = false
    }

    public let configuration: Configuration
    let store: any BrokerStore
    let sources: AssertionSourceCatalog
    let probe: ChainProbe
    let clock: any WallClock
    let logger: Logger
    private let state = Mutex(State())

    public init(
        configuration: Configuration, store: any BrokerStore, sources: AssertionSourceCatalog, probe: ChainProbe,
        clock: any WallClock = SystemWallClock(), logger: Logger
    ) {
        self.configuration = configuration
        self.store = store
        self.sources = sources
        self.probe = probe
        self.clock = clock
        self.logger = logger
    }

    /// The last completed run's result.
    public var lastResult: Result? { state.withLock { $0.last } }

    /// Runs the chain once, unless a run is under way or the last one started less than
    /// `intervalSeconds` ago; returns the latest result either way.
    @discardableResult
    public func runIfDue() async -> Result? {
        let now = clock.now
        let due = state.withLock { s -> Bool in
            guard !s.running, Self.isDue(lastStarted: s.lastStarted, now: now, intervalSeconds: configuration.intervalSeconds) else {
                return false
            }
            s.running = true
            s.lastStarted = now
            return true
        }
        guard due else { return lastResult }
        let result = await run()
        let previous = state.withLock { s -> Result? in
            defer {
                s.last = result
                s.running = false
            }
            return s.last
        }
        if !result.ok, previous?.ok != false {
            logger.warning("canary failed", metadata: ["fb.canary": "\(result.detail)"])
        } else if result.ok, previous?.ok == false {
            logger.info("canary succeeds again")
        }
        return result
    }

    static func isDue(lastStarted: Date?, now: Date, intervalSeconds: Double) -> Bool {
        guard let lastStarted else { return true }
        return now < lastStarted || now.timeIntervalSince(lastStarted) >= intervalSeconds
    }

    private func run() async -> Result {
        let slots: [FICSlot]
        let customerVaults: Set<String>
        do {
            slots = try await store.slots()
            customerVaults = Set(try await store.tenants().map { $0.key.vaultURL.lowercased() })
        } catch {
            return Result(finishedAt: clock.now, ok: false, detail: "the store could not be read (\(Readiness.ProbeFailure(error)))")
        }
        guard let slot = slots.first(where: { $0.state == .active }) else {
            return Result(finishedAt: clock.now, ok: false, detail: "no active FIC slot to run the chain through")
        }
        let key = VaultKeyID(vaultURL: configuration.vaultURL, name: configuration.keyName)
        if let refusal = Self.refusal(vaultURL: key.vaultURL, customerVaults: customerVaults) {
            return Result(finishedAt: clock.now, ok: false, detail: refusal)
        }
        let report = await probe.run(
            tenantID: configuration.tenantID, key: key, source: sources.source(forClientID: slot.identity.managedIdentityClientID),
            timeout: configuration.timeoutSeconds)
        return Self.result(of: report, slot: slot.id, at: clock.now)
    }

    /// Why the canary must not touch `vaultURL`: it holds a registered customer's key.
    static func refusal(vaultURL: String, customerVaults: Set<String>) -> String? {
        guard customerVaults.contains(vaultURL.lowercased()) else { return nil }
        return "refused: the canary vault holds a registered customer's key; configure a vault of the ISV's own"
    }

    /// A chain probe's report as the canary's result: it succeeded when the round trip did (the
    /// key's other checks, such as purge protection, are the onboarding's business, not liveness).
    static func result(of report: ChainProbe.Report, slot: FICSlotID, at now: Date) -> Result {
        if let roundTrip = report.steps.last, roundTrip.name == "round trip", roundTrip.ok {
            let total = report.steps.reduce(0) { $0 + $1.milliseconds }
            return Result(finishedAt: now, ok: true, detail: "round trip through slot \(slot) in \(Int(total.rounded())) ms")
        }
        // The chain stops at its first failing step, so the last step is the one that failed.
        let failed = report.steps.last
        return Result(
            finishedAt: now, ok: false,
            detail: "\(failed?.name ?? "chain") failed through slot \(slot) (\(failed?.code ?? "no code"))")
    }
}
