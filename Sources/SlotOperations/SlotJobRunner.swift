import AzureIdentity
import BrokerStore
import FedBrokerCore
import Foundation
import Logging

/// Runs SRE jobs on FIC slots (add, drain, retire, rotate) on whichever replica holds the job's
/// lease, one step at a time, each step's outcome committed before the next starts, so a replica
/// killed at any moment leaves a job another replica finishes from its last committed step.
///
/// Invariants it keeps: a tenant moves only once a token for its directory was obtained through
/// its new slot (so no tenant is ever without a usable slot), a tenant's slot is one column
/// changed in one transaction (never on two slots), the store refuses a 21st non-retired slot,
/// and a slot is retired only when empty, draining, and after the longest token lifetime.
public final class SlotJobRunner: Sendable {
    public struct Configuration: Sendable {
        /// This replica's name: the lease owner, in logs and in the audit trail of a takeover.
        public var owner: String
        /// The ISV's tenant: where the FICs' issuer is, and where new credentials are proven.
        public var isvTenantID: String
        /// The multi-tenant application's client id.
        public var applicationID: String
        /// How long a lease lasts without renewal: a replica that dies loses its job this long after.
        public var leaseSeconds: Double = 30
        /// How often an idle runner looks for an open job.
        public var pollInterval: Double = 1
        /// Tenant moves per second in a drain: each is an IMDS assertion (cached) and an Entra
        /// token request, so the pace keeps a drain well inside Entra's and IMDS's limits.
        public var movesPerSecond: Double = 5
        /// How long after creating a FIC "no matching federated identity record" (AADSTS70021) is
        /// waited out: Microsoft documents "several minutes" of propagation.
        public var propagationSeconds: Double = 600
        /// The longest lifetime of a token issued through a slot: retire waits this long after the
        /// slot's last tenant left. Entra's access tokens live 60-90 minutes.
        public var maximumTokenLifetime: Double = 5400
        /// The longest one Azure call (Graph, IMDS, Entra) may take.
        public var callTimeout: Double = 30
        /// Consecutive transient failures of one step before the job fails.
        public var maximumStepAttempts = 8
        /// What a new credential's proof asks a token for, in the ISV's tenant.
        public var proofResource = "https://graph.microsoft.com"
        /// What a tenant's move proof asks a token for, in the customer's tenant.
        public var vaultResource = "https://vault.azure.net"

        /// The FIC issuer of a managed identity of the ISV's tenant.
        public var issuer: String { "https://login.microsoftonline.com/\(isvTenantID)/v2.0" }

        public init(owner: String, isvTenantID: String, applicationID: String) {
            self.owner = owner
            self.isvTenantID = isvTenantID
            self.applicationID = applicationID
        }
    }

    let configuration: Configuration
    let store: any BrokerStore
    let graph: any FederatedCredentialManaging
    let tokens: CrossTenantTokenProvider
    let sources: AssertionSourceCatalog
    let clock: any WallClock
    let logger: Logger
    let doorbell = Doorbell()

    public init(
        configuration: Configuration, store: any BrokerStore, graph: any FederatedCredentialManaging,
        tokens: CrossTenantTokenProvider, sources: AssertionSourceCatalog, clock: any WallClock, logger: Logger
    ) {
        self.configuration = configuration
        self.store = store
        self.graph = graph
        self.tokens = tokens
        self.sources = sources
        self.clock = clock
        self.logger = logger
    }

    /// Looks for an open job now instead of at the next poll (the admin API rings after a submit).
    public func wake() { doorbell.ring() }

    /// Takes and runs open jobs until cancelled.
    public func run() async {
        while !Task.isCancelled {
            do {
                if let job = try await store.claimSlotJob(owner: configuration.owner, leaseSeconds: configuration.leaseSeconds) {
                    try await work(on: job)
                    continue
                }
            } catch is CancellationError {
                return
            } catch let error as BrokerError where error.code == .leaseLost {
                logger.warning("slot job lease lost; another replica goes on with it", metadata: ["fb.error": "\(error)"])
            } catch {
                logger.warning("slot job runner failed; looking again shortly", metadata: ["fb.error": "\(error)"])
            }
            await doorbell.wait(upTo: configuration.pollInterval, clock: clock)
        }
    }

