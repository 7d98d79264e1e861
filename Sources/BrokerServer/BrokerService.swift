import AsyncHTTPClient
import AzureHTTP
import AzureIdentity
import BrokerStore
import BrokerWire
import Crypto
import FedBrokerCore
import Foundation
import KeyVault
import Logging
import Synchronization
import SwiftProtobuf

/// The broker's service logic behind the transport: authorize the caller for the operation and
/// tenant, resolve the tenant's FIC slot and key, get a vault token through the slot, call the
/// vault, seal or open the envelope, cache plaintext keys within their bounds, audit every key
/// operation, and turn every failure into a precise status.
///
/// Revoked is not unreachable: a customer's refusal (role removed, key disabled, consent
/// removed, Conditional Access) fails closed, is not retried, purges the tenant's cached keys at
/// once and marks the tenant suspended; a slow, throttling or failing vault or Entra is retried
/// within the deadline and reported as retryable. A cached key's life is never extended because
/// the vault is unhealthy.
public final class BrokerService: BrokerRequestHandler {
    public struct Configuration: Sendable {
        public var environment: AzureEnvironment
        public var cache = DataKeyCache.Policy()
        /// The largest plaintext Wrap accepts: the RSA-OAEP-256 limit of an RSA-3072 key.
        public var maximumWrapPlaintext = 318
        public var serverVersion = "fedbroker"
        /// The longest one Azure request (IMDS, Entra, Key Vault) may take before it is retried.
        public var azureAttemptTimeout: Double = 10
        /// Vault-bound requests one tenant may have in flight; more are refused at once as
        /// retryable OVERLOADED, so one slow vault cannot take every request slot.
        public var tenantConcurrency = 64
        /// When a vault counts as down and how long calls to it are refused at once.
        public var circuitBreaker = CircuitBreaker.Policy()
        /// Seconds a caller, tenant or slot record read from the store is reused. A change made
        /// in the store reaches this broker within this bound, or at once through the change feed.
        public var recordMaximumAge: Double = 1
        /// Key Vault transactions per `vaultBudgetWindowSeconds` per vault, for all replicas
        /// together: each replica sends at most its share (the budget divided by the live replicas).
        public var vaultBudget = 800
        public var vaultBudgetWindowSeconds = 10
        /// What `/readyz` and the framed Health check, and the optional deep canary.
        public var readiness = Readiness.Configuration()
        /// The bound on how long after a customer disables (or lets expire) their key new data keys
        /// are still wrapped with it: a key's state read from its vault is used at most this many
        /// seconds (KeyStateCache).
        public var keyStateMaximumAge: Double = 60
        /// After a tenant's activation or key change (its record's last update), how long Key
        /// Vault's ForbiddenByRbac is taken for a role assignment still propagating — answered as
        /// retryable — rather than for the customer's revocation. Azure documents up to 10 minutes.
        public var rolePropagationSeconds: Double = 600
        /// The longest a vault call shared by identical unwraps may run. Each caller still waits
        /// only until its own deadline; the call is cancelled once nobody waits for it.
        public var sharedCallTimeout: Double = 30
        /// Seconds before a request's deadline at which its store calls stop being waited for,
        /// so the answer (and the audit record a refusal still needs) reaches the caller before
        /// it gives up; at most a quarter of the time the request has left. Raise it where the
        /// way back to the callers is slow or the machine is loaded.
        public var answerReserveSeconds: Double = 0.5
        public init(environment: AzureEnvironment) { self.environment = environment }
    }

    let configuration: Configuration
    let store: any BrokerStore
    let audit: any AuditTrail
    public let tokens: CrossTenantTokenProvider
    public let vault: KeyVaultClient
    public let cache: DataKeyCache
    let httpClient: HTTPClient
    let clock: any WallClock
    let logger: Logger
    let tenantLimit: TenantConcurrencyLimit
    let metricHandles = ServiceMetrics.Handles()
    let callerRecords: RecordCache<String, Caller?>
    let tenantRecords: RecordCache<TenantID, Tenant>
    let slotRecords: RecordCache<FICSlotID, FICSlot>
    /// Every slot's assertion source (IMDS or a federated token file), shared with slot jobs.
    public let assertionSources: AssertionSourceCatalog
    /// Whether this broker can serve (`/readyz`, the framed Health).
    public let readiness: Readiness
    /// Identical concurrent unwraps (same tenant, version, blob and context) share one vault call.
    private let unwraps: SingleFlight<DataKeyCache.Key, Opened>
    /// Each wrapping key's state (enabled, validity window), so no blob is minted under a disabled key.
    let keyStates: KeyStateCache
    /// The losses of access this replica is recording now, one per tenant (`loseAccess`).
    package let lossRecordings = AccessLossRecordings()

    /// An unwrap's result, shared by the callers of one flight.
    struct Opened: Sendable {
        var plaintext: SecretBytes
        var clientRequestID: String?
    }

