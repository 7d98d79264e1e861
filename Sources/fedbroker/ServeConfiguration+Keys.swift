import Configuration
import Foundation

extension ServeConfiguration {
    /// Every key `init(reader:)` reads. A configuration file naming any other key is refused, so
    /// a misspelt key fails the start instead of silently keeping its default. The smoke test
    /// (scripts/smoke-emulator.sh) checks this list against the keys the reader asks for.
    static let knownKeys: [String] = [
        "admin.applicationDisplayName",
        "admin.audiences",
        "admin.consentRedirectURI",
        "admin.geos",
        "admin.listen",
        "admin.plaintext",
        "admin.staffTenantID",
        "admin.tlsCert",
        "admin.tlsKey",
        "admin.unixSocket",
        "admin.validationFreshnessSeconds",
        "audit.journal",
        "audit.journalDirectory",
        "audit.journalMaxBytes",
        "audit.journalSync",
        "audit.journalSyncIntervalSeconds",
        "audit.maxQueueBytes",
        "audit.quarantineDirectory",
        "azure.appClientID",
        "azure.authorityURL",
        "azure.caBundle",
        "azure.graphURL",
        "azure.imdsURL",
        "azure.isvTenantID",
        "azure.vaultHostSuffixes",
        "cache.maxAgeSeconds",
        "cache.maxEntries",
        "cache.maxUses",
        "health.canaryIntervalSeconds",
        "health.canaryKeyName",
        "health.canaryRequired",
        "health.canaryVaultURL",
        "log.level",
        "metrics.refreshSeconds",
        "process.allowCoreDumps",
        "replica.heartbeatSeconds",
        "server.answerReserveSeconds",
        "server.callerIdentity",
        "server.clientCA",
        "server.crlFile",
        "server.defaultRequestTimeoutSeconds",
        "server.drainSeconds",
        "server.handshakeTimeoutSeconds",
        "server.idleTimeoutSeconds",
        "server.listen",
        "server.maxConnections",
        "server.maxConnectionsPerCaller",
        "server.maxRequestTimeoutSeconds",
        "server.maxRequestsPerCaller",
        "server.maxStreams",
        "server.partialFrameTimeoutSeconds",
        "server.plaintext",
        "server.prefaceTimeoutSeconds",
        "server.tlsCert",
        "server.tlsKey",
        "server.tlsReloadSeconds",
        "slots.applicationObjectID",
        "slots.bootstrap",
        "slots.leaseSeconds",
        "slots.maxTokenLifetimeSeconds",
        "slots.movesPerSecond",
        "slots.propagationSeconds",
        "slots.runJobs",
        "slots.tokenFiles",
        "store.connectTimeoutSeconds",
        "store.dataDir",
        "store.databaseURL",
        "store.migrateOnStart",
        "store.recordMaxAgeSeconds",
        "tenants.reprobeMaxSeconds",
        "tenants.reprobeMinSeconds",
        "vault.attemptTimeoutSeconds",
        "vault.budget",
        "vault.budgetWindowSeconds",
        "vault.circuitFailureThreshold",
        "vault.circuitOpenSeconds",
        "vault.keyStateMaxAgeSeconds",
        "vault.rolePropagationSeconds",
        "vault.sharedCallTimeoutSeconds",
        "vault.tenantConcurrency",
    ]

    /// The keys a JSON configuration file sets: the dotted paths of its leaves.
    ///
    /// - Throws: `ConfigurationError` when the file does not parse as a JSON object, or names a
    ///   key not in `knownKeys` (the message lists the unknown ones, escaped and bounded).
    static func checkFileKeys(_ path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ConfigurationError(key: "--config", "\(path) is not readable")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ConfigurationError(key: "--config", "\(path) is not a JSON object")
        }
        var leaves: [String] = []
        func walk(_ value: Any, _ prefix: String, depth: Int) {
            if let nested = value as? [String: Any], depth < 8 {
                for (key, child) in nested { walk(child, prefix.isEmpty ? key : "\(prefix).\(key)", depth: depth + 1) }
            } else {
                leaves.append(prefix)
            }
        }
        walk(object, "", depth: 0)
        let known = Set(knownKeys)
        let unknown = leaves.filter { !known.contains($0) }.sorted()
        guard unknown.isEmpty else {
            let shown = unknown.prefix(10).map { String(reflecting: String($0.prefix(80))) }.joined(separator: ", ")
            throw ConfigurationError(
                key: "--config",
                "\(path) sets \(unknown.count) unknown key(s): \(shown)\(unknown.count > 10 ? ", …" : ""); `fedbroker serve --list-config-keys` lists the keys")
        }
    }
}
