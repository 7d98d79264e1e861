import AzureHTTP
import FedBrokerCore
import Foundation

/// Access tokens for customer tenants: assertion (per FIC slot's source) → exchange in the
/// customer tenant → token, both cached (`TokenCache`: refresh ahead, single flight,
/// stale-while-valid), with retries inside the caller's deadline. A missing FIC match is
/// retried (it clears once a new FIC has propagated); an expired assertion is replaced once.
public final class CrossTenantTokenProvider: Sendable {
    /// Which token: the customer tenant, the FIC slot's assertion source, the resource.
    public struct Key: Hashable, Sendable {
        public var tenantID: String
        public var sourceIdentity: String
        public var resource: String
    }

    /// Assertion sources by identity, so the assertion cache can fetch by key.
    struct SourceKey: Hashable, Sendable {
        let source: any AssertionSource
        static func == (a: Self, b: Self) -> Bool { a.source.identity == b.source.identity }
        func hash(into hasher: inout Hasher) { hasher.combine(source.identity) }
    }

    public let exchange: ClientAssertionExchange
    let clock: any WallClock
    let backoff: Backoff
    let assertions: TokenCache<SourceKey>
    let tokens: TokenCache<Key>
    private let sources: SourceRegistry

    public init(
        exchange: ClientAssertionExchange, clock: any WallClock = SystemWallClock(),
        backoff: Backoff = Backoff(initial: 0.5, maximum: 16, maxRetries: 10),
        jitter: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) {
        self.exchange = exchange
        self.clock = clock
        self.backoff = backoff
        let sources = SourceRegistry()
        self.sources = sources
        let assertions = TokenCache<SourceKey>(clock: clock, jitter: jitter) { key, deadline in
            try await key.source.assertion(deadline: deadline)
        }
        self.assertions = assertions
        self.tokens = TokenCache<Key>(clock: clock, jitter: jitter) { key, deadline in
            guard let source = sources[key.sourceIdentity] else {
                throw AzureIdentityError.malformedResponse(service: "token provider", detail: "unknown assertion source \(key.sourceIdentity)")
            }
            return try await Self.fetch(
                key: key, source: source, exchange: exchange, assertions: assertions, clock: clock, backoff: backoff, jitter: jitter,
                deadline: deadline)
        }
    }

    /// A token for `resource` in `tenantID`, obtained through the FIC slot whose assertions
    /// `source` provides. `rejected` is a token the resource just refused: it is dropped first.
    public func token(
        tenantID: String, source: any AssertionSource, resource: String, deadline: Date, rejected: String? = nil
    ) async throws -> AccessToken {
        sources.register(source)
        let key = Key(tenantID: tenantID, sourceIdentity: source.identity, resource: resource)
        if let rejected { await tokens.invalidate(key, token: rejected) }
        return try await tokens.token(for: key, deadline: deadline)
    }

    /// Forgets every cached token for the customer tenant `tenantID`: it withdrew access (a token
    /// still valid must not keep being presented), or the vault would not accept one.
    public func forgetTokens(tenantID: String) async {
        await tokens.removeAll { $0.tenantID == tenantID }
    }

    /// An assertion from `source` through the same cache the exchanges use: the cached one while
    /// it has validity left (no request), else one fetch shared with every concurrent caller.
    /// Readiness asks here, so checking a slot never costs IMDS more than serving does.
    public func assertion(from source: any AssertionSource, deadline: Date) async throws -> AccessToken {
        sources.register(source)
        return try await assertions.token(for: SourceKey(source: source), deadline: deadline)
    }

    /// A Key Vault token provider for one tenant through one FIC slot.
    public func vaultTokenProvider(
        tenantID: String, source: any AssertionSource, resource: String = "https://vault.azure.net"
    ) -> @Sendable (_ rejected: String?, _ deadline: Date) async throws -> String {
        { [self] rejected, deadline in
            try await self.token(tenantID: tenantID, source: source, resource: resource, deadline: deadline, rejected: rejected).token
        }
    }

    /// An assertion failure inside the exchange loop: its source retried already, so the loop
    /// must not retry it again.
    private struct AssertionStepFailure: Error {
        var underlying: any Error
    }

    private static func fetch(
        key: Key, source: any AssertionSource, exchange: ClientAssertionExchange, assertions: TokenCache<SourceKey>,
        clock: any WallClock, backoff: Backoff, jitter: @escaping @Sendable () -> Double, deadline: Date
    ) async throws -> AccessToken {
        var replacedAssertion = false
        func assertion() async throws -> AccessToken {
            do {
                return try await assertions.token(for: SourceKey(source: source), deadline: deadline)
            } catch {
                throw AssertionStepFailure(underlying: error)
            }
        }
        // A missing FIC match is worth waiting out only while the slot's FIC may be propagating.
        let isRetryable: (any Error) -> Bool = { error in
            guard let e = error as? AzureIdentityError else { return false }
            if case .entra(let aad) = e, aad.kind == .noMatchingFederatedCredential {
                return source.credentialPropagatingUntil.map { clock.now < $0 } ?? false
            }
            return e.isRetryable
        }
        do {
            return try await retrying(deadline: deadline, clock: clock, backoff: backoff, isRetryable: isRetryable, jitter: jitter) {
                let current = try await assertion()
                do {
                    return try await exchange.exchange(tenantID: key.tenantID, resource: key.resource, assertion: current.token, deadline: deadline)
                } catch let failure as AzureIdentityError {
                    // Entra refused the assertion's time window: fetch a fresh one and try again at once, once.
                    if case .entra(let e) = failure, e.kind == .assertionExpired, !replacedAssertion {
                        replacedAssertion = true
                        await assertions.invalidate(SourceKey(source: source), token: current.token)
                        return try await exchange.exchange(
                            tenantID: key.tenantID, resource: key.resource, assertion: try await assertion().token, deadline: deadline)
                    }
                    throw failure
                }
            }
        } catch let failure as AssertionStepFailure {
            throw failure.underlying
        }
    }
}

/// Sources seen so far, by identity.
final class SourceRegistry: Sendable {
    private let sources = Synchronization.Mutex<[String: any AssertionSource]>([:])
    func register(_ source: any AssertionSource) {
        sources.withLock { if $0[source.identity] == nil { $0[source.identity] = source } }
    }
    subscript(identity: String) -> (any AssertionSource)? { sources.withLock { $0[identity] } }
}

import Synchronization