    public init(
        configuration: Configuration, store: any BrokerStore, audit: any AuditTrail, httpClient: HTTPClient,
        assertionSources: AssertionSourceCatalog? = nil, clock: any WallClock = SystemWallClock(), logger: Logger
    ) throws {
        guard let appID = configuration.environment.applicationClientID else {
            throw BrokerError(.invalidArgument, "no application client id configured (FEDBROKER_APP_CLIENT_ID)")
        }
        self.configuration = configuration
        self.store = store
        self.audit = audit
        self.httpClient = httpClient
        self.clock = clock
        self.logger = logger
        self.tokens = CrossTenantTokenProvider(
            exchange: ClientAssertionExchange(
                authority: configuration.environment.authorityURL, applicationClientID: appID, httpClient: httpClient, clock: clock,
                attemptTimeout: configuration.azureAttemptTimeout),
            clock: clock)
        var vaultConfiguration = KeyVaultClient.Configuration(environment: configuration.environment)
        vaultConfiguration.attemptTimeout = configuration.azureAttemptTimeout
        vaultConfiguration.circuitBreaker = configuration.circuitBreaker
        vaultConfiguration.budget = configuration.vaultBudget
        vaultConfiguration.budgetWindowSeconds = configuration.vaultBudgetWindowSeconds
        self.vault = KeyVaultClient(httpClient: httpClient, clock: clock, configuration: vaultConfiguration, logger: logger)
        self.tenantLimit = TenantConcurrencyLimit(limit: configuration.tenantConcurrency)
        self.callerRecords = RecordCache(maximumAge: configuration.recordMaximumAge, clock: clock)
        self.tenantRecords = RecordCache(maximumAge: configuration.recordMaximumAge, clock: clock)
        self.slotRecords = RecordCache(maximumAge: configuration.recordMaximumAge, clock: clock)
        self.cache = DataKeyCache(policy: configuration.cache, clock: clock)
        self.unwraps = SingleFlight(clock: clock)
        self.keyStates = KeyStateCache(maximumAge: configuration.keyStateMaximumAge)
        self.assertionSources =
            assertionSources
            ?? AssertionSourceCatalog(
                configuration: .init(imdsURL: configuration.environment.imdsURL, attemptTimeout: configuration.azureAttemptTimeout),
                httpClient: httpClient, clock: clock)
        self.readiness = Self.makeReadiness(
            configuration: configuration, store: store, audit: audit, tokens: tokens, sources: self.assertionSources,
            httpClient: httpClient, clock: clock, logger: logger)
    }

    /// A failure on its way to the caller, with what the audit record needs.
    struct Refusal: Error {
        var status: WireStatus
        var tenant: TenantID?
    }

    /// The answer to one request (`handle`, in BrokerService+Metrics.swift, counts and times it).
    func respond(_ request: WireRequest, caller: CallerIdentity, deadline: Date) async -> WireResponse {
        let started = clock.now
        var tenantID: TenantID?
        var keyVersion: String?
        var clientRequestID: String?
        let operation: KeyOperation?
        switch request.method {
        case .generateDataKey: operation = .generateDataKey
        case .wrap: operation = .wrap
        case .unwrap: operation = .unwrap
        case .rewrap: operation = .rewrap
        case .keyStatus: operation = .keyStatus
        case .health, .none: operation = nil
        }
        let response: WireResponse
        let requestID = Self.requestID(request.requestID)
        do {
            guard requestID != nil else {
                throw Refusal(
                    status: .failure(.invalidArgument, .unspecified, "request_id must be 1-128 characters of printable ASCII (0x21-0x7E), or empty"),
                    tenant: nil)
            }
            switch request.method {
            case .health:
                // OK either way, so the client reads the body: NOT_SERVING is an answer, not a failure.
                let ready = await readiness.report().ready
                return .with {
                    $0.status = .ok
                    $0.health = .with { $0.status = ready ? "SERVING" : "NOT_SERVING"; $0.serverVersion = configuration.serverVersion }
                }
            case .generateDataKey(let r):
                let authorized = try await authorizedTenant(r.tenant, for: .generateDataKey, caller: caller, deadline: deadline)
                let tenant = authorized.tenant
                tenantID = tenant.id
                let dataKey = SymmetricKey(size: .bits256).withUnsafeBytes { SecretBytes($0) }
                let context = try contextPolicy(r.context.isEmpty ? nil : Array(r.context), blobBound: nil, authorized: authorized, caller: caller)
                let (envelope, requestID) = try await seal(dataKey, context: context, tenant: tenant, deadline: deadline)
                keyVersion = envelope.keyVersion
                clientRequestID = requestID
                let blob = try envelopeBytes(envelope, tenant: tenant.id)
                response = .with {
                    $0.status = .ok
                    $0.generateDataKey = .with {
                        $0.plaintext = dataKey.withBytes { Data($0) }
                        $0.blob = blob
                        $0.keyID = kid(envelope)
                    }
                }
            case .wrap(let r):
                let authorized = try await authorizedTenant(r.tenant, for: .wrap, caller: caller, deadline: deadline)
                let tenant = authorized.tenant
                tenantID = tenant.id
                guard !r.plaintext.isEmpty, r.plaintext.count <= configuration.maximumWrapPlaintext else {
                    throw Refusal(status: .failure(.invalidArgument, .unspecified, "plaintext must be 1-\(configuration.maximumWrapPlaintext) bytes"), tenant: tenant.id)
                }
                let context = try contextPolicy(r.context.isEmpty ? nil : Array(r.context), blobBound: nil, authorized: authorized, caller: caller)
                let (envelope, requestID) = try await seal(r.plaintext.withUnsafeBytes { SecretBytes($0) }, context: context, tenant: tenant, deadline: deadline)
                keyVersion = envelope.keyVersion
                clientRequestID = requestID
                let blob = try envelopeBytes(envelope, tenant: tenant.id)
                response = .with {
                    $0.status = .ok
                    $0.wrap = .with { $0.blob = blob; $0.keyID = kid(envelope) }
                }
            case .unwrap(let r):
                let (plaintext, envelope, tenant, requestID) = try await open(Array(r.blob), context: r.context.isEmpty ? nil : Array(r.context), operation: .unwrap, caller: caller, deadline: deadline)
                tenantID = tenant.id
                keyVersion = envelope.keyVersion
                clientRequestID = requestID
                response = .with {
                    $0.status = .ok
                    $0.unwrap = .with { $0.plaintext = plaintext.withBytes { Data($0) }; $0.keyID = kid(envelope) }
                }
            case .rewrap(let r):
                let context = r.context.isEmpty ? nil : Array(r.context)
                // open() authorized the caller for rewrap on the blob's tenant; the fresh blob is sealed under that tenant's key.
                let (plaintext, _, tenant, _) = try await open(Array(r.blob), context: context, operation: .rewrap, caller: caller, deadline: deadline)
                tenantID = tenant.id
                let (fresh, requestID) = try await seal(plaintext, context: context, tenant: tenant, deadline: deadline)
                keyVersion = fresh.keyVersion
                clientRequestID = requestID
                let blob = try envelopeBytes(fresh, tenant: tenant.id)
                response = .with {
                    $0.status = .ok
                    $0.rewrap = .with { $0.blob = blob; $0.keyID = kid(fresh) }
                }
            case .keyStatus(let r):
                let tenant = try await authorizedTenant(r.tenant, for: .keyStatus, caller: caller, deadline: deadline, requireServable: false).tenant
                tenantID = tenant.id
                response = .with {
                    $0.status = .ok
                    $0.keyStatus = .with {
                        $0.tenant = tenant.id.rawValue
                        $0.state = tenant.state.rawValue
                        $0.keyID = tenant.key.description
                        $0.slot = tenant.slotID?.rawValue ?? ""
                    }
                }
            case .none:
                response = .failure(.failure(.invalidArgument, .protocolError, "the request names no method"))
            }
        } catch let refusal as Refusal {
            tenantID = tenantID ?? refusal.tenant
            response = .failure(refusal.status)
        } catch is CancellationError {
            // The caller sent CANCEL or its deadline passed: nobody reads this answer.
            response = .failure(.failure(.cancelled, .unspecified, "cancelled by the caller"))
        } catch {
            response = .failure(.failure(.internal, .unspecified, "internal error: \(type(of: error))"))
            logger.error("unexpected failure", metadata: ["fb.error": "\(String(reflecting: error))"])
        }
        if let operation {
            // Invariant 4: the answer leaves only once its audit record is committed (group
            // commit: records of concurrent requests share a transaction). No key is released
            // unaudited; a refusal is returned either way.
            let stored = await record(
                operation, caller: caller, tenant: tenantID, keyVersion: keyVersion, response: response,
                requestID: requestID ?? GeneratedRequestID.next(), clientRequestID: clientRequestID, started: started, deadline: deadline)
            // A refusal is withheld too: every answer, refusals included, leaves only with its record.
            if !stored {
                return .failure(
                    .failure(.unavailable, .auditUnavailable, "the audit record of this \(operation.rawValue) could not be stored, so its result is withheld; retry", retryable: true))
            }
        }
        return response
    }

