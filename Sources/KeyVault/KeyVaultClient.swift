import AsyncHTTPClient
import AzureHTTP
import AzureWire
import Crypto
import CryptoExtras
import FedBrokerCore
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// The Key Vault keys data plane: get a key, wrap, unwrap. Pooled connections come from the
/// `HTTPClient` the caller configures (trust roots included). Tokens come from the caller,
/// which caches them; this client never does.
///
/// Every call: the vault URL checked against the allowed vault domains (a bearer token never
/// goes to any other host), a fresh `x-ms-client-request-id` (returned for audit, kept across
/// retries), the vault's budget respected before sending, one token refresh on a 401, retries
/// of 429, 5xx, timeouts and resets only — exponential backoff with jitter, honouring
/// Retry-After, each attempt bounded — and never past the caller's deadline. A 429 pauses every
/// call to that vault, not only the one that got it (`ThrottlePause`).
public final class KeyVaultClient: Sendable {
    public struct Configuration: Sendable {
        public var apiVersion = "7.4"
        public var backoff = Backoff(initial: 0.5, maximum: 16, maxRetries: 6)
        /// Transactions per window per vault. Key Vault allows 1,000 per 10 s for RSA-3072
        /// software keys; the default keeps 20 % headroom for clock edges and other clients.
        public var budget = 800
        public var budgetWindowSeconds = 10
        /// The longest one attempt may take, so a hung connection leaves time to retry.
        public var attemptTimeout: Double = 10
        /// How long a public key fetched for local wrap is used before it is fetched again, so a
        /// disabled or rotated key stops being used locally within this bound.
        public var publicKeyTTL: Double = 300
        /// Host suffixes a vault URL may have. Tokens are sent to no other host.
        public var allowedVaultHostSuffixes = AzureEnvironment.azureVaultHostSuffixes
        /// When a vault counts as down (consecutive 5xx/timeouts/resets) and how long calls to it
        /// are refused at once before one probe is let through.
        public var circuitBreaker = CircuitBreaker.Policy()
        /// How long a vault's 429 keeps every call to it from being sent: its Retry-After, or
        /// without one 1, 2, 4, 8, 16 s for 429s in a row.
        public var throttlePause = ThrottlePause.Policy()
        public init() {}

        /// The defaults, with the vault domains the environment allows.
        public init(environment: AzureEnvironment) {
            self.allowedVaultHostSuffixes = environment.vaultHostSuffixes
        }
    }

    /// A token for the vault's resource. `rejected` is the token the vault just refused (401):
    /// the provider must not hand it out again.
    public typealias TokenProvider = @Sendable (_ rejected: String?, _ deadline: Date) async throws -> String

    let httpClient: HTTPClient
    let clock: any WallClock
    let configuration: Configuration
    let budget: RateLimiter
    /// One breaker per vault host: a vault that is down costs its callers milliseconds, not
    /// their whole deadline, and no other vault is affected.
    private let breakers = Mutex<[String: CircuitBreaker]>([:])
    /// One pause per vault host that answered 429 lately; entries leave once idle.
    private let pauses = Mutex<[String: ThrottlePause]>([:])
    private let publicKeys = Mutex<[VaultKeyID: (bundle: KeyBundle, fetchedAt: Date)]>([:])

    let logger: Logger

