import FedBrokerCore
import Foundation
import Synchronization

/// An error that may carry the server's Retry-After, which the retry loop honours.
package protocol RetryAfterHinting: Error {
    var retryAfterHint: Double? { get }
}

/// Runs `attempt` until it succeeds, fails for good, or the next wait would end past the
/// deadline. Retries only what the error says is retryable.
package func retrying<T>(
    deadline: Date, clock: any WallClock, backoff: Backoff, isRetryable: (any Error) -> Bool = defaultIsRetryable,
    jitter: () -> Double = { Double.random(in: 0..<1) }, _ attempt: () async throws -> T
) async throws -> T {
    var failures = 0
    while true {
        do {
            return try await attempt()
        } catch {
            let retryAfter = (error as? any RetryAfterHinting)?.retryAfterHint
            let underlying = error
            guard isRetryable(underlying) else { throw underlying }
            failures += 1
            switch backoff.decision(
                afterAttempt: failures, retryAfter: retryAfter, jitter: jitter(), now: clock.now, deadline: deadline)
            {
            case .retry(let delay): try await clock.sleep(seconds: delay)
            case .giveUp:
                // The last failure says more than "deadline exceeded" (throttled? unreachable?).
                throw underlying
            }
        }
    }
}

package func defaultIsRetryable(_ error: any Error) -> Bool {
    if let e = error as? AzureIdentityError { return e.isRetryable }
    return false
}

/// At most `limit` operations at once and `perSecond` per second against one endpoint (IMDS
/// allows 5 concurrent and 20 per second). Shared per endpoint across sources, since the limits
/// are per VM, not per identity.
final class ConcurrencyGate: Sendable {
    private struct State {
        var running = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let limit: Int
    private let state = Mutex(State())
    private let rate: RateLimiter

    init(limit: Int, perSecond: Int) {
        self.limit = limit
        self.rate = RateLimiter(limit: perSecond, windowSeconds: 1)
    }

    private static let registry = Mutex<[String: ConcurrencyGate]>([:])
    static func shared(for endpoint: String, limit: Int, perSecond: Int) -> ConcurrencyGate {
        registry.withLock { gates in
            if let gate = gates[endpoint] { return gate }
            let gate = ConcurrencyGate(limit: limit, perSecond: perSecond)
            gates[endpoint] = gate
            return gate
        }
    }

    /// Runs `body` once a slot is free and the per-second budget has room. A queued caller
    /// waits for at most one attempt timeout of the slot holders (their requests are bounded).
    func run<T>(clock: any WallClock, deadline: Date, _ body: () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        guard try await rate.admit("imds", clock: clock, deadline: deadline) else {
            throw AzureIdentityError.deadlineExceeded(lastFailure: "IMDS rate limit (20 requests per second)")
        }
        try Task.checkCancellation()
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let admitted = state.withLock { s -> Bool in
                if s.running < limit {
                    s.running += 1
                    return true
                }
                s.waiters.append(continuation)
                return false
            }
            if admitted { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty {
                s.running -= 1
                return nil
            }
            return s.waiters.removeFirst()  // the slot passes straight to the next waiter
        }
        next?.resume()
    }
}