    // MARK: Steps

    /// The request's id: the caller's (`request_id`, checked: 1-128 printable ASCII characters,
    /// so it goes into the audit trail as it is), or a fresh one; nil when the caller's is invalid.
    static func requestID(_ given: String) -> String? {
        if given.isEmpty { return GeneratedRequestID.next() }
        guard given.utf8.count <= 128, given.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else { return nil }
        return given
    }

    /// Text from a request, fit to be echoed in an answer and stored in the audit trail: it is
    /// the caller's, unauthenticated at the point it is echoed, and up to a frame long.
    static func echo(_ text: String) -> String { BoundedText.escaped(String(text.prefix(80)), limit: 64) }

    /// What a request may act on: the tenant, and the caller's record read once for the request.
    struct Authorization {
        let tenant: Tenant
        let caller: Caller
    }

    /// The tenant, if `caller` may perform `operation` on it and (for key operations) it is served.
    func authorizedTenant(_ name: String, for operation: KeyOperation, caller: CallerIdentity, deadline: Date, requireServable: Bool = true) async throws -> Authorization {
        guard let id = TenantID(rawValue: name) else {
            throw Refusal(status: .failure(.invalidArgument, .tenantUnknown, "'\(Self.echo(name))' is not a tenant id"), tenant: nil)
        }
        // Authorization first, so an unauthorized caller learns nothing about which tenants exist.
        let record = try await callerRecord(caller, deadline: deadline)
        guard let record, record.enabled, record.isAllowed(operation, for: id) else {
            throw Refusal(
                status: .failure(.permissionDenied, .notAuthorized, "caller \(Self.echo(caller.description)) is not granted \(operation.rawValue) for tenant \(id)"),
                tenant: id)
        }
        let tenant: Tenant
        do {
            if let cached = tenantRecords.cached(id, refreshing: { [store] in try await store.tenant(id) }) {
                tenant = cached
            } else {
                tenant = try await fromStore(deadline) { [tenantRecords, store] in try await tenantRecords.value(for: id) { try await store.tenant(id) } }
            }
        } catch let error as BrokerError where error.code == .notFound {
            throw Refusal(status: .failure(.notFound, .tenantUnknown, "no tenant \(id) is registered"), tenant: id)
        }
        guard requireServable else { return Authorization(tenant: tenant, caller: record) }
        switch tenant.state {
        case .active: return Authorization(tenant: tenant, caller: record)
        case .accessLost:
            throw Refusal(
                status: .failure(.permissionDenied, .accessRevokedByCustomer, "tenant \(id) lost access to its key at the customer's side; the broker probes it again and serves it once access is back"),
                tenant: id)
        default:
            throw Refusal(status: .failure(.failedPrecondition, .tenantSuspended, "tenant \(id) is \(tenant.state.rawValue), not active"), tenant: id)
        }
    }

    /// The caller's record (nil: unknown), read through the record cache within the deadline.
    func callerRecord(_ caller: CallerIdentity, deadline: Date) async throws -> Caller? {
        if let cached = callerRecords.cached(caller.name, refreshing: { [store] in try await store.caller(identity: caller.name) }) { return cached }
        return try await fromStore(deadline) { [callerRecords, store] in
            try await callerRecords.value(for: caller.name) { try await store.caller(identity: caller.name) }
        }
    }

