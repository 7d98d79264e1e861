import Foundation

/// When to try again after a retryable failure: exponential backoff with full jitter, a
/// server's `Retry-After` taking precedence, and never past the caller's deadline.
///
/// A value type with no clock and no randomness of its own, so schedules are unit-tested
/// exactly: the caller passes `now` and a random fraction in 0..<1.
public struct Backoff: Sendable, Equatable {
    /// The first delay (before jitter), in seconds.
    public var initial: Double
    /// The cap on any one delay, in seconds.
    public var maximum: Double
    /// Growth per attempt.
    public var multiplier: Double
    /// How many retries at most (attempts = retries + 1).
    public var maxRetries: Int

    public init(initial: Double = 0.5, maximum: Double = 16, multiplier: Double = 2, maxRetries: Int = 6) {
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.maxRetries = maxRetries
    }

    public enum Decision: Sendable, Equatable {
        /// Wait this many seconds, then try again.
        case retry(after: Double)
        /// Stop: out of retries, or the wait would end past the deadline.
        case giveUp
    }

    /// The decision after failed attempt number `attempt` (1 for the first failure).
    /// - Parameters:
    ///   - retryAfter: the server's `Retry-After`, in seconds, if it sent one.
    ///   - jitter: a number in 0..<1; the delay is `base * (0.5 + jitter / 2)` (half jitter keeps
    ///     a floor so retries never bunch at zero).
    public func decision(afterAttempt attempt: Int, retryAfter: Double?, jitter: Double, now: Date, deadline: Date) -> Decision {
        guard attempt <= maxRetries else { return .giveUp }
        let delay: Double
        if let retryAfter, retryAfter >= 0 {
            delay = retryAfter
        } else {
            let base = min(maximum, initial * pow(multiplier, Double(attempt - 1)))
            delay = base * (0.5 + min(max(jitter, 0), 1) / 2)
        }
        guard now.addingTimeInterval(delay) < deadline else { return .giveUp }
        return .retry(after: delay)
    }
}