    public init(
        httpClient: HTTPClient, clock: any WallClock = SystemWallClock(), configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "fedbroker.keyvault")
    ) {
        self.logger = logger
        self.httpClient = httpClient
        self.clock = clock
        self.configuration = configuration
        self.budget = RateLimiter(limit: configuration.budget, windowSeconds: configuration.budgetWindowSeconds)
    }

    /// `/keys/{name}/{version}[/{operation}]`, refused before anything is sent unless the name
    /// and version are ones Key Vault issues (a version from a tampered blob could otherwise name
    /// another operation: `v1/decrypt?…`), each segment percent-encoded besides.
    static func path(_ id: VaultKeyID, operation: String?) throws(KeyVaultError) -> String {
        let version = id.version ?? ""
        guard KeyReference.isValidName(id.name), version.isEmpty || KeyReference.isValidVersion(version) else {
            throw KeyVaultError(
                kind: .badParameter,
                serviceMessage: "refused before sending: a key name is 1-127 letters, digits or dashes and a version 32 hex digits",
                clientRequestID: "none")
        }
        let segments = ["keys", id.name, version] + (operation.map { [$0] } ?? [])
        return "/" + segments.map(AzureHTTP.percentEncoded).joined(separator: "/")
    }

    /// This replica's share of every vault's budget when `replicas` replicas share it (see
    /// docs/operations.md, "Many replicas"): the budget is divided, never multiplied.
    public func shareBudget(among replicas: Int) {
        budget.setLimit(configuration.budget / max(1, replicas))
    }

    /// Transactions per window this replica may send to one vault now.
    public var budgetShare: Int { budget.limit }

    /// Refuses vault URLs that are not https on an allowed vault domain.
    public func checkVaultURL(_ vaultURL: String) throws(KeyVaultError) {
        guard let url = URL(string: vaultURL), url.scheme == "https", let host = url.host?.lowercased(), !host.isEmpty,
            configuration.allowedVaultHostSuffixes.contains(where: { host.hasSuffix($0.lowercased()) || host == $0.lowercased() })
        else {
            throw KeyVaultError(
                kind: .invalidVaultURL,
                serviceMessage: "\(vaultURL) is not an https URL on an allowed vault domain (\(configuration.allowedVaultHostSuffixes.joined(separator: ", ")))",
                clientRequestID: "none")
        }
    }

    // MARK: Operations

    /// Asks the vault, without a token, who it is: the tenant and resource in its 401 challenge.
    public func challenge(vaultURL: String, deadline: Date) async throws -> VaultChallenge {
        try checkVaultURL(vaultURL)
        let clientRequestID = AzureHTTP.newClientRequestID()
        var request = HTTPClientRequest(url: "\(VaultKeyID(vaultURL: vaultURL, name: "x").vaultURL)/keys?api-version=\(configuration.apiVersion)")
        request.headers.add(name: "x-ms-client-request-id", value: clientRequestID)
        let response: AzureHTTP.Response
        let sentAt = ContinuousClock.now
        do {
            response = try await AzureHTTP.send(
                request, with: httpClient, deadline: deadline, clock: clock, attemptTimeout: configuration.attemptTimeout)
        } catch let failure as TransportFailure {
            let error = KeyVaultError.transport(failure, clientRequestID: clientRequestID)
            VaultMetrics.record(.challenge, VaultMetrics.outcome(of: error), seconds: Self.seconds(since: sentAt))
            throw error
        }
        guard response.status == 401, let header = response.headers.first(name: "WWW-Authenticate"),
            let challenge = VaultChallenge(header: header)
        else {
            VaultMetrics.record(.challenge, .error, seconds: Self.seconds(since: sentAt))
            throw KeyVaultError(
                kind: .other, httpStatus: response.status, serviceMessage: "the vault did not answer with a bearer challenge",
                clientRequestID: clientRequestID, requestID: response.headers.first(name: "x-ms-request-id"))
        }
        // The 401 with its challenge is the answer asked for.
        VaultMetrics.record(.challenge, .success, seconds: Self.seconds(since: sentAt))
        return challenge
    }

    /// - Parameter expectedTenantID: when given, a 401 whose challenge names another tenant fails
    ///   at once as `challengeTenantMismatch` (the vault is not the customer's).
    public func getKey(
        _ id: VaultKeyID, token: @escaping TokenProvider, deadline: Date, expectedTenantID: String? = nil
    ) async throws -> Audited<KeyBundle> {
        let path = try Self.path(id, operation: nil)
        let (answer, clientRequestID) = try await perform(
            .get, .GET, vault: id, path: path, body: nil, token: token, deadline: deadline, expectedTenantID: expectedTenantID)
        let bundle = try Self.keyBundle(from: answer, clientRequestID: clientRequestID)
        let fetchedAt = clock.now
        publicKeys.withLock { $0[id] = (bundle, fetchedAt) }
        return Audited(value: bundle, clientRequestID: clientRequestID)
    }

    public func wrapKey(
        _ id: VaultKeyID, plaintext: [UInt8], algorithm: KeyWrapAlgorithm = .rsaOAEP256, token: @escaping TokenProvider, deadline: Date,
        expectedTenantID: String? = nil
    ) async throws -> KeyOperationResult {
        try await keyOperation(
            .wrapkey, id, value: plaintext, algorithm: algorithm, token: token, deadline: deadline, expectedTenantID: expectedTenantID)
    }

    public func unwrapKey(
        _ id: VaultKeyID, wrapped: [UInt8], algorithm: KeyWrapAlgorithm = .rsaOAEP256, token: @escaping TokenProvider, deadline: Date,
        expectedTenantID: String? = nil
    ) async throws -> KeyOperationResult {
        try await keyOperation(
            .unwrapkey, id, value: wrapped, algorithm: algorithm, token: token, deadline: deadline, expectedTenantID: expectedTenantID)
    }

    /// Wraps with the key's public part, fetched once and cached with its version, instead of a
    /// round trip. The cached key must still be enabled, inside its validity window and allow
    /// wrapKey; its `kid` must name the key asked for. Unwrap is always remote.
    public func wrapKeyLocally(
        _ id: VaultKeyID, plaintext: [UInt8], algorithm: KeyWrapAlgorithm = .rsaOAEP256, token: @escaping TokenProvider, deadline: Date
    ) async throws -> KeyOperationResult {
        let cached = publicKeys.withLock { $0[id] }
        let bundle: KeyBundle
        var clientRequestID = "local"
        if let cached, clock.now.timeIntervalSince(cached.fetchedAt) < configuration.publicKeyTTL {
            bundle = cached.bundle
        } else {
            let fetched = try await getKey(id, token: token, deadline: deadline)
            bundle = fetched.value
            clientRequestID = fetched.clientRequestID
        }
        guard let kid = bundle.id, kid.vaultURL.lowercased() == id.vaultURL.lowercased(), kid.name.lowercased() == id.name.lowercased(),
            id.version == nil || kid.version == id.version, bundle.enabled, bundle.keyOps.contains("wrapKey"),
            !(bundle.notBefore.map { $0 > clock.now } ?? false), !(bundle.expires.map { $0 <= clock.now } ?? false)
        else {
            return try await wrapKey(id, plaintext: plaintext, algorithm: algorithm, token: token, deadline: deadline)
        }
        let padding: _RSA.Encryption.Padding =
            switch algorithm {
            case .rsaOAEP256: .PKCS1_OAEP_SHA256
            case .rsaOAEP: .PKCS1_OAEP
            case .rsa15: ._WEAK_AND_INSECURE_PKCS_V1_5
            }
        do {
            let publicKey = try _RSA.Encryption.PublicKey(n: bundle.modulus, e: bundle.exponent)
            let sealed = try publicKey.encrypt(plaintext, padding: padding)
            return KeyOperationResult(kid: bundle.kid, value: Array(sealed), clientRequestID: clientRequestID, local: true)
        } catch {
            throw KeyVaultError(kind: .badParameter, serviceMessage: "local wrap failed: \(error)", clientRequestID: clientRequestID)
        }
    }

    private func keyOperation(
        _ operation: VaultMetrics.Operation, _ id: VaultKeyID, value: [UInt8], algorithm: KeyWrapAlgorithm, token: @escaping TokenProvider,
        deadline: Date, expectedTenantID: String?
    ) async throws -> KeyOperationResult {
        let body = #"{"alg":"\#(algorithm.rawValue)","value":"\#(Base64URL.encode(value))"}"#
        let path = try Self.path(id, operation: operation.rawValue)
        let (answer, clientRequestID) = try await perform(
            operation, .POST, vault: id, path: path, body: body, token: token, deadline: deadline, expectedTenantID: expectedTenantID)
        let result: VaultOperationBody
        do {
            result = try VaultOperationBody(parsing: answer)
        } catch {
            throw KeyVaultError(kind: .other, httpStatus: 200, serviceMessage: error.detail, clientRequestID: clientRequestID)
        }
        return KeyOperationResult(kid: result.kid, value: result.value, clientRequestID: clientRequestID, local: false)
    }

    // MARK: The request loop

    private func perform(
        _ operation: VaultMetrics.Operation, _ method: HTTPMethod, vault id: VaultKeyID, path: String, body: String?, token: @escaping TokenProvider, deadline: Date,
        expectedTenantID: String?
    ) async throws -> (Data, String) {
        try checkVaultURL(id.vaultURL)
        let clientRequestID = AzureHTTP.newClientRequestID()
        var rejected: String?
        var refreshedAfter401 = false
        let answer = try await retrying(
            deadline: deadline, clock: clock, backoff: configuration.backoff,
            isRetryable: { ($0 as? KeyVaultError)?.isRetryable ?? false }
        ) { () async throws -> Data in
            while true {
                // First, so a paused vault's call takes neither a probe of its circuit nor its budget.
                let paused = try refuseIfPaused(operation, authority: id.vaultAuthority, deadline: deadline, clientRequestID: clientRequestID)
                if paused > 0 {
                    try await clock.sleep(seconds: paused)
                    continue
                }
                let admission = breakers.withLock { all -> CircuitBreaker.Admission in
                    var breaker = all[id.vaultAuthority] ?? CircuitBreaker(policy: configuration.circuitBreaker)
                    defer { all[id.vaultAuthority] = breaker }
                    return breaker.admit(at: clock.now)
                }
                if case .refused(let retryAfter) = admission {
                    VaultMetrics.record(operation, .circuitOpen, seconds: nil)
                    throw KeyVaultError(
                        kind: .circuitOpen, serviceMessage: "the vault failed repeatedly; calls to it are refused for \(Int(retryAfter.rounded(.up))) s",
                        retryAfter: retryAfter, clientRequestID: clientRequestID)
                }
                let probe = admission == .probe
                // Whether this attempt told the breaker anything. A probe that ends without a
                // verdict (no budget, no token, cancelled, a deadline spent before the vault had
                // its time) goes back, so the next caller probes at once.
                var judged = false
                defer { if probe, !judged { release(probeOf: id.vaultAuthority) } }
                func judge(_ outcome: CircuitBreaker.Outcome) {
                    observe(outcome, vault: id.vaultAuthority, probe: probe)
                    judged = true
                }
                guard try await budget.admit(id.vaultAuthority, clock: clock, deadline: deadline) else {
                    VaultMetrics.record(operation, .throttled, seconds: nil)
                    throw KeyVaultError(
                        kind: .budgetExhausted, serviceMessage: "the vault's budget has no room before the deadline",
                        clientRequestID: clientRequestID)
                }
                let bearer = try await token(rejected, deadline)
                rejected = nil
                var request = HTTPClientRequest(url: "\(id.vaultURL)\(path)?api-version=\(configuration.apiVersion)")
                request.method = method
                request.headers.add(name: "Authorization", value: "Bearer \(bearer)")
                request.headers.add(name: "x-ms-client-request-id", value: clientRequestID)
                request.headers.add(name: "x-ms-return-client-request-id", value: "true")
                request.headers.add(name: "Accept", value: "application/json")
                if let body {
                    request.headers.add(name: "Content-Type", value: "application/json")
                    request.body = .bytes(ByteBuffer(string: body))
                }
                let response: AzureHTTP.Response
                // A timeout is the vault's failure only when the attempt had its full time: a
                // caller that came with (or spent on pacing and tokens) a nearly spent deadline
                // says nothing about the vault.
                let fullAttempt = clock.remaining(until: deadline) >= configuration.attemptTimeout
                let sentAt = ContinuousClock.now
                do {
                    response = try await AzureHTTP.send(
                        request, with: httpClient, deadline: deadline, clock: clock, attemptTimeout: configuration.attemptTimeout)
                } catch let failure as TransportFailure {
                    let error = KeyVaultError.transport(failure, clientRequestID: clientRequestID)
                    VaultMetrics.record(operation, VaultMetrics.outcome(of: error), seconds: Self.seconds(since: sentAt))
                    if error.kind == .invalidVaultURL {
                        judge(.answered)
                    } else if failure != .deadlineExceeded || fullAttempt {
                        judge(.failed)
                    }
                    throw error
                }
                judge(response.status >= 500 ? .failed : .answered)
                if response.status != 429 { answered(vault: id.vaultAuthority) }
                if (200..<300).contains(response.status) {
                    VaultMetrics.record(operation, .success, seconds: Self.seconds(since: sentAt))
                    return response.data
                }
                var error = Self.error(from: response, clientRequestID: clientRequestID, now: clock.now)
                if response.status == 429 {
                    // The retry below, and the caller's hint, wait for the pause every call now keeps.
                    error.retryAfter = throttled(vault: id.vaultAuthority, retryAfter: error.retryAfter, clientRequestID: clientRequestID)
                }
                VaultMetrics.record(operation, VaultMetrics.outcome(of: error), seconds: Self.seconds(since: sentAt))
                if error.kind == .unauthorized {
                    // A vault answering for another tenant is not the customer's: no refresh helps.
                    if let expectedTenantID, let header = response.headers.first(name: "WWW-Authenticate"),
                        let challenge = VaultChallenge(header: header), challenge.tenantID.lowercased() != expectedTenantID.lowercased()
                    {
                        error.kind = .challengeTenantMismatch
                        error.serviceMessage = "the vault answers for tenant \(challenge.tenantID), not \(expectedTenantID)"
                        throw error
                    }
                    // An expired or rejected token: one refresh, then the 401 stands.
                    if !refreshedAfter401 {
                        refreshedAfter401 = true
                        rejected = bearer
                        continue
                    }
                }
                throw error
            }
        }
        return (answer, clientRequestID)
    }

    private func observe(_ outcome: CircuitBreaker.Outcome, vault: String, probe: Bool) {
        let changed = breakers.withLock { all -> (Bool, Bool) in
            var breaker = all[vault] ?? CircuitBreaker(policy: configuration.circuitBreaker)
            defer { all[vault] = breaker }
            return (breaker.record(outcome, at: clock.now, probe: probe), breaker.isOpen)
        }
        guard changed.0 else { return }
        if changed.1 {
            logger.warning(
                "vault circuit opened: calls refused at once until a probe succeeds",
                metadata: ["fb.vault": "\(vault)", "fb.openSeconds": "\(configuration.circuitBreaker.openSeconds)"])
        } else {
            logger.info("vault circuit closed: the vault answers again", metadata: ["fb.vault": "\(vault)"])
        }
    }

    /// A 429 from `vault`: every call to it waits (or is refused at once, past its deadline) until
    /// the pause ends. Returns the seconds until then. Logged when a pause begins, not for each
    /// 429 of one already under way.
    private func throttled(vault: String, retryAfter: Double?, clientRequestID: String) -> Double {
        let now = clock.now
        let (seconds, began, consecutive) = pauses.withLock { all -> (Double, Bool, Int) in
            if all.count >= Self.maximumPauses { all = all.filter { !$0.value.isIdle(at: now) } }
            var pause = all[vault] ?? ThrottlePause(policy: configuration.throttlePause)
            let began = pause.wait(at: now) == 0
            pause.throttled(retryAfter: retryAfter, at: now)
            all[vault] = pause
            return (pause.wait(at: now), began, pause.consecutive)
        }
        if began {
            logger.warning(
                "vault throttling: calls to it are paused",
                metadata: [
                    "fb.vault": "\(BoundedText.escaped(vault, limit: 256))", "fb.pauseSeconds": "\(seconds)", "fb.consecutive429s": "\(consecutive)",
                    "fb.retryAfter": "\(retryAfter.map { "\($0)" } ?? "none")", "fb.clientRequestID": "\(clientRequestID)",
                ])
        }
        return seconds
    }

    /// Refuses an unwrap of `vaultURL` at once, not sent, when the vault's pause after a 429
    /// lasts past `deadline`. For a call whose own deadline is longer than its caller's (an
    /// unwrap shared by identical requests runs to its own): the caller asks here first, so it
    /// gets the pause's time as its hint instead of waiting for it until its deadline.
    public func refuseUnwrapIfPaused(vaultURL: String, deadline: Date) throws(KeyVaultError) {
        _ = try refuseIfPaused(.unwrapkey, authority: VaultKeyID.authority(ofVaultURL: vaultURL), deadline: deadline, clientRequestID: "none")
    }

    /// Seconds until calls to `authority` may go again (0: now), or the refusal when that is
    /// past `deadline` (counted as throttled, not sent).
    private func refuseIfPaused(_ operation: VaultMetrics.Operation, authority: String, deadline: Date, clientRequestID: String) throws(KeyVaultError) -> Double {
        let now = clock.now
        let paused = pauses.withLock { $0[authority]?.remaining(at: now) ?? 0 }
        guard paused > 0, now.addingTimeInterval(paused) >= deadline else { return paused }
        VaultMetrics.record(operation, .throttled, seconds: nil)
        throw KeyVaultError(
            kind: .throttled, serviceMessage: "the vault throttled the broker; calls to it are paused for \(Int(paused.rounded(.up))) s",
            retryAfter: paused, clientRequestID: clientRequestID)
    }

    /// Any answer but a 429 from `vault`: its next 429 starts the backoff again.
    private func answered(vault: String) {
        let now = clock.now
        pauses.withLock { all in
            guard var pause = all[vault] else { return }
            pause.answered()
            all[vault] = pause.isIdle(at: now) ? nil : pause
        }
    }

    /// Vaults whose pauses are remembered before idle ones are dropped; a replica serves a few
    /// thousand vaults at most, so this bounds the map, not the pauses.
    static let maximumPauses = 4096

    /// A half-open probe that never reached the vault: let the next caller probe at once.
    private func release(probeOf vault: String) {
        breakers.withLock { $0[vault]?.abandonProbe(at: clock.now) }
    }

    /// How many of the vaults this client has called are in each circuit state now (the
    /// `fedbroker_circuits` gauge: counts, never a label per vault).
    public func circuitCounts() -> CircuitCounts {
        let now = clock.now
        return breakers.withLock { CircuitCounts(states: $0.values.map(\.state), now: now) }
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    static func error(from response: AzureHTTP.Response, clientRequestID: String, now: Date) -> KeyVaultError {
        let body = VaultErrorBody(parsing: response.data)
        return KeyVaultError(
            kind: KeyVaultError.classify(status: response.status, code: body.code, innerCode: body.innerCode), httpStatus: response.status,
            code: body.code, innerCode: body.innerCode, akvCode: body.akvCode, serviceMessage: body.message,
            retryAfter: parseRetryAfter(response.headers.first(name: "Retry-After"), now: now), clientRequestID: clientRequestID,
            requestID: response.headers.first(name: "x-ms-request-id"))
    }

    static func keyBundle(from answer: Data, clientRequestID: String) throws -> KeyBundle {
        let body: VaultKeyBody
        do {
            body = try VaultKeyBody(parsing: answer)
        } catch {
            throw KeyVaultError(kind: .other, httpStatus: 200, serviceMessage: error.detail, clientRequestID: clientRequestID)
        }
        return KeyBundle(
            kid: body.kid, keyType: body.keyType, keyOps: body.keyOps, modulus: body.modulus, exponent: body.exponent,
            enabled: body.enabled, notBefore: body.notBefore, expires: body.expires, recoveryLevel: body.recoveryLevel,
            recoverableDays: body.recoverableDays, tags: body.tags)
    }
}