    /// A store read bounded by the request's deadline. A store that is down or slow is the
    /// broker's own trouble, not the caller's nor the tenant's: retryable UNAVAILABLE, and nothing
    /// about the tenant is decided from it.
    ///
    /// It answers by `storeBound`, `answerReserveSeconds` before the deadline.
    func fromStore<T: Sendable>(_ deadline: Date, _ read: @escaping @Sendable () async throws -> T) async throws -> T {
        do {
            return try await withStoreDeadline(storeBound(deadline), clock: clock, read)
        } catch let error as BrokerError where error.code != .notFound && error.code != .invalidArgument {
            logger.warning("store unavailable on the request path", metadata: ["fb.error": "\(error.code.rawValue)"])
            throw Refusal(
                status: .failure(.unavailable, .storeUnavailable, "the broker's store is unavailable (\(error.code.rawValue)); retry", retryable: true, retryAfterMilliseconds: 500),
                tenant: nil)
        }
    }

    /// When a store call on the request path must have answered: `answerReserveSeconds` before
    /// the request's deadline, at most a quarter of the time left.
    func storeBound(_ deadline: Date) -> Date {
        deadline.addingTimeInterval(-min(answerReserve, max(clock.remaining(until: deadline), 0) * 0.25))
    }

    /// `answerReserveSeconds`, never below 0 (the configuration is a public struct; serve checks it).
    var answerReserve: Double { max(configuration.answerReserveSeconds, 0) }

    /// Which context a wrap binds or an unwrap presents, under the caller's policy: a context
    /// presented with a blob that binds none is refused (it would be silently ignored, and the
    /// caller would believe its data bound); a caller whose record requires context must give one.
    func contextPolicy(_ context: [UInt8]?, blobBound: Bool?, authorized: Authorization, caller: CallerIdentity) throws -> [UInt8]? {
        let tenant = authorized.tenant.id
        if let blobBound, !blobBound, context != nil {
            throw Refusal(
                status: .failure(.invalidArgument, .contextMismatch, "a context was presented, but this blob was wrapped without one"), tenant: tenant)
        }
        if context == nil, authorized.caller.requireContext {
            throw Refusal(
                status: .failure(
                    .invalidArgument, .contextMismatch,
                    "caller \(Self.echo(caller.description)) must bind a context to every key operation (its record requires context), and presented none"),
                tenant: tenant)
        }
        if let context, context.count > Self.maximumContextLength {
            throw Refusal(
                status: .failure(.invalidArgument, .contextMismatch, "the context is \(context.count) bytes; at most \(Self.maximumContextLength)"), tenant: tenant)
        }
        return context
    }

    /// The longest context a request may bind (it is authenticated data, not a payload).
    static let maximumContextLength = 4096

    /// The assertion source of the tenant's slot, if the slot may serve (invariant 1).
    func source(for tenant: Tenant, deadline: Date) async throws -> any AssertionSource {
        guard let slotID = tenant.slotID else {
            throw Refusal(status: .failure(.failedPrecondition, .identityUnavailable, "tenant \(tenant.id) has no FIC slot"), tenant: tenant.id)
        }
        let slot: FICSlot
        if let cached = slotRecords.cached(slotID, refreshing: { [store] in try await store.slot(slotID) }) {
            slot = cached
        } else {
            slot = try await fromStore(deadline) { [slotRecords, store] in try await slotRecords.value(for: slotID) { try await store.slot(slotID) } }
        }
        guard slot.state.isServing else {
            throw Refusal(status: .failure(.failedPrecondition, .identityUnavailable, "tenant \(tenant.id)'s slot \(slotID) is \(slot.state.rawValue)"), tenant: tenant.id)
        }
        return assertionSources.source(forClientID: slot.identity.managedIdentityClientID)
    }

    /// The blob's bytes; a field that does not fit the format (a vault answer out of bounds) is the vault's failure.
    func envelopeBytes(_ envelope: WrappedKeyEnvelope, tenant: TenantID) throws -> Data {
        do {
            return Data(try envelope.serialized())
        } catch {
            throw Refusal(status: .failure(.unavailable, .vaultUnavailable, "the vault's answer does not fit a blob: \(error.message)"), tenant: tenant)
        }
    }

    func seal(_ dataKey: SecretBytes, context: [UInt8]?, tenant: Tenant, deadline: Date) async throws -> (WrappedKeyEnvelope, String) {
        let source = try await source(for: tenant, deadline: deadline)
        let key = VaultKeyID(vaultURL: tenant.key.vaultURL, name: tenant.key.keyName, version: tenant.key.keyVersion)
        let provider = tokens.vaultTokenProvider(
            tenantID: tenant.entraTenantID.rawValue, source: source, resource: AzureEnvironment.vaultTokenResource(forVaultURL: tenant.key.vaultURL))
        try await requireUsableKey(key, tenant: tenant, token: provider, deadline: deadline)
        let requestID = Mutex("")
        let wrapping = EnvelopeCrypto.Wrapping(tenantID: tenant.id.rawValue, vaultURL: key.vaultURL, keyName: key.name) { [vault] envelopeKey in
            let result = try await vault.wrapKey(key, plaintext: envelopeKey, token: provider, deadline: deadline, expectedTenantID: tenant.entraTenantID.rawValue)
            requestID.withLock { $0 = result.clientRequestID }
            guard let version = VaultKeyID(kid: result.kid)?.version, KeyReference.isValidVersion(version) else {
                throw KeyVaultError(kind: .other, serviceMessage: "the vault's kid names no key version Key Vault would issue", clientRequestID: result.clientRequestID)
            }
            guard WrappedKeyEnvelope.wrappedKeyLengths.contains(result.value.count) else {
                throw KeyVaultError(kind: .other, serviceMessage: "the vault returned a wrapped key of \(result.value.count) bytes", clientRequestID: result.clientRequestID)
            }
            return (version, result.value)
        }
        do {
            let envelope = try await tenantLimit.withPermit(tenant.id.rawValue) { try await EnvelopeCrypto.seal(dataKey, context: context, with: wrapping) }
            return (envelope, requestID.withLock { $0 })
        } catch {
            throw await refusal(for: error, tenant: tenant, keyVersion: nil, deadline: deadline)
        }
    }

