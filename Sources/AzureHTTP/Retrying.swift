import FedBrokerCore
import Foundation

/// An error that may carry the server's Retry-After, which the retry loop honours.
package protocol RetryAfterHinting: Error {
    var retryAfterHint: Double? { get }
}

/// Runs `attempt` until it succeeds, fails for good, or the next wait would end past the
/// deadline. Retries only what `isRetryable` says is retryable: each client knows its own
/// errors, so there is no default.
package func retrying<T>(
    deadline: Date, clock: any WallClock, backoff: Backoff, isRetryable: (any Error) -> Bool,
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