    /// Runs one claimed job to its end while renewing its lease; stops as soon as the lease is lost.
    func work(on claimed: SlotJob) async throws {
        logger.notice(
            "slot job started on this replica",
            metadata: ["fb.job": "\(claimed.id)", "fb.kind": "\(claimed.kind.rawValue)", "fb.step": "\(claimed.step.rawValue)"])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.execute(claimed) }
            group.addTask { try await self.keepLease(claimed.id) }
            // Whichever ends first ends both: the job is done, or the lease is gone and the work
            // must stop before it acts on a job another replica now runs.
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    /// Renews this job's lease every third of its length, riding out store errors while the lease
    /// is still live; throws `leaseLost` once it is not renewed (finished, taken over, or expired).
    func keepLease(_ id: SlotJobID) async throws {
        var renewedAt = clock.now
        while true {
            try await clock.sleep(seconds: configuration.leaseSeconds / 3)
            do {
                guard try await store.renewSlotJobLease(id, owner: configuration.owner, leaseSeconds: configuration.leaseSeconds) else {
                    if try await store.slotJob(id).state.isFinished {
                        // The job ended (execute saved it): wait to be cancelled by `work`.
                        try await clock.sleep(seconds: configuration.leaseSeconds)
                        continue
                    }
                    throw BrokerError(.leaseLost, "slot job \(id) was taken over by another replica, or its lease expired")
                }
                renewedAt = clock.now
            } catch let error as BrokerError where error.code == .leaseLost {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                guard clock.now.timeIntervalSince(renewedAt) < configuration.leaseSeconds * 2 / 3 else {
                    throw BrokerError(.leaseLost, "the lease of slot job \(id) could not be renewed: \(Self.describe(error))")
                }
                logger.warning("renewing a slot job's lease failed; retrying", metadata: ["fb.job": "\(id)", "fb.error": "\(Self.describe(error))"])
            }
        }
    }

    /// Runs the job's steps from the one recorded until it succeeds or fails.
    func execute(_ claimed: SlotJob) async throws {
        var job = claimed
        var attempts = 0
        while job.state == .running {
            try Task.checkCancellation()
            do {
                job = try await runStep(job)
                attempts = 0
            } catch let failure as SlotJobStepFailure {
                // The step may have saved progress (a newer version) before it failed.
                job = try await fail(try await store.slotJob(job.id), reason: failure.reason)
            } catch let error as BrokerError where error.code == .leaseLost {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch let error as BrokerError where !Self.isTransient(error) {
                job = try await fail(try await store.slotJob(job.id), reason: error.message)
            } catch {
                attempts += 1
                guard attempts < configuration.maximumStepAttempts else {
                    job = try await fail(
                        try await store.slotJob(job.id), reason: "\(job.step.rawValue) kept failing: \(Self.describe(error))")
                    continue
                }
                let delay = min(30, pow(2, Double(attempts - 1)))
                logger.warning(
                    "slot job step failed; retrying",
                    metadata: [
                        "fb.job": "\(job.id)", "fb.step": "\(job.step.rawValue)", "fb.attempt": "\(attempts)",
                        "fb.error": "\(Self.describe(error))",
                    ])
                // The job is re-read: a failed save may have committed.
                job = try await store.slotJob(job.id)
                try await clock.sleep(seconds: delay)
            }
        }
        let level: Logger.Level = job.state == .succeeded ? .notice : .error
        logger.log(
            level: level, "slot job \(job.state.rawValue)",
            metadata: ["fb.job": "\(job.id)", "fb.kind": "\(job.kind.rawValue)", "fb.step": "\(job.step.rawValue)", "fb.message": "\(job.message)"])
    }

    static func isTransient(_ error: BrokerError) -> Bool {
        [.databaseUnavailable, .storeTimeout, .transactionConflict, .versionConflict, .storeFailure].contains(error.code)
    }

    /// A bounded, single-line description of an error for job messages and logs.
    static func describe(_ error: any Error) -> String {
        BoundedText.escaped((error as? BrokerError)?.message ?? String(describing: error), limit: 300)
    }

    // MARK: Saving

    func save(_ job: SlotJob, audit: SlotJobAuditEntry? = nil) async throws -> SlotJob {
        try await store.saveSlotJob(job, owner: configuration.owner, leaseSeconds: configuration.leaseSeconds, audit: audit)
    }

    func advance(_ job: SlotJob, _ message: String) async throws -> SlotJob {
        let next = job.advanced(at: clock.now, message: message)
        return try await save(
            next, audit: SlotJobAuditEntry(operation: "slot.job.\(job.step.rawValue)", tenant: nil, detail: "done: \(message)"))
    }

    func fail(_ job: SlotJob, reason: String) async throws -> SlotJob {
        let failed = job.failed(at: clock.now, reason: reason)
        return try await save(
            failed,
            audit: SlotJobAuditEntry(operation: "slot.job.failed", tenant: nil, detail: "step=\(job.step.rawValue) reason=\(reason)", failed: true))
    }

    func deadline() -> Date { clock.now.addingTimeInterval(configuration.callTimeout) }

    func findSlot(_ id: FICSlotID) async throws -> FICSlot? {
        do {
            return try await store.slot(id)
        } catch let error as BrokerError where error.code == .notFound {
            return nil
        }
    }
}

/// A step that cannot succeed as things are: the job stops with this reason for the SRE.
public struct SlotJobStepFailure: Error, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = String(reason.prefix(512)) }
    public var description: String { reason }
}