    /// Refuses to mint a blob under a key that is disabled, expired or not yet valid (Key Vault
    /// would wrap with it all the same; see KeyStateCache for why and for the bound).
    func requireUsableKey(_ key: VaultKeyID, tenant: Tenant, token: @escaping KeyVaultClient.TokenProvider, deadline: Date) async throws {
        let now = clock.now
        let state: KeyStateCache.State?
        switch keyStates.lookup(key, now: now) {
        case .fresh(let known):
            state = known
        case .refreshAhead(let known):
            state = known
            Task { [weak self] in await self?.readKeyState(key, tenant: tenant, token: token, deadline: deadline) }
        case .stale(let last):
            do {
                state = try await fetchKeyState(key, tenant: tenant, token: token, deadline: deadline)
            } catch let error as KeyVaultError where !Self.isRefusal(error) {
                // The vault cannot say now (throttled, failing): the wrap itself will tell; keep what was known.
                logger.debug("key state not read; using the last known", metadata: ["fb.tenant": "\(tenant.id)", "fb.error": "\(error.kind.rawValue)"])
                state = last
            } catch {
                throw await refusal(for: error, tenant: tenant, keyVersion: nil, deadline: deadline)
            }
        }
        if let reason = state?.refusal(at: now) {
            throw Refusal(
                status: .failure(
                    .failedPrecondition, .keyDisabled,
                    "tenant \(tenant.id)'s key \(key.name) \(reason) in its vault: a data key wrapped now could not be unwrapped; the customer must enable it (or register another key)"),
                tenant: tenant.id)
        }
    }

    private func fetchKeyState(_ key: VaultKeyID, tenant: Tenant, token: @escaping KeyVaultClient.TokenProvider, deadline: Date) async throws -> KeyStateCache.State {
        let bundle = try await tenantLimit.withPermit(tenant.id.rawValue) {
            try await vault.getKey(key, token: token, deadline: deadline, expectedTenantID: tenant.entraTenantID.rawValue).value
        }
        return keyStates.record(key, enabled: bundle.enabled, notBefore: bundle.notBefore, expires: bundle.expires, at: clock.now)
    }

    /// The background refresh of a key's state; a failure leaves the known state to age out.
    private func readKeyState(_ key: VaultKeyID, tenant: Tenant, token: @escaping KeyVaultClient.TokenProvider, deadline: Date) async {
        do {
            _ = try await fetchKeyState(key, tenant: tenant, token: token, deadline: max(deadline, clock.now.addingTimeInterval(configuration.azureAttemptTimeout)))
        } catch {
            keyStates.refreshFailed(key)
        }
    }

    func open(_ blob: [UInt8], context: [UInt8]?, operation: KeyOperation, caller: CallerIdentity, deadline: Date) async throws -> (SecretBytes, WrappedKeyEnvelope, Tenant, String?) {
        let envelope: WrappedKeyEnvelope
        do {
            envelope = try WrappedKeyEnvelope(parsing: blob)
        } catch {
            throw Refusal(status: .failure(.invalidArgument, .blobInvalid, "not a wrapped key: \(error)"), tenant: nil)
        }
        // Read before the tenant is checked: a purge from here on (the tenant revoked or
        // suspended while this call is under way) keeps its key out of the cache.
        let epoch = cache.purgeEpoch
        // The blob names its tenant; the caller must be granted that tenant.
        let authorized = try await authorizedTenant(envelope.tenantID, for: operation, caller: caller, deadline: deadline)
        let tenant = authorized.tenant
        // Only the version comes from the blob (in Key Vault's grammar, checked at parsing): the
        // vault and key are the tenant's record, so a blob can neither send the tenant's token
        // elsewhere nor split one vault into several for the budget and the circuit breaker.
        guard KeyReference.canonicalVaultURL(envelope.vaultURL) == tenant.key.vaultURL, tenant.key.keyName.lowercased() == envelope.keyName.lowercased() else {
            throw Refusal(status: .failure(.invalidArgument, .blobInvalid, "the blob names a key that is not tenant \(tenant.id)'s"), tenant: tenant.id)
        }
        let context = try contextPolicy(context, blobBound: envelope.flags.contains(.contextBound), authorized: authorized, caller: caller)
        let cacheKey = DataKeyCache.Key(tenantID: tenant.id.rawValue, keyVersion: envelope.keyVersion, blob: blob, context: context)
        if let cached = cache.get(cacheKey) { return (cached, envelope, tenant, nil) }
        let source = try await source(for: tenant, deadline: deadline)
        let provider = tokens.vaultTokenProvider(
            tenantID: tenant.entraTenantID.rawValue, source: source, resource: AzureEnvironment.vaultTokenResource(forVaultURL: tenant.key.vaultURL))
        let key = VaultKeyID(vaultURL: tenant.key.vaultURL, name: tenant.key.keyName, version: envelope.keyVersion)
        // The shared call runs to its own deadline, not the first caller's: each caller waits
        // only until its own (SingleFlight), and the call stops once nobody waits. So a vault
        // paused after a 429 past this caller's deadline is answered here, with the pause as
        // the hint, not by a wait that ends at the deadline with none.
        do {
            try vault.refuseUnwrapIfPaused(vaultURL: tenant.key.vaultURL, deadline: deadline)
        } catch {
            throw await refusal(for: error, tenant: tenant, keyVersion: envelope.keyVersion, deadline: deadline)
        }
        let sharedDeadline = max(deadline, clock.now.addingTimeInterval(configuration.sharedCallTimeout))
        let opened: Opened
        do {
            opened = try await unwraps.run(cacheKey, deadline: deadline) { [self] in
                // A caller that missed the cache may arrive just after an identical unwrap finished:
                // the cache has it now, so no second vault call.
                if let cached = cache.get(cacheKey, recordingLookup: false) { return Opened(plaintext: cached, clientRequestID: nil) }
                var unwrapped: KeyOperationResult
                do {
                    unwrapped = try await tenantLimit.withPermit(tenant.id.rawValue) {
                        try await vault.unwrapKey(key, wrapped: envelope.wrappedEnvelopeKey, token: provider, deadline: sharedDeadline, expectedTenantID: tenant.entraTenantID.rawValue)
                    }
                } catch {
                    // A refusal waits for its store write only as long as the first caller's
                    // deadline allows (the others wait until their own, and usually came later),
                    // not the shared call's 30 s; at least a second, for a vault that answered
                    // just after that caller left. The write itself has longer (`loseAccess`).
                    let refusalDeadline = min(sharedDeadline, max(deadline, clock.now.addingTimeInterval(1)))
                    throw await self.refusal(for: error, tenant: tenant, keyVersion: envelope.keyVersion, deadline: refusalDeadline)
                }
                let envelopeKey = SecretBytes(unwrapped.value)
                unwrapped.value.zeroize()
                let plaintext: SecretBytes
                do {
                    plaintext = try EnvelopeCrypto.open(envelope, envelopeKey: envelopeKey, context: context)
                } catch {
                    throw Refusal(status: .failure(.invalidArgument, envelope.flags.contains(.contextBound) ? .contextMismatch : .blobInvalid, "the blob does not open: altered, or presented under another context"), tenant: tenant.id)
                }
                cache.put(cacheKey, plaintext, ifNotPurgedSince: epoch)
                return Opened(plaintext: plaintext, clientRequestID: unwrapped.clientRequestID)
            }
        } catch is SingleFlight<DataKeyCache.Key, Opened>.DeadlineExceeded {
            throw Refusal(status: .failure(.deadlineExceeded, .vaultUnavailable, "the customer's vault did not answer within this request's deadline", retryable: true), tenant: tenant.id)
        }
        return (opened.plaintext, envelope, tenant, opened.clientRequestID)
    }

