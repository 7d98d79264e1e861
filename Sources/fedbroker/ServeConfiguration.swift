import AdminAPI
import AzureHTTP
import AzureIdentity
import BrokerApp
import BrokerServer
import BrokerWire
import BrokerStore
import FedBrokerCore
import Foundation
import Logging

/// Everything `fedbroker serve` is configured with, after flags, environment, config file and
/// defaults were merged (see `ServeConfiguration+ConfigReader.swift` for the keys). One value,
/// so what the process runs with can be logged at start and checked before anything binds.
struct ServeConfiguration: Sendable {
    var listenHost = "127.0.0.1"
    var listenPort = 7443
    var tlsCertificatePath: String?
    var tlsKeyPath: String?
    var clientCAPath: String?
    /// The client CA's CRL (server.crlFile), checked at every handshake.
    var crlPath: String?
    /// Where callers' identities come from, the transport's timeouts and caps (server.*): the
    /// listener's own configuration, copied into the assembly as it is.
    var transport = BrokerTransportServer.Configuration()
    /// How often the TLS files are read again for changes (server.tlsReloadSeconds).
    var tlsReloadSeconds: Double = 5
    var plaintext = false
    var maximumConcurrentStreams: UInt32 = 256
    var drainSeconds: Double = 10
    var databaseURL: String?
    var dataDirectory = "fedbroker-data"
    /// Apply missing migrations at start; false where a migration job owns the schema.
    var migrateOnStart = true
    /// store.connectTimeoutSeconds; nil: the URL's connect_timeout, else 10 s.
    var storeConnectTimeoutSeconds: Double?
    /// audit.* (the quarantine directory defaults to dataDirectory when nil).
    var audit = AuditWriter.Configuration()
    /// audit.journal / audit.journalDirectory / audit.journalMaxBytes: the local audit journal
    /// (on by default, in dataDirectory/audit-journal); nil: audit records go straight to the store.
    var auditJournal: AuditJournal.Configuration?
    var logLevel = "info"
    /// Core dumps stay possible (process.allowCoreDumps); off by default: a core holds plaintext keys.
    var allowCoreDumps = false
    /// How often the state gauges are refreshed (metrics.refreshSeconds).
    var metricsRefreshSeconds: Double = 10
    var azure = AzureEnvironment()
    var service: BrokerService.Configuration
    /// The admin listener; nil when no staff tenant is configured (a serving-only replica).
    var admin: AdminSettings?
    /// `clientId:principalId` of managed identities to bootstrap as active FIC slots.
    var bootstrapSlots: [(clientID: String, principalID: String)] = []
    /// The ISV's Entra tenant (the FICs' issuer); defaults to admin.staffTenantID.
    var isvTenantID: String?
    /// Slot jobs on this replica (slots.*).
    var slots = BrokerAppConfiguration.Slots()
    var heartbeatSeconds: Double = 5
    /// Re-probing `access_lost` tenants (tenants.reprobeMinSeconds, tenants.reprobeMaxSeconds).
    var accessRecovery = AccessRecovery.Configuration()

    struct AdminSettings: Sendable {
        var listenHost = "127.0.0.1"
        var listenPort = 8443
        var tlsCertificatePath: String?
        var tlsKeyPath: String?
        var plaintext = false
        var unixSocketPath: String?
        var api: AdminAPIConfiguration
    }

    init() { service = BrokerService.Configuration(environment: AzureEnvironment()) }

