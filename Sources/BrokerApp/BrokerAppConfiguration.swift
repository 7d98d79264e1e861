import AdminAPI
import AzureIdentity
import BrokerServer
import BrokerStore
import FedBrokerCore
import Foundation
import NIOSSL

/// Everything the broker process is built from, after flags, environment and file were merged.
public struct BrokerAppConfiguration: Sendable {
    /// The admin HTTPS listener (or, for one node, a Unix socket).
    public struct Admin: Sendable {
        public var host = "127.0.0.1"
        public var port = 8443
        /// nil: plaintext HTTP, accepted on loopback only (tests, local trials).
        public var tls: TLSConfiguration?
        /// When set, the admin API is also served on this Unix socket, whose file mode (0600)
        /// is the only guard: whoever can open it acts with every role. Off by default.
        public var unixSocketPath: String?
        public var api: AdminAPIConfiguration

        public init(api: AdminAPIConfiguration) { self.api = api }
    }

    /// SRE jobs on FIC slots and the replica's place among its peers.
    public struct Slots: Sendable {
        /// Whether this replica takes slot jobs (any replica may; one runs each job at a time).
        public var runJobs = true
        /// The ISV's Entra tenant: the FICs' issuer, and where Graph tokens are obtained.
        /// Slot jobs need it; without it none runs here.
        public var isvTenantID: String?
        /// The application's object id for Graph (`/applications/{id}`); nil: addressed by its
        /// client id (`/applications(appId='…')`).
        public var applicationObjectID: String?
        public var leaseSeconds: Double = 30
        public var pollSeconds: Double = 1
        public var movesPerSecond: Double = 5
        public var propagationSeconds: Double = 600
        public var maximumTokenLifetimeSeconds: Double = 5400
        /// Federated token files (AKS workload identity) by managed identity client id; the
        /// others get their assertions from IMDS.
        public var tokenFiles: [String: String] = [:]
        public init() {}
    }

    public var store: StoreConfiguration
    /// The audit writer's bounds and where it keeps records the database rejected.
    public var audit = AuditWriter.Configuration()
    /// The local audit journal key operations write to before answering (nil: straight to the
    /// store through `audit`, with the store's commit on every key operation's path).
    public var auditJournal: AuditJournal.Configuration?
    public var service: BrokerService.Configuration
    public var transport = BrokerTransportServer.Configuration()
    /// Seconds in-flight calls get to finish on shutdown.
    public var drainSeconds: Double = 10
    /// nil: no admin listener (a pure serving replica).
    public var admin: Admin?
    /// FIC slots `serve` makes sure exist and are active at start, named `fic-1`, `fic-2`, … in
    /// order: the bootstrap until SREs have the slot commands. A slot whose managed identity is
    /// already recorded is left as it is.
    public var bootstrapSlots: [FICSlotIdentity] = []
    public var slots = Slots()
    /// Re-probing `access_lost` tenants (tenants.reprobeMinSeconds / tenants.reprobeMaxSeconds).
    public var accessRecovery = AccessRecovery.Configuration()
    /// This process among the replicas sharing the store: the slot-job lease owner, and one of
    /// the replicas a vault's budget is divided among.
    public var replicaID = BrokerAppConfiguration.defaultReplicaID()
    /// How often the replica announces itself; it counts as gone after three missed beats.
    public var heartbeatSeconds: Double = 5
    /// How often the state gauges (slots, tenants, the open slot job, vault circuits, readiness)
    /// are refreshed from the store and the service; 0: never (docs/metrics.md).
    public var metricsRefreshSeconds: Double = 10
    /// Apply missing migrations at start (a deployment with a migration job turns this off).
    public var migrateOnStart = true

    /// `hostname-pid-random`: unique per process, readable in logs and in the audit of a takeover.
    public static func defaultReplicaID() -> String {
        let host = ProcessInfo.processInfo.hostName.prefix(40).filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }
        let random = UUID().uuidString.prefix(8).lowercased()
        return "\(host.isEmpty ? "fedbroker" : host)-\(ProcessInfo.processInfo.processIdentifier)-\(random)"
    }

    public init(store: StoreConfiguration, service: BrokerService.Configuration) {
        self.store = store
        self.service = service
    }
}