    /// Whether a vault error is the vault refusing us (as opposed to failing or being slow).
    static func isRefusal(_ error: KeyVaultError) -> Bool {
        switch error.kind {
        case .forbiddenByRbac, .forbiddenByPolicy, .forbiddenByFirewall, .keyDisabled, .keyOperationForbidden, .keyExpired, .keyNotFound, .unauthorized,
            .challengeTenantMismatch:
            true
        default: false
        }
    }

    /// A server's Retry-After as the wire's `retry_after_ms`: finite, and at most five minutes
    /// whatever the server said (a vault asking for days must not park our callers, nor trap us).
    /// `maximum` is larger only for waits the broker set itself (an open circuit's configured time).
    static func retryAfterMilliseconds(_ seconds: Double?, default fallback: Double = 1, maximum: Double = 300) -> UInt32 {
        let value = seconds ?? fallback
        let bound = min(max(maximum, 0), 86_400)
        guard value.isFinite else { return UInt32(bound * 1000) }
        return UInt32((min(max(value, 0), bound) * 1000).rounded(.up))
    }

    /// Maps a failure of the identity chain or the vault to a status. Only a refusal of the whole
    /// tenant (its role, its application, its policy) counts as the customer's withdrawal, which
    /// purges its keys and tokens and marks it as having lost access; a refusal of one key version
    /// (`keyVersion`, for unwrap) fails this call alone.
    /// `deadline`: the request's (or the shared call's); a loss of access is waited for only within
    /// it, not after it, while its recording goes on (`loseAccess`).
    func refusal(for error: any Error, tenant: Tenant, keyVersion: String?, deadline: Date) async -> Refusal {
        if let refusal = error as? Refusal { return refusal }
        if error is TenantConcurrencyLimit.Exceeded {
            return Refusal(
                status: .failure(
                    .resourceExhausted, .overloaded,
                    "tenant \(tenant.id) already has \(tenantLimit.limit) vault calls in flight (its vault is slow or the load is high); retry shortly",
                    retryable: true, retryAfterMilliseconds: 100),
                tenant: tenant.id)
        }
        if let e = error as? KeyVaultError {
            if Self.isRefusal(e) { keyStates.invalidate(vaultURL: tenant.key.vaultURL, name: tenant.key.keyName) }
            // Invariant 3: service stops at the first 401/403 seen, whatever its inner code (a
            // firewall, one Key Vault adds later, a vault moved to another tenant): this replica's
            // cached plaintexts of the tenant go, so its next unwraps ask the vault, which decides.
            // Only a role or policy refusal (below) also marks the tenant lost in the store.
            if e.httpStatus == 401 || e.httpStatus == 403 { cache.purge(tenantID: tenant.id.rawValue) }
            let code = BoundedText.escaped(e.innerCode ?? e.code ?? e.kind.rawValue, limit: 64)
            switch e.kind {
            case .keyDisabled, .keyOperationForbidden, .keyExpired, .keyNotFound:
                if let keyVersion {
                    // Its plaintexts must not outlive the customer's decision in our cache either
                    // (invariant 3); the tenant's other keys are simply unwrapped again. The 403s
                    // were purged above; a 404 (the key deleted) is purged here.
                    if e.kind == .keyNotFound { cache.purge(tenantID: tenant.id.rawValue) }
                    return Refusal(
                        status: .failure(
                            .failedPrecondition, .keyVersionUnavailable,
                            "the customer's vault refused key version \(keyVersion) of tenant \(tenant.id) (\(code)): this blob cannot be opened until the customer enables that version; the tenant is served otherwise"),
                        tenant: tenant.id)
                }
                return Refusal(status: .failure(.failedPrecondition, .keyDisabled, "the customer's vault refused tenant \(tenant.id)'s key (\(code)); the customer must enable it"), tenant: tenant.id)
            case .badParameter where keyVersion != nil:
                // The vault cannot unwrap what this key version did not wrap: a forged or relabelled
                // blob, not a failing vault (nor a reason to count against its circuit).
                return Refusal(
                    status: .failure(.invalidArgument, .blobInvalid, "tenant \(tenant.id)'s vault could not unwrap this blob's key (\(code)): it was not wrapped by that key"),
                    tenant: tenant.id)
            case .forbiddenByRbac where clock.now.timeIntervalSince(tenant.keyAccessChangedAt) < configuration.rolePropagationSeconds:
                // A role granted (or a key changed) minutes ago may not have reached the vault yet;
                // a slot move or a validation since does not count (`Tenant.keyAccessChangedAt`).
                return Refusal(
                    status: .failure(
                        .unavailable, .accessRevokedByCustomer,
                        "the customer's vault does not yet honour the role for tenant \(tenant.id) (changed at \(tenant.keyAccessChangedAt)); role assignments take up to 10 minutes to apply: retry",
                        retryable: true, retryAfterMilliseconds: 5000),
                    tenant: tenant.id)
            case .forbiddenByRbac, .forbiddenByPolicy:
                await loseAccess(tenant, reason: .roleRemoved, deadline: deadline)
                return Refusal(
                    status: .failure(.permissionDenied, .accessRevokedByCustomer, "the customer's vault refused the broker (\(code)); tenant \(tenant.id) lost access and is probed again until it is back"),
                    tenant: tenant.id)
            case .unauthorized:
                // The vault could not verify our token (the token provider already replaced it
                // once): our side's trouble, not the customer's decision.
                await tokens.forgetTokens(tenantID: tenant.entraTenantID.rawValue)
                return Refusal(status: .failure(.unavailable, .identityUnavailable, "the customer's vault did not accept the broker's token for tenant \(tenant.id); retry", retryable: true, retryAfterMilliseconds: 1000), tenant: tenant.id)
            case .throttled, .budgetExhausted:
                return Refusal(status: .failure(.unavailable, .vaultThrottled, "the customer's vault is throttling (\(e.description))", retryable: true, retryAfterMilliseconds: Self.retryAfterMilliseconds(e.retryAfter)), tenant: tenant.id)
            case .circuitOpen:
                return Refusal(
                    status: .failure(
                        .unavailable, .vaultUnavailable, "the customer's vault is failing; calls to it are paused (\(e.serviceMessage))", retryable: true,
                        retryAfterMilliseconds: Self.retryAfterMilliseconds(e.retryAfter, maximum: configuration.circuitBreaker.openSeconds)),
                    tenant: tenant.id)
            case .timeout:
                return Refusal(status: .failure(.deadlineExceeded, .vaultUnavailable, "the customer's vault did not answer in time", retryable: true), tenant: tenant.id)
            default:
                return Refusal(status: .failure(.unavailable, .vaultUnavailable, "the customer's vault failed: \(e.description)", retryable: e.isRetryable), tenant: tenant.id)
            }
        }
        if let e = error as? AzureIdentityError {
            if case .entra(let aad) = e, let reason = Self.accessLossReason(for: aad) {
                await loseAccess(tenant, reason: reason, deadline: deadline)
                return Refusal(status: .failure(.permissionDenied, .accessRevokedByCustomer, "tenant \(tenant.id) refused the application (\(aad.description)); it lost access and is probed again until it is back"), tenant: tenant.id)
            }
            return Refusal(status: .failure(.unavailable, .identityUnavailable, "no token for tenant \(tenant.id): \(e.description)", retryable: e.isRetryable), tenant: tenant.id)
        }
        if error is CancellationError {
            return Refusal(status: .failure(.cancelled, .unspecified, "cancelled"), tenant: tenant.id)
        }
        return Refusal(status: .failure(.internal, .unspecified, "internal error: \(type(of: error))"), tenant: tenant.id)
    }

