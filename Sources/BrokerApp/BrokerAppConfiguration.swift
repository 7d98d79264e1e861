import AdminAPI
import AzureIdentity
import BrokerServer
import BrokerStore
import FedBrokerCore
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

    public var store: StoreConfiguration
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
    /// Apply missing migrations at start (a deployment with a migration job turns this off).
    public var migrateOnStart = true

    public init(store: StoreConfiguration, service: BrokerService.Configuration) {
        self.store = store
        self.service = service
    }
}