    /// Checks what no single key can: TLS is all or nothing, and plaintext only on loopback.
    func validated() throws -> ServeConfiguration {
        if plaintext {
            guard [tlsCertificatePath, tlsKeyPath, clientCAPath, crlPath].allSatisfy({ $0 == nil }) else {
                throw ConfigurationError(key: "server.plaintext", "plaintext excludes server.tlsCert, server.tlsKey, server.clientCA and server.crlFile")
            }
            guard LoopbackHost.contains(listenHost) else {
                throw ConfigurationError(key: "server.listen", "plaintext is allowed on loopback only, not on \(listenHost)")
            }
        } else {
            guard tlsCertificatePath != nil, tlsKeyPath != nil, clientCAPath != nil else {
                throw ConfigurationError(
                    key: "server.tlsCert", "give server.tlsCert, server.tlsKey and server.clientCA (mutual TLS), or server.plaintext on loopback")
            }
        }
        guard service.cache.maximumAge > 0, service.cache.maximumEntries >= 0, service.cache.maximumUses > 0 else {
            throw ConfigurationError(key: "cache", "cache.maxAgeSeconds and cache.maxUses must be positive, cache.maxEntries not negative")
        }
        guard maximumConcurrentStreams > 0, service.tenantConcurrency > 0 else {
            throw ConfigurationError(key: "server.maxStreams", "server.maxStreams and vault.tenantConcurrency must be positive")
        }
        guard service.azureAttemptTimeout > 0 else {
            throw ConfigurationError(key: "vault.attemptTimeoutSeconds", "must be positive (every Azure call would time out at once)")
        }
        guard drainSeconds >= 0, drainSeconds.isFinite else {
            throw ConfigurationError(key: "server.drainSeconds", "must be zero or more")
        }
        try validateTransport()
        guard service.recordMaximumAge >= 0 else {
            throw ConfigurationError(key: "store.recordMaxAgeSeconds", "must be zero or more")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ConfigurationError(key: "log.level", "'\(logLevel)' is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let databaseURL {
            // The URL may hold a password: the message names the key, never the value (the
            // store's own messages name a parameter or the sslrootcert path, never the password).
            do {
                _ = try StoreConfiguration(databaseURL: databaseURL)
            } catch let error as BrokerError {
                throw ConfigurationError(key: "store.databaseURL", error.message)
            } catch {
                throw ConfigurationError(key: "store.databaseURL", "not a postgres://USER@HOST:PORT/DB?sslmode=… or sqlite:PATH URL")
            }
        }
        if let seconds = storeConnectTimeoutSeconds {
            guard seconds >= 0.1, seconds <= 3600 else {
                throw ConfigurationError(key: "store.connectTimeoutSeconds", "must be 0.1-3600")
            }
        }
        guard audit.maximumQueueBytes >= 1 << 20 else {
            throw ConfigurationError(key: "audit.maxQueueBytes", "must be at least 1048576 (1 MiB)")
        }
        if let auditJournal, auditJournal.maximumBytes < 16 << 20 {
            throw ConfigurationError(key: "audit.journalMaxBytes", "must be at least 16777216 (16 MiB)")
        }
        if let admin {
            if admin.plaintext {
                guard LoopbackHost.contains(admin.listenHost) else {
                    throw ConfigurationError(key: "admin.plaintext", "plaintext is allowed on loopback only, not on \(admin.listenHost)")
                }
            } else if admin.tlsCertificatePath == nil || admin.tlsKeyPath == nil {
                throw ConfigurationError(key: "admin.tlsCert", "give admin.tlsCert and admin.tlsKey (or server.tlsCert/tlsKey), or admin.plaintext on loopback")
            }
            guard EntraTenantID(rawValue: admin.api.staffTenantID) != nil else {
                throw ConfigurationError(key: "admin.staffTenantID", "must be the ISV's Entra tenant id (a GUID)")
            }
            guard !admin.api.audiences.isEmpty else {
                throw ConfigurationError(key: "admin.audiences", "name the admin API's app id URI and/or client id")
            }
            guard admin.api.validationFreshness > 0 else {
                throw ConfigurationError(key: "admin.validationFreshnessSeconds", "must be positive")
            }
        }
        if !bootstrapSlots.isEmpty, isvTenantID.flatMap(EntraTenantID.init(rawValue:)) == nil {
            throw ConfigurationError(key: "azure.isvTenantID", "slots.bootstrap needs the ISV's tenant id (azure.isvTenantID or admin.staffTenantID)")
        }
        guard slots.leaseSeconds >= 3, slots.leaseSeconds.isFinite else {
            throw ConfigurationError(key: "slots.leaseSeconds", "must be at least 3 (the lease is renewed every third of it)")
        }
        guard slots.movesPerSecond > 0, slots.movesPerSecond.isFinite, slots.propagationSeconds >= 0, slots.propagationSeconds.isFinite,
            slots.maximumTokenLifetimeSeconds >= 0, slots.maximumTokenLifetimeSeconds.isFinite
        else {
            throw ConfigurationError(key: "slots", "slots.movesPerSecond must be positive; slots.propagationSeconds and slots.maxTokenLifetimeSeconds zero or more")
        }
        guard service.vaultBudget > 0, service.vaultBudgetWindowSeconds > 0 else {
            throw ConfigurationError(key: "vault.budget", "vault.budget and vault.budgetWindowSeconds must be positive")
        }
        guard heartbeatSeconds >= 0.1, heartbeatSeconds.isFinite else {
            throw ConfigurationError(key: "replica.heartbeatSeconds", "must be at least 0.1")
        }
        guard metricsRefreshSeconds >= 1, metricsRefreshSeconds <= 300 else {
            throw ConfigurationError(key: "metrics.refreshSeconds", "must be 1-300 (5-15 suits a 15-30 s scrape)")
        }
        if let canary = service.readiness.canary {
            guard canary.intervalSeconds >= 10, canary.intervalSeconds.isFinite else {
                throw ConfigurationError(key: "health.canaryIntervalSeconds", "must be at least 10 (each run costs the canary vault three transactions)")
            }
            guard let url = URL(string: canary.vaultURL), url.scheme == "https", url.host != nil else {
                throw ConfigurationError(key: "health.canaryVaultURL", "must be the https URL of a vault in the ISV's own tenant")
            }
            guard EntraTenantID(rawValue: canary.tenantID) != nil else {
                throw ConfigurationError(key: "azure.isvTenantID", "the canary needs the ISV's tenant id (azure.isvTenantID or admin.staffTenantID)")
            }
        } else if service.readiness.canaryRequired {
            throw ConfigurationError(key: "health.canaryRequired", "needs a canary: set health.canaryVaultURL and health.canaryKeyName")
        }
        guard azure.applicationClientID != nil else {
            throw ConfigurationError(key: "azure.appClientID", "no application client id: set azure.appClientID or FEDBROKER_APP_CLIENT_ID")
        }
        return self
    }
}

extension ServeConfiguration {
    /// The `server.*` timeouts and caps: each positive and finite (at most a day for a timeout),
    /// the default request timeout within the maximum.
    func validateTransport() throws {
        let day = 86_400.0
        let timeouts: [(String, Double)] = [
            ("server.handshakeTimeoutSeconds", transport.handshakeTimeout), ("server.prefaceTimeoutSeconds", transport.connection.prefaceTimeout),
            ("server.partialFrameTimeoutSeconds", transport.connection.partialFrameTimeout),
            ("server.idleTimeoutSeconds", transport.connection.idleTimeout),
            ("server.defaultRequestTimeoutSeconds", transport.connection.defaultRequestTimeout),
            ("server.maxRequestTimeoutSeconds", transport.connection.maximumRequestTimeout),
        ]
        for (key, value) in timeouts where !(value > 0 && value <= day) {
            throw ConfigurationError(key: key, "must be more than 0 and at most \(Int(day)) seconds")
        }
        guard transport.connection.defaultRequestTimeout <= transport.connection.maximumRequestTimeout else {
            throw ConfigurationError(key: "server.defaultRequestTimeoutSeconds", "must not exceed server.maxRequestTimeoutSeconds")
        }
        let caps: [(String, Int)] = [
            ("server.maxConnections", transport.maximumConnections), ("server.maxConnectionsPerCaller", transport.perCaller.maximumConnections),
            ("server.maxRequestsPerCaller", transport.perCaller.maximumRequests),
        ]
        for (key, value) in caps where value < 1 {
            throw ConfigurationError(key: key, "must be at least 1")
        }
        guard tlsReloadSeconds >= 0, tlsReloadSeconds <= day else {
            throw ConfigurationError(key: "server.tlsReloadSeconds", "must be 0 (never) to \(Int(day))")
        }
    }
}

/// A configuration value that cannot be used, named by its key so the operator knows what to fix.
struct ConfigurationError: Error, CustomStringConvertible {
    let key: String
    let message: String
    init(key: String, _ message: String) {
        self.key = key
        self.message = message
    }
    var description: String { "configuration \(key): \(message)" }
}