    /// What a customer's refusal at the token endpoint says the customer must undo; nil when the
    /// failure is not the customer's refusal (the kinds `AADSTSError.isCustomerRefusal` names).
    /// Every kind is listed, so a new one is a decision here, not silently "not a refusal".
    package static func accessLossReason(for aad: AADSTSError) -> AccessLossReason? {
        switch aad.kind {
        case .applicationNotInTenant: .applicationRemoved
        case .applicationDisabled: .applicationDisabled
        case .conditionalAccess: .conditionalAccess
        case .noMatchingFederatedCredential, .assertionExpired, .unknownTenant, .invalidClient, .invalidScope, .throttledOrUnavailable, .other: nil
        }
    }

    /// Stops serving the tenant at once: cached keys and tokens gone, state changed to lost
    /// access (detected, not typed in; the re-probe brings it back when the customer repairs it).
    ///
    /// The store's transition runs in a recording of its own (`lossRecordings`), bounded by
    /// `lossRecordingSeconds` at least, and shared by every call the customer's change refused
    /// while it runs: one store write however many calls were refused together, and recorded even
    /// when the call that saw it first gave up. That call waits for it as long as for the
    /// request's store reads (`storeBound`), so a slow or locked store never holds the refusal
    /// past its deadline; the others do not wait, since the write changes none of their answers.
    func loseAccess(_ tenant: Tenant, reason: AccessLossReason, deadline: Date) async {
        let observed = clock.now
        let purged = cache.purge(tenantID: tenant.id.rawValue)
        await tokens.forgetTokens(tenantID: tenant.entraTenantID.rawValue)
        keyStates.invalidate(vaultURL: tenant.key.vaultURL, name: tenant.key.keyName)
        // After the wait (the transition may come later; the recording drops it again then).
        defer { tenantRecords.invalidate(tenant.id) }
        let bound = storeBound(deadline)
        let recordingBound = max(bound, clock.now.addingTimeInterval(Self.lossRecordingSeconds))
        let (recording, started) = lossRecordings.recording(tenant.id) { [self] in
            await recordLoss(tenant, reason: reason, purgedKeys: purged, observedAt: observed, until: recordingBound)
        }
        guard started else {
            logger.debug("refused while the loss of access is recorded", metadata: ["fb.tenant": "\(tenant.id)", "fb.reason": "\(reason.rawValue)", "fb.purgedKeys": "\(purged)"])
            return
        }
        // Waiting ends at the bound or at this call's cancellation; the recording goes on.
        _ = try? await withStoreDeadline(bound, clock: clock) { await recording.value }
    }

