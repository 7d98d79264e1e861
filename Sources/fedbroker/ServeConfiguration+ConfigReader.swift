import AdminAPI
import AzureHTTP
import AzureIdentity
import BrokerApp
import BrokerServer
import BrokerWire
import BrokerStore
import Configuration
import FedBrokerCore
import Foundation
import SystemPackage

extension ServeConfiguration {
    /// Reads the broker's configuration. Every key, as `key (type, default): meaning`; in the
    /// environment a key is `FEDBROKER_` + the key in upper snake case (`server.maxStreams` →
    /// `FEDBROKER_SERVER_MAX_STREAMS`); in the JSON file it is the nested path
    /// (`{"server": {"maxStreams": 512}}`). docs/configuration.md has the same table.
    ///
    /// - server.listen (string, 127.0.0.1:7443): HOST:PORT to listen on.
    /// - server.tlsCert / server.tlsKey (string): PEM certificate chain and key the broker presents.
    /// - server.clientCA (string): PEM CA that issues callers' client certificates.
    /// - server.crlFile (string): PEM or DER CRL(s) of that CA, checked at every handshake.
    /// - server.tlsReloadSeconds (double, 5): how often tlsCert, tlsKey, clientCA and crlFile are
    ///   read again; changed files serve new connections without a restart (0: never).
    /// - server.callerIdentity (string, uri-or-subject): uri, subject or uri-or-subject: where a
    ///   caller's identity comes from in its certificate.
    /// - server.handshakeTimeoutSeconds (double, 10), server.prefaceTimeoutSeconds (double, 10),
    ///   server.partialFrameTimeoutSeconds (double, 30), server.idleTimeoutSeconds (double, 300):
    ///   how long a connection may take to finish TLS, to send its preface, to complete a frame
    ///   it started, and stay with nothing in flight.
    /// - server.maxConnections (int, 10000), server.maxConnectionsPerCaller (int, 1024),
    ///   server.maxRequestsPerCaller (int, 2048): connections in all, and per caller identity
    ///   connections and requests in flight.
    /// - server.defaultRequestTimeoutSeconds (double, 10), server.maxRequestTimeoutSeconds (double,
    ///   60): a request's time when its timeout_ms is 0, and the most any timeout_ms gets.
    /// - server.plaintext (bool, false): no TLS; loopback only, every caller anonymous.
    /// - server.maxStreams (int, 256): requests one connection may have in flight.
    /// - server.drainSeconds (double, 10): how long in-flight calls may take to finish on SIGTERM.
    /// - server.answerReserveSeconds (double, 0.5): how long before a request's deadline the broker
    ///   stops waiting for its store and answers, so the answer arrives in time (at most a quarter
    ///   of the time the request has left); more than 0, at most 10.
    /// - store.databaseURL (string, secret): postgres://… or sqlite:PATH; default SQLite in store.dataDir.
    /// - store.dataDir (string, fedbroker-data): directory of the embedded SQLite store.
    /// - store.recordMaxAgeSeconds (double, 1): how long a caller/tenant/slot record is reused.
    /// - store.migrateOnStart (bool, true): apply missing migrations at start; false where a
    ///   migration job (`fedbroker migrate`) owns the schema and replicas have no DDL rights: the
    ///   replica then only checks the schema is current and refuses to start (schema_behind) if not.
    /// - store.connectTimeoutSeconds (double, the URL's connect_timeout or 10): how long a PostgreSQL
    ///   connection may take to set up, and a query may wait for a pooled one, before it fails as
    ///   database_unavailable.
    /// - audit.quarantineDirectory (string, store.dataDir): where audit records the database
    ///   rejected are appended (audit-quarantine.jsonl, mode 0600).
    /// - audit.maxQueueBytes (int, 67108864): bytes of audit records waiting for the store before
    ///   appends wait, then fail (key operations answer UNAVAILABLE).
    /// - audit.journal (bool, true): key operations' audit records are made durable in a local
    ///   journal (one fdatasync per batch) and shipped to the store in the background; false: each
    ///   key operation waits for the store's commit of its record.
    /// - audit.journalDirectory (string, store.dataDir/audit-journal): the journal's segments.
    ///   Must outlive the process (and, to lose nothing, the pod): see docs/operations.md.
    /// - audit.journalMaxBytes (int, 1073741824): unshipped journal beyond which key operations
    ///   are refused (AUDIT_UNAVAILABLE); at least 16 MiB.
    /// - audit.journalSync (string, batch): batch: each group commit is fdatasynced before its
    ///   answers leave, so a record survives a crash of the host too; interval: answers leave once
    ///   the batch is written to the file (a crash of the process loses nothing) and the journal is
    ///   fdatasynced in the background, so a crash of the host loses about one interval.
    /// - audit.journalSyncIntervalSeconds (double, 0.1): that interval, 0.001-10.
    /// - cache.maxAgeSeconds (double, 300): the revocation bound for cached plaintext keys.
    /// - cache.maxEntries (int, 100000), cache.maxUses (int, 100000): the other cache bounds.
    /// - vault.tenantConcurrency (int, 64): vault calls in flight per tenant before OVERLOADED.
    /// - vault.circuitFailureThreshold (int, 5): consecutive vault failures that open its circuit.
    /// - vault.circuitOpenSeconds (double, 5): how long an open circuit refuses before one probe.
    /// - vault.attemptTimeoutSeconds (double, 10): the longest one Azure request may take.
    /// - vault.keyStateMaxAgeSeconds (double, 60): the bound on how long after a customer disables
    ///   their key new data keys are still wrapped with it.
    /// - vault.rolePropagationSeconds (double, 600): after activation or a key change, how long
    ///   ForbiddenByRbac is answered as retryable instead of taken as the customer's revocation.
    /// - vault.sharedCallTimeoutSeconds (double, 30): the longest an unwrap shared by identical
    ///   requests may run; each caller still waits only until its own deadline.
    /// - process.allowCoreDumps (bool, false): keep core dumps (and ptrace by the same user) on.
    /// - azure.imdsURL, azure.authorityURL, azure.graphURL, azure.appClientID, azure.caBundle
    ///   (string), azure.vaultHostSuffixes (string, comma-separated): the Azure endpoints; the
    ///   older variables FEDBROKER_IMDS_URL, FEDBROKER_AUTHORITY_URL, FEDBROKER_GRAPH_URL,
    ///   FEDBROKER_APP_CLIENT_ID, FEDBROKER_CA_BUNDLE and FEDBROKER_VAULT_HOST_SUFFIXES still work.
    /// - log.level (string, info): trace, debug, info, notice, warning, error, critical.
    /// - azure.isvTenantID (string, default admin.staffTenantID): the ISV's tenant, the FICs' issuer.
    /// - slots.bootstrap (string): `clientId:principalId,…` managed identities to create and activate
    ///   as FIC slots at start if the store has none for them: the very first slot, whose FIC was
    ///   created out of band (every later one comes from `fedbroker slot add`).
    /// - slots.runJobs (bool, true): this replica takes slot jobs (needs azure.isvTenantID).
    /// - slots.applicationObjectID (string): the application's object id for Graph; default: its
    ///   client id as alternate key.
    /// - slots.leaseSeconds (double, 30): a slot job's lease; a dead replica's job resumes after it.
    /// - slots.movesPerSecond (double, 5): the pace of a drain's tenant moves.
    /// - slots.propagationSeconds (double, 600): how long a new FIC may take to work.
    /// - slots.maxTokenLifetimeSeconds (double, 5400): retire waits this long after a slot empties.
    /// - slots.tokenFiles (string): `clientId=path,…` federated token files (AKS workload identity)
    ///   for those identities; AZURE_FEDERATED_TOKEN_FILE with AZURE_CLIENT_ID adds one. Each
    ///   file's token is exchanged in azure.isvTenantID (required then) for the identity's token.
    /// - vault.budget (int, 800): Key Vault transactions per vault per vault.budgetWindowSeconds
    ///   (int, 10), shared by all replicas: each sends at most budget ÷ live replicas.
    /// - replica.heartbeatSeconds (double, 5): how often the replica announces itself.
    /// - tenants.reprobeMinSeconds (double, 60): an `access_lost` tenant is probed again this long
    ///   after the loss, then at doubling intervals up to tenants.reprobeMaxSeconds (double, 900):
    ///   once the customer repairs access, service resumes within that maximum (plus one probe).
    /// - admin.staffTenantID (string): the ISV's Entra tenant; setting it turns the admin API on.
    /// - admin.listen (string, 127.0.0.1:8443): HOST:PORT of the admin HTTPS listener.
    /// - admin.tlsCert / admin.tlsKey (string, default server.tlsCert / server.tlsKey).
    /// - admin.plaintext (bool, false): admin API over plain HTTP; loopback only.
    /// - admin.audiences (string, api://fedbroker-admin): accepted token audiences, comma-separated.
    /// - admin.unixSocket (string): also serve the admin API on this Unix socket (mode 0600), where
    ///   the local user acts with every role. Off by default.
    /// - admin.validationFreshnessSeconds (double, 86400): how long a validation allows activation.
    /// - admin.geos (string, comma-separated): accepted geos (default: Azure's geographies).
    /// - admin.applicationDisplayName (string, fedbroker): the ISV application's name, as customers see it.
    /// - admin.consentRedirectURI (string): where the customer's admin lands after consenting.
    /// - health.canaryVaultURL, health.canaryKeyName (string): a key the ISV owns in a vault of its
    ///   own tenant (azure.isvTenantID); together they turn the deep canary on. Never a customer's.
    /// - health.canaryIntervalSeconds (double, 60): the least time between two canary runs (≥ 10).
    /// - health.canaryRequired (bool, false): a failing canary makes /readyz 503 (else reported only).
    /// - metrics.refreshSeconds (double, 10): how often the state gauges are read from the store.
    init(reader: ConfigReader) throws {
        self.init()
        let r = StrictConfigReader(reader: reader)
        if let listen = try r.string("server.listen") {
            guard let (host, port) = ServeCommand.split(listen) else { throw ConfigurationError(key: "server.listen", "'\(listen)' is not HOST:PORT") }
            (listenHost, listenPort) = (host, port)
        }
        tlsCertificatePath = try r.string("server.tlsCert")
        tlsKeyPath = try r.string("server.tlsKey")
        clientCAPath = try r.string("server.clientCA")
        plaintext = try r.bool("server.plaintext") ?? plaintext
        if let streams = try r.int("server.maxStreams") {
            guard let value = UInt32(exactly: streams) else { throw ConfigurationError(key: "server.maxStreams", "\(streams) is out of range") }
            maximumConcurrentStreams = value
        }
        drainSeconds = try r.double("server.drainSeconds") ?? drainSeconds
        crlPath = try r.string("server.crlFile")
        tlsReloadSeconds = try r.double("server.tlsReloadSeconds") ?? tlsReloadSeconds
        if let source = try r.string("server.callerIdentity") {
            guard let value = CallerIdentitySource(rawValue: source) else {
                throw ConfigurationError(
                    key: "server.callerIdentity", "'\(source)' is not one of \(CallerIdentitySource.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            transport.callerIdentity = value
        }
        transport.handshakeTimeout = try r.double("server.handshakeTimeoutSeconds") ?? transport.handshakeTimeout
        transport.connection.prefaceTimeout = try r.double("server.prefaceTimeoutSeconds") ?? transport.connection.prefaceTimeout
        transport.connection.partialFrameTimeout = try r.double("server.partialFrameTimeoutSeconds") ?? transport.connection.partialFrameTimeout
        transport.connection.idleTimeout = try r.double("server.idleTimeoutSeconds") ?? transport.connection.idleTimeout
        transport.connection.defaultRequestTimeout =
            try r.double("server.defaultRequestTimeoutSeconds") ?? transport.connection.defaultRequestTimeout
        transport.connection.maximumRequestTimeout = try r.double("server.maxRequestTimeoutSeconds") ?? transport.connection.maximumRequestTimeout
        transport.maximumConnections = try r.int("server.maxConnections") ?? transport.maximumConnections
        transport.perCaller.maximumConnections = try r.int("server.maxConnectionsPerCaller") ?? transport.perCaller.maximumConnections
        transport.perCaller.maximumRequests = try r.int("server.maxRequestsPerCaller") ?? transport.perCaller.maximumRequests
        databaseURL = try r.string("store.databaseURL", secret: true)
        dataDirectory = try r.string("store.dataDir") ?? dataDirectory
        storeConnectTimeoutSeconds = try r.double("store.connectTimeoutSeconds")
        migrateOnStart = try r.bool("store.migrateOnStart") ?? migrateOnStart
        audit.quarantineDirectory = try r.string("audit.quarantineDirectory") ?? dataDirectory
        audit.maximumQueueBytes = try r.int("audit.maxQueueBytes") ?? audit.maximumQueueBytes
        if try r.bool("audit.journal") ?? true {
            var journal = AuditJournal.Configuration(directory: try r.string("audit.journalDirectory") ?? dataDirectory + "/audit-journal")
            journal.maximumBytes = try r.int("audit.journalMaxBytes") ?? journal.maximumBytes
            let interval = try r.double("audit.journalSyncIntervalSeconds") ?? 0.1
            guard interval >= 0.001, interval <= 10 else {
                throw ConfigurationError(key: "audit.journalSyncIntervalSeconds", "must be 0.001-10")
            }
            switch try r.string("audit.journalSync") ?? "batch" {
            case "batch":
                journal.sync = .everyBatch
            case "interval":
                journal.sync = .interval(.microseconds(Int64((interval * 1_000_000).rounded())))
            case let other:
                throw ConfigurationError(key: "audit.journalSync", "'\(BoundedText.escaped(other, limit: 32))' is not batch or interval")
            }
            journal.quarantineDirectory = audit.quarantineDirectory
            auditJournal = journal
        } else {
            auditJournal = nil
        }
        logLevel = try r.string("log.level") ?? logLevel

        var azure = AzureEnvironment()
        if let v = try r.string("azure.imdsURL") { azure.imdsURL = v }
        if let v = try r.string("azure.authorityURL") { azure.authorityURL = v }
        if let v = try r.string("azure.graphURL") { azure.graphURL = v }
        azure.applicationClientID = try r.string("azure.appClientID")
        azure.caBundlePath = try r.string("azure.caBundle")
        if let v = try r.string("azure.vaultHostSuffixes") {
            azure.vaultHostSuffixes = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        self.azure = azure

        var service = BrokerService.Configuration(environment: azure)
        service.cache.maximumAge = try r.double("cache.maxAgeSeconds") ?? service.cache.maximumAge
        service.cache.maximumEntries = try r.int("cache.maxEntries") ?? service.cache.maximumEntries
        service.cache.maximumUses = try r.int("cache.maxUses") ?? service.cache.maximumUses
        service.recordMaximumAge = try r.double("store.recordMaxAgeSeconds") ?? service.recordMaximumAge
        service.tenantConcurrency = try r.int("vault.tenantConcurrency") ?? service.tenantConcurrency
        service.azureAttemptTimeout = try r.double("vault.attemptTimeoutSeconds") ?? service.azureAttemptTimeout
        let threshold = try r.int("vault.circuitFailureThreshold") ?? service.circuitBreaker.failureThreshold
        let openSeconds = try r.double("vault.circuitOpenSeconds") ?? service.circuitBreaker.openSeconds
        guard threshold > 0, openSeconds > 0 else {
            throw ConfigurationError(key: "vault.circuitFailureThreshold", "the circuit's threshold and open seconds must be positive")
        }
        service.circuitBreaker = .init(failureThreshold: threshold, openSeconds: openSeconds)
        service.keyStateMaximumAge = try r.double("vault.keyStateMaxAgeSeconds") ?? service.keyStateMaximumAge
        service.rolePropagationSeconds = try r.double("vault.rolePropagationSeconds") ?? service.rolePropagationSeconds
        service.sharedCallTimeout = try r.double("vault.sharedCallTimeoutSeconds") ?? service.sharedCallTimeout
        guard service.keyStateMaximumAge >= 1, service.rolePropagationSeconds >= 0, service.sharedCallTimeout > 0 else {
            throw ConfigurationError(
                key: "vault.keyStateMaxAgeSeconds", "vault.keyStateMaxAgeSeconds must be at least 1, vault.rolePropagationSeconds not negative, vault.sharedCallTimeoutSeconds positive")
        }
        service.answerReserveSeconds = try r.double("server.answerReserveSeconds") ?? service.answerReserveSeconds
        guard service.answerReserveSeconds > 0, service.answerReserveSeconds <= 10 else {
            throw ConfigurationError(key: "server.answerReserveSeconds", "must be more than 0 and at most 10 seconds")
        }
        self.allowCoreDumps = try r.bool("process.allowCoreDumps") ?? false
        self.service = service

        if let staffTenant = try r.string("admin.staffTenantID") {
            let audiences = (try r.string("admin.audiences") ?? "api://fedbroker-admin")
                .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            var api = AdminAPIConfiguration(staffTenantID: staffTenant, audiences: Set(audiences))
            api.validationFreshness = try r.double("admin.validationFreshnessSeconds") ?? api.validationFreshness
            if let geos = try r.string("admin.geos") {
                api.geos = Set(geos.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
            }
            api.applicationDisplayName = try r.string("admin.applicationDisplayName") ?? api.applicationDisplayName
            api.consentRedirectURI = try r.string("admin.consentRedirectURI")
            var admin = AdminSettings(api: api)
            if let listen = try r.string("admin.listen") {
                guard let (host, port) = ServeCommand.split(listen) else { throw ConfigurationError(key: "admin.listen", "'\(listen)' is not HOST:PORT") }
                (admin.listenHost, admin.listenPort) = (host, port)
            }
            admin.plaintext = try r.bool("admin.plaintext") ?? false
            admin.tlsCertificatePath = try r.string("admin.tlsCert") ?? (admin.plaintext ? nil : tlsCertificatePath)
            admin.tlsKeyPath = try r.string("admin.tlsKey") ?? (admin.plaintext ? nil : tlsKeyPath)
            admin.unixSocketPath = try r.string("admin.unixSocket")
            self.admin = admin
        }
        isvTenantID = try r.string("azure.isvTenantID") ?? admin?.api.staffTenantID
        let canaryVault = try r.string("health.canaryVaultURL"), canaryKey = try r.string("health.canaryKeyName")
        switch (canaryVault, canaryKey) {
        case (let vault?, let key?):
            var canary = Canary.Configuration(tenantID: isvTenantID ?? "", vaultURL: vault, keyName: key)
            canary.intervalSeconds = try r.double("health.canaryIntervalSeconds") ?? canary.intervalSeconds
            self.service.readiness.canary = canary
        case (nil, nil):
            break
        default:
            throw ConfigurationError(key: "health.canaryVaultURL", "give both health.canaryVaultURL and health.canaryKeyName, or neither")
        }
        self.service.readiness.canaryRequired = try r.bool("health.canaryRequired") ?? false
        metricsRefreshSeconds = try r.double("metrics.refreshSeconds") ?? metricsRefreshSeconds
        if let slots = try r.string("slots.bootstrap") {
            for pair in slots.split(separator: ",") {
                let parts = pair.split(separator: ":").map { $0.trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    throw ConfigurationError(key: "slots.bootstrap", "expected clientId:principalId pairs, comma-separated")
                }
                bootstrapSlots.append((parts[0], parts[1]))
            }
        }
        slots.runJobs = try r.bool("slots.runJobs") ?? slots.runJobs
        slots.applicationObjectID = try r.string("slots.applicationObjectID")
        slots.leaseSeconds = try r.double("slots.leaseSeconds") ?? slots.leaseSeconds
        slots.movesPerSecond = try r.double("slots.movesPerSecond") ?? slots.movesPerSecond
        slots.propagationSeconds = try r.double("slots.propagationSeconds") ?? slots.propagationSeconds
        slots.maximumTokenLifetimeSeconds = try r.double("slots.maxTokenLifetimeSeconds") ?? slots.maximumTokenLifetimeSeconds
        if let files = try r.string("slots.tokenFiles") {
            for pair in files.split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    throw ConfigurationError(key: "slots.tokenFiles", "expected clientId=path pairs, comma-separated")
                }
                slots.tokenFiles[parts[0].lowercased()] = parts[1]
            }
        }
        self.service.vaultBudget = try r.int("vault.budget") ?? self.service.vaultBudget
        self.service.vaultBudgetWindowSeconds = try r.int("vault.budgetWindowSeconds") ?? self.service.vaultBudgetWindowSeconds
        heartbeatSeconds = try r.double("replica.heartbeatSeconds") ?? heartbeatSeconds
        let reprobeMin = try r.double("tenants.reprobeMinSeconds") ?? accessRecovery.schedule.minimumSeconds
        let reprobeMax = try r.double("tenants.reprobeMaxSeconds") ?? max(accessRecovery.schedule.maximumSeconds, reprobeMin)
        // At least a second: each probe costs the customer's vault two transactions.
        guard reprobeMin >= 1, let schedule = try? AccessReprobeSchedule(minimumSeconds: reprobeMin, maximumSeconds: reprobeMax) else {
            throw ConfigurationError(key: "tenants.reprobeMinSeconds", "must be at least 1 and at most tenants.reprobeMaxSeconds")
        }
        accessRecovery.schedule = schedule
    }

    /// The reader `serve` uses: flags first, then the environment, then the file, then defaults.
    ///
    /// - Parameters:
    ///   - flags: values given on the command line, by key (only those given, so an unset flag
    ///     does not hide the layers below).
    ///   - file: a JSON file; nil for none. A named file that does not exist is an error.
    static func reader(flags: [String: ConfigContent], file: String?, environment: [String: String]) async throws -> ConfigReader {
        let secretKeys: Set<String> = ["store.databaseURL"]
        var providers: [any ConfigProvider] = []
        providers.append(InMemoryProvider(name: "flags", values: Dictionary(uniqueKeysWithValues: flags.map { key, value in
            (AbsoluteConfigKey(key.split(separator: ".").map(String.init)), ConfigValue(value, isSecret: secretKeys.contains(key)))
        })))
        providers.append(
            EnvironmentVariablesProvider(
                environmentVariables: environment,
                secretsSpecifier: .dynamic { name, _ in name.hasSuffix("DATABASE_URL") }
            ).prefixKeys(with: "fedbroker"))
        // The variables that predate the configuration file keep their names.
        let legacy = ["FEDBROKER_IMDS_URL": "azure.imdsURL", "FEDBROKER_AUTHORITY_URL": "azure.authorityURL", "FEDBROKER_GRAPH_URL": "azure.graphURL",
                      "FEDBROKER_APP_CLIENT_ID": "azure.appClientID", "FEDBROKER_CA_BUNDLE": "azure.caBundle",
                      "FEDBROKER_VAULT_HOST_SUFFIXES": "azure.vaultHostSuffixes"]
        var legacyValues: [AbsoluteConfigKey: ConfigValue] = [:]
        for (variable, key) in legacy {
            if let value = environment[variable], !value.isEmpty {
                legacyValues[AbsoluteConfigKey(key.split(separator: ".").map(String.init))] = ConfigValue(.string(value), isSecret: false)
            }
        }
        providers.append(InMemoryProvider(name: "environment (FEDBROKER_*)", values: legacyValues))
        if let file {
            guard FileManager.default.isReadableFile(atPath: file) else { throw ConfigurationError(key: "--config", "\(file) does not exist or is not readable") }
            do {
                providers.append(
                    try await FileProvider<JSONSnapshot>(
                        parsingOptions: .init(secretsSpecifier: .specific(secretKeys)), filePath: FilePath(file), allowMissing: false))
            } catch {
                throw ConfigurationError(key: "--config", "\(file) is not a JSON configuration: \(error)")
            }
        }
        return ConfigReader(providers: providers)
    }
}

/// Reads a key that may be absent, but refuses one that is present with the wrong type (the
/// plain `ConfigReader` reads would silently fall back to the default).
struct StrictConfigReader {
    let reader: ConfigReader

    func string(_ key: String, secret: Bool = false) throws -> String? {
        try read(key) { reader.string(forKey: ConfigKey($0), isSecret: secret) } required: { try reader.requiredString(forKey: ConfigKey($0), isSecret: secret) }
    }
    func int(_ key: String) throws -> Int? {
        try read(key) { reader.int(forKey: ConfigKey($0)) } required: { try reader.requiredInt(forKey: ConfigKey($0)) }
    }
    func double(_ key: String) throws -> Double? {
        try read(key) { reader.double(forKey: ConfigKey($0)) } required: { try reader.requiredDouble(forKey: ConfigKey($0)) }
    }
    func bool(_ key: String) throws -> Bool? {
        try read(key) { reader.bool(forKey: ConfigKey($0)) } required: { try reader.requiredBool(forKey: ConfigKey($0)) }
    }

    private func read<T>(_ key: String, _ optional: (String) -> T?, required: (String) throws -> T) throws -> T? {
        if let value = optional(key) { return value }
        do {
            return try required(key)
        } catch {
            // swift-configuration's error type is not public: "missing" is told apart by its text.
            if "\(error)".contains("Missing required") { return nil }
            throw ConfigurationError(key: key, "\(error)")
        }
    }
}
