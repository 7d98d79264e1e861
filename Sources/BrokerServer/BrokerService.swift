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
        public init(environment: AzureEnvironment) { self.environment = environment }
    }

    let configuration: Configuration
    let store: any BrokerStore
    let audit: AuditWriter
    public let tokens: CrossTenantTokenProvider
    public let vault: KeyVaultClient
    public let cache: DataKeyCache
    let httpClient: HTTPClient
    let clock: any WallClock
    let logger: Logger
    let tenantLimit: TenantConcurrencyLimit
    let callerRecords: RecordCache<String, Caller?>
    let tenantRecords: RecordCache<TenantID, Tenant>
    let slotRecords: RecordCache<FICSlotID, FICSlot>
    /// Every slot's assertion source (IMDS or a federated token file), shared with slot jobs.
    public let assertionSources: AssertionSourceCatalog
    /// Whether this broker can serve (`/readyz`, the framed Health).
    public let readiness: Readiness
    /// Identical concurrent unwraps (same tenant, version, blob and context) share one vault call.
    private let unwraps = SingleFlight<DataKeyCache.Key, SecretBytes>()

    public init(
        configuration: Configuration, store: any BrokerStore, audit: AuditWriter, httpClient: HTTPClient,
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
        do {
            switch request.method {
            case .health:
                // OK either way, so the client reads the body: NOT_SERVING is an answer, not a failure.
                let ready = await readiness.report().ready
                return .with {
                    $0.status = .ok
                    $0.health = .with { $0.status = ready ? "SERVING" : "NOT_SERVING"; $0.serverVersion = configuration.serverVersion }
                }
            case .generateDataKey(let r):
                let tenant = try await authorizedTenant(r.tenant, for: .generateDataKey, caller: caller)
                tenantID = tenant.id
                let dataKey = SecretBytes(SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) })
                let (envelope, requestID) = try await seal(dataKey, context: r.context.isEmpty ? nil : Array(r.context), tenant: tenant, deadline: deadline)
                keyVersion = envelope.keyVersion
                clientRequestID = requestID
                response = .with {
                    $0.status = .ok
                    $0.generateDataKey = .with {
                        $0.plaintext = Data(dataKey.bytes)
                        $0.blob = Data(envelope.serialized())
                        $0.keyID = kid(envelope)
                    }
                }
            case .wrap(let r):
                let tenant = try await authorizedTenant(r.tenant, for: .wrap, caller: caller)
                tenantID = tenant.id
                guard !r.plaintext.isEmpty, r.plaintext.count <= configuration.maximumWrapPlaintext else {
                    throw Refusal(status: .failure(.invalidArgument, .unspecified, "plaintext must be 1-\(configuration.maximumWrapPlaintext) bytes"), tenant: tenant.id)
                }
                let (envelope, requestID) = try await seal(SecretBytes(r.plaintext), context: r.context.isEmpty ? nil : Array(r.context), tenant: tenant, deadline: deadline)
                keyVersion = envelope.keyVersion
                clientRequestID = requestID
                response = .with {
                    $0.status = .ok
                    $0.wrap = .with { $0.blob = Data(envelope.serialized()); $0.keyID = kid(envelope) }
                }
            case .unwrap(let r):
                let (plaintext, envelope, requestID) = try await open(Array(r.blob), context: r.context.isEmpty ? nil : Array(r.context), operation: .unwrap, caller: caller, deadline: deadline)
                tenantID = TenantID(rawValue: envelope.tenantID)
                keyVersion = envelope.keyVersion
                clientRequestID = requestID
                response = .with {
                    $0.status = .ok
                    $0.unwrap = .with { $0.plaintext = Data(plaintext.bytes); $0.keyID = kid(envelope) }
                }
            case .rewrap(let r):
                let context = r.context.isEmpty ? nil : Array(r.context)
                let (plaintext, envelope, _) = try await open(Array(r.blob), context: context, operation: .rewrap, caller: caller, deadline: deadline)
                let tenant = try await authorizedTenant(envelope.tenantID, for: .rewrap, caller: caller)
                tenantID = tenant.id
                let (fresh, requestID) = try await seal(plaintext, context: context, tenant: tenant, deadline: deadline)
                keyVersion = fresh.keyVersion
                clientRequestID = requestID
                response = .with {
                    $0.status = .ok
                    $0.rewrap = .with { $0.blob = Data(fresh.serialized()); $0.keyID = kid(fresh) }
                }
            case .keyStatus(let r):
                let tenant = try await authorizedTenant(r.tenant, for: .keyStatus, caller: caller, requireServable: false)
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
                clientRequestID: clientRequestID, started: started)
            if !stored, response.status.code == .ok {
                return .failure(
                    .failure(.unavailable, .auditUnavailable, "the audit record of this \(operation.rawValue) could not be stored, so its result is withheld; retry", retryable: true))
            }
        }
        return response
    }

    // MARK: Steps

    /// The tenant, if `caller` may perform `operation` on it and (for key operations) it is served.
    func authorizedTenant(_ name: String, for operation: KeyOperation, caller: CallerIdentity, requireServable: Bool = true) async throws -> Tenant {
        guard let id = TenantID(rawValue: name) else {
            throw Refusal(status: .failure(.invalidArgument, .tenantUnknown, "'\(name)' is not a tenant id"), tenant: nil)
        }
        // Authorization first, so an unauthorized caller learns nothing about which tenants exist.
        let record = try await callerRecords.value(for: caller.commonName) { try await store.caller(identity: caller.commonName) }
        guard let record, record.enabled, record.isAllowed(operation, for: id) else {
            throw Refusal(
                status: .failure(.permissionDenied, .notAuthorized, "caller \(caller) is not granted \(operation.rawValue) for tenant \(id)"),
                tenant: id)
        }
        let tenant: Tenant
        do {
            tenant = try await tenantRecords.value(for: id) { try await store.tenant(id) }
        } catch let error as BrokerError where error.code == .notFound {
            throw Refusal(status: .failure(.notFound, .tenantUnknown, "no tenant \(id) is registered"), tenant: id)
        }
        guard requireServable else { return tenant }
        switch tenant.state {
        case .active: return tenant
        case .suspended:
            throw Refusal(status: .failure(.failedPrecondition, .tenantSuspended, "tenant \(id) is suspended: its customer withdrew access to the key"), tenant: id)
        default:
            throw Refusal(status: .failure(.failedPrecondition, .tenantSuspended, "tenant \(id) is \(tenant.state.rawValue), not active"), tenant: id)
        }
    }

    /// The assertion source of the tenant's slot, if the slot may serve (invariant 1).
    func source(for tenant: Tenant) async throws -> any AssertionSource {
        guard let slotID = tenant.slotID else {
            throw Refusal(status: .failure(.failedPrecondition, .identityUnavailable, "tenant \(tenant.id) has no FIC slot"), tenant: tenant.id)
        }
        let slot = try await slotRecords.value(for: slotID) { try await store.slot(slotID) }
        guard slot.state.isServing else {
            throw Refusal(status: .failure(.failedPrecondition, .identityUnavailable, "tenant \(tenant.id)'s slot \(slotID) is \(slot.state.rawValue)"), tenant: tenant.id)
        }
        return assertionSources.source(forClientID: slot.identity.managedIdentityClientID)
    }

    func seal(_ dataKey: SecretBytes, context: [UInt8]?, tenant: Tenant, deadline: Date) async throws -> (WrappedKeyEnvelope, String) {
        let source = try await source(for: tenant)
        let key = VaultKeyID(vaultURL: tenant.key.vaultURL, name: tenant.key.keyName, version: tenant.key.keyVersion)
        let provider = tokens.vaultTokenProvider(tenantID: tenant.entraTenantID.rawValue, source: source)
        let requestID = Mutex("")
        let wrapping = EnvelopeCrypto.Wrapping(tenantID: tenant.id.rawValue, vaultURL: key.vaultURL, keyName: key.name) { [vault] envelopeKey in
            let result = try await vault.wrapKey(key, plaintext: envelopeKey, token: provider, deadline: deadline, expectedTenantID: tenant.entraTenantID.rawValue)
            requestID.withLock { $0 = result.clientRequestID }
            guard let version = VaultKeyID(kid: result.kid)?.version else { throw BrokerError(.invalidArgument, "the vault's kid has no version") }
            return (version, result.value)
        }
        do {
            let envelope = try await tenantLimit.withPermit(tenant.id.rawValue) { try await EnvelopeCrypto.seal(dataKey, context: context, with: wrapping) }
            return (envelope, requestID.withLock { $0 })
        } catch {
            throw await refusal(for: error, tenant: tenant)
        }
    }

    func open(_ blob: [UInt8], context: [UInt8]?, operation: KeyOperation, caller: CallerIdentity, deadline: Date) async throws -> (SecretBytes, WrappedKeyEnvelope, String?) {
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
        let tenant = try await authorizedTenant(envelope.tenantID, for: operation, caller: caller)
        guard tenant.key.vaultURL == envelope.vaultURL.lowercased(), tenant.key.keyName.lowercased() == envelope.keyName.lowercased() else {
            throw Refusal(status: .failure(.invalidArgument, .blobInvalid, "the blob names a key that is not tenant \(tenant.id)'s"), tenant: tenant.id)
        }
        let cacheKey = DataKeyCache.Key(tenantID: tenant.id.rawValue, keyVersion: envelope.keyVersion, blob: blob, context: context)
        if let cached = cache.get(cacheKey) { return (cached, envelope, nil) }
        let source = try await source(for: tenant)
        let provider = tokens.vaultTokenProvider(tenantID: tenant.entraTenantID.rawValue, source: source)
        let key = VaultKeyID(vaultURL: envelope.vaultURL, name: envelope.keyName, version: envelope.keyVersion)
        let requestID = Mutex<String?>(nil)
        let plaintext = try await unwraps.run(cacheKey) { [vault, cache, tenantLimit] in
            // A caller that missed the cache may arrive just after an identical unwrap finished:
            // the cache has it now, so no second vault call.
            if let cached = cache.get(cacheKey, recordingLookup: false) { return cached }
            let unwrapped: KeyOperationResult
            do {
                unwrapped = try await tenantLimit.withPermit(tenant.id.rawValue) {
                    try await vault.unwrapKey(key, wrapped: envelope.wrappedEnvelopeKey, token: provider, deadline: deadline, expectedTenantID: tenant.entraTenantID.rawValue)
                }
            } catch {
                throw await self.refusal(for: error, tenant: tenant)
            }
            requestID.withLock { $0 = unwrapped.clientRequestID }
            let plaintext: SecretBytes
            do {
                plaintext = try EnvelopeCrypto.open(envelope, envelopeKey: SecretBytes(unwrapped.value), context: context)
            } catch {
                throw Refusal(status: .failure(.invalidArgument, envelope.flags.contains(.contextBound) ? .contextMismatch : .blobInvalid, "the blob does not open: altered, or presented under another context"), tenant: tenant.id)
            }
            cache.put(cacheKey, plaintext, ifNotPurgedSince: epoch)
            return plaintext
        }
        return (plaintext, envelope, requestID.withLock { $0 })
    }

    /// Maps a failure of the identity chain or the vault to a status; a customer's refusal
    /// also purges the tenant's cached keys and suspends it.
    func refusal(for error: any Error, tenant: Tenant) async -> Refusal {
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
            if e.isCustomerRevocation {
                await revoke(tenant, reason: e.kind == .keyDisabled ? .keyDisabled : .roleRemoved)
                let reason: WireReason = e.kind == .keyDisabled ? .keyDisabled : .accessRevokedByCustomer
                return Refusal(status: .failure(.permissionDenied, reason, "the customer's vault refused the broker (\(e.innerCode ?? e.code ?? e.kind.rawValue)); tenant \(tenant.id) is suspended until access is restored"), tenant: tenant.id)
            }
            switch e.kind {
            case .throttled, .budgetExhausted:
                return Refusal(status: .failure(.unavailable, .vaultThrottled, "the customer's vault is throttling (\(e.description))", retryable: true, retryAfterMilliseconds: UInt32((e.retryAfter ?? 1) * 1000)), tenant: tenant.id)
            case .keyNotFound:
                return Refusal(status: .failure(.failedPrecondition, .keyDisabled, "the customer's key version does not exist in the vault"), tenant: tenant.id)
            case .circuitOpen:
                return Refusal(
                    status: .failure(
                        .unavailable, .vaultUnavailable, "the customer's vault is failing; calls to it are paused (\(e.serviceMessage))", retryable: true,
                        retryAfterMilliseconds: UInt32(((e.retryAfter ?? 1) * 1000).rounded(.up))),
                    tenant: tenant.id)
            case .timeout:
                return Refusal(status: .failure(.deadlineExceeded, .vaultUnavailable, "the customer's vault did not answer in time", retryable: true), tenant: tenant.id)
            default:
                return Refusal(status: .failure(.unavailable, .vaultUnavailable, "the customer's vault failed: \(e.description)", retryable: e.isRetryable), tenant: tenant.id)
            }
        }
        if let e = error as? AzureIdentityError {
            if case .entra(let aad) = e, aad.isCustomerRefusal {
                await revoke(tenant, reason: .applicationRemoved)
                return Refusal(status: .failure(.permissionDenied, .accessRevokedByCustomer, "tenant \(tenant.id) refused the application (\(aad.description)); suspended"), tenant: tenant.id)
            }
            return Refusal(status: .failure(.unavailable, .identityUnavailable, "no token for tenant \(tenant.id): \(e.description)", retryable: e.isRetryable), tenant: tenant.id)
        }
        return Refusal(status: .failure(.internal, .unspecified, "internal error: \(type(of: error))"), tenant: tenant.id)
    }

    /// Stops serving the tenant at once: cached keys gone, state suspended (detected, not typed in).
    func revoke(_ tenant: Tenant, reason: SuspensionReason) async {
        let purged = cache.purge(tenantID: tenant.id.rawValue)
        // After the transition (or its failure): a load racing it cannot keep the active record.
        defer { tenantRecords.invalidate(tenant.id) }
        logger.warning("customer revoked access; tenant suspended", metadata: ["fb.tenant": "\(tenant.id)", "fb.reason": "\(reason.rawValue)", "fb.purgedKeys": "\(purged)"])
        do {
            _ = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .accessRevoked(reason), actor: "fedbroker")
        } catch {
            logger.warning("could not mark the tenant suspended", metadata: ["fb.tenant": "\(tenant.id)", "fb.error": "\(error)"])
        }
    }

    func kid(_ e: WrappedKeyEnvelope) -> String { "\(e.vaultURL)/keys/\(e.keyName)/\(e.keyVersion)" }

    /// Stores the operation's audit record, returning once it is committed; false if it was not.
    func record(
        _ operation: KeyOperation, caller: CallerIdentity, tenant: TenantID?, keyVersion: String?, response: WireResponse,
        clientRequestID: String?, started: Date
    ) async -> Bool {
        let ok = response.status.code == .ok
        let record = AuditRecord(
            time: started, actor: caller.description, tenantID: tenant, operation: "key.\(operation.rawValue)", keyVersion: keyVersion,
            outcome: ok ? .success : .failure(code: "\(response.status.reason)"),
            latencyMicroseconds: Int64(clock.now.timeIntervalSince(started) * 1_000_000), requestID: UUID().uuidString.lowercased(),
            clientRequestID: clientRequestID, detail: ok ? nil : response.status.message)
        do {
            try await audit.appendDurably(record)
            return true
        } catch {
            logger.error("audit record not stored; the operation's result is withheld", metadata: ["fb.error": "\(error)", "fb.operation": "\(operation.rawValue)"])
            return false
        }
    }
}