    /// The least time a loss of access has to be recorded, whatever the deadline of the call that saw it.
    static let lossRecordingSeconds: Double = 10

    /// How much earlier than its steps say a validation's probe may have begun (the gaps between
    /// its steps are not timed), and the clock difference between replicas this allows for. The
    /// stored validation time is whole seconds (truncated), which adds up to a second more.
    static let validationMargin: Double = 1

    /// The transition to `access_lost`, by the recording `loseAccess` started; logs the loss once
    /// it is recorded (a call refused just after that finds the tenant changed, at info).
    ///
    /// A version conflict may mean the refusal was decided on a cached record an unrelated change
    /// (a slot move, a display name) had already replaced: the record is read again, and the loss
    /// recorded at its version if the tenant is still served under the same key access. Anything
    /// else is left to the change: another replica or an operator got there first, or a key
    /// changed. So is a validation that passed with every call of its probe made after the refusal
    /// was seen (`observedAt`): the customer repaired access, and the stale refusal would undo it.
    /// Only a validation counts, not the record's last update: a slot move says nothing about
    /// access, and the time of an update written by another host is that host's clock.
    package func recordLoss(_ tenant: Tenant, reason: AccessLossReason, purgedKeys: Int = 0, observedAt: Date, until bound: Date) async {
        defer { tenantRecords.invalidate(tenant.id) }
        func transition(at version: RecordVersion) async throws {
            _ = try await withStoreDeadline(bound, clock: clock) { [store] in
                try await store.transitionTenant(tenant.id, expectedVersion: version, event: .accessLost(reason), actor: "fedbroker")
            }
        }
        do {
            do {
                try await transition(at: tenant.version)
            } catch let error as BrokerError where error.code == .versionConflict {
                let current = try await withStoreDeadline(bound, clock: clock) { [store] in try await store.tenant(tenant.id) }
                guard current.state == .active, current.keyAccessChangedAt == tenant.keyAccessChangedAt else {
                    logger.info(
                        "tenant changed before its loss of access was recorded here; left to the change",
                        metadata: ["fb.tenant": "\(tenant.id)", "fb.state": "\(current.state.rawValue)"])
                    return
                }
                // Unreadable or not there: no validation to weigh, and the loss is recorded.
                let onboarding = try? await withStoreDeadline(bound, clock: clock) { [store] in try await store.onboarding(tenant.id) }
                if let validation = onboarding?.lastValidation, validation.succeeded,
                    validation.probeStarted.addingTimeInterval(-Self.validationMargin) > observedAt
                {
                    logger.info(
                        "a validation passed after the refusal was seen; loss of access not recorded",
                        metadata: ["fb.tenant": "\(tenant.id)", "fb.validatedAt": "\(validation.time)"])
                    return
                }
                try await transition(at: current.version)
            }
            logger.warning(
                "the customer's side refused the broker; tenant lost access",
                metadata: ["fb.tenant": "\(tenant.id)", "fb.reason": "\(reason.rawValue)", "fb.purgedKeys": "\(purgedKeys)"])
        } catch let error as BrokerError where error.code == .versionConflict {
            logger.info("tenant changed again while its loss of access was recorded; left to the change", metadata: ["fb.tenant": "\(tenant.id)"])
        } catch {
            logger.warning(
                "could not record that the tenant lost access",
                metadata: ["fb.tenant": "\(tenant.id)", "fb.reason": "\(reason.rawValue)", "fb.error": "\(error)"])
        }
    }

    func kid(_ e: WrappedKeyEnvelope) -> String { "\(e.vaultURL)/keys/\(e.keyName)/\(e.keyVersion)" }

    /// Stores the operation's audit record, returning once it is committed; false if it was not.
    func record(
        _ operation: KeyOperation, caller: CallerIdentity, tenant: TenantID?, keyVersion: String?, response: WireResponse,
        requestID: String, clientRequestID: String?, started: Date, deadline: Date
    ) async -> Bool {
        let ok = response.status.code == .ok
        let record = AuditRecord(
            time: started, actor: caller.description, tenantID: tenant, operation: "key.\(operation.rawValue)", keyVersion: keyVersion,
            outcome: ok ? .success : .failure(code: "\(response.status.reason)"),
            latencyMicroseconds: Int64(clock.now.timeIntervalSince(started) * 1_000_000), requestID: requestID,
            clientRequestID: clientRequestID, detail: ok ? nil : response.status.message)
        do {
            // Bounded like every store call: past the deadline the answer is withheld (the record
            // may still be written; the caller retries either way).
            // Half a second past a deadline already gone (DEADLINE_EXCEEDED is audited too; nobody waits for that answer).
            let bound = clock.now < deadline ? deadline : clock.now.addingTimeInterval(0.5)
            // Kept back, as for a store read (most of that reserve, since the record comes after
            // the store reads): the answer must still reach the caller.
            let total = clock.remaining(until: bound)
            let reserve = answerReserve * 0.6
            try await audit.appendDurably(record, deadline: bound.addingTimeInterval(-min(reserve, max(total, 0) * 0.6)), clock: clock)
            return true
        } catch is CancellationError {
            logger.debug("caller gone before its audit record was confirmed", metadata: ["fb.operation": "\(operation.rawValue)"])
            return false
        } catch {
            logger.error("audit record not stored; the operation's result is withheld", metadata: ["fb.error": "\(error)", "fb.operation": "\(operation.rawValue)"])
            return false
        }
    }
}
