import Foundation

/// What one downstream's 429 asks of every later call to it, not only of the call that got it.
///
/// Without it, a throttled call gave up at its own deadline while every new request went
/// straight to the vault and met the next 429: each answer a transaction the vault counts against
/// the window the customer's other clients share. Now the vault is left alone until its
/// `Retry-After` (capped at `maximumSeconds`), or, without one (Key Vault's 429s usually carry
/// none), for a backoff that doubles with each 429 in a row: 1, 2, 4, 8, 16 s, as Azure's throttling
/// guidance recommends. Any other answer resets the backoff, but a pause already asked for stands.
///
/// A plain value, driven by the caller with the time: no clock, no I/O, no locks.
public struct ThrottlePause: Sendable, Equatable {
    public struct Policy: Sendable, Equatable {
        /// The pause after a first 429 without `Retry-After`, in seconds; doubled per 429 in a row.
        public var initialSeconds: Double
        /// The longest pause, whatever the server's hint: a proxy's or a bug's `Retry-After` of
        /// minutes must not stop every tenant of the vault for that long. One call tries after it.
        public var maximumSeconds: Double
        public init(initialSeconds: Double = 1, maximumSeconds: Double = 16) {
            self.initialSeconds = max(initialSeconds, 0.001)
            self.maximumSeconds = max(maximumSeconds, self.initialSeconds)
        }
    }

    public let policy: Policy
    /// 429s in a row, without another answer between them.
    public private(set) var consecutive = 0
    /// No call before this instant.
    public private(set) var until: Date?

    public init(policy: Policy = Policy()) { self.policy = policy }

    /// A 429, answered at `now`, with the server's `Retry-After` if it sent one (already parsed
    /// and bounded). Returns when calls may go again.
    ///
    /// During a pause, a 429 answers a call sent before the pause began: it says nothing new, so
    /// it does not climb the backoff (a burst of calls all refused together would otherwise jump
    /// straight to the longest pause); only a longer `Retry-After` extends the pause. After a
    /// quiet spell longer than the longest pause, 429s are no longer "in a row".
    @discardableResult
    public mutating func throttled(retryAfter: Double?, at now: Date) -> Date {
        let hint = retryAfter.flatMap { $0.isFinite && $0 > 0 ? min($0, policy.maximumSeconds) : nil }
        if let until, wait(at: now) > 0 {
            let extended = hint.map { max(until, now.addingTimeInterval($0)) } ?? until
            self.until = extended
            return extended
        }
        if let until, now.timeIntervalSince(until) > policy.maximumSeconds { consecutive = 0 }
        consecutive += 1
        let seconds: Double
        if let hint {
            seconds = hint
        } else {
            // 2^(n-1), computed without overflow for any count: the cap is reached by n = 64 at most.
            let doublings = Double(min(consecutive - 1, 63))
            seconds = min(policy.initialSeconds * pow(2, doublings), policy.maximumSeconds)
        }
        let end = now.addingTimeInterval(seconds)
        until = end
        return end
    }

    /// Any answer that is not a 429: the backoff starts again at its first step next time.
    public mutating func answered() { consecutive = 0 }

    /// Seconds from `now` until calls may go again; 0 when they may go now. Never more than the
    /// longest pause, even if the wall clock stepped back since the pause began.
    public func wait(at now: Date) -> Double {
        guard let until else { return 0 }
        return min(max(0, until.timeIntervalSince(now)), policy.maximumSeconds)
    }

    /// `wait(at:)`, for the caller about to wait: a pause that lies further ahead than the longest
    /// pause (the wall clock stepped back since it began) is first pulled back to that, so the
    /// vault is not left alone for the whole step.
    public mutating func remaining(at now: Date) -> Double {
        if let until, until.timeIntervalSince(now) > policy.maximumSeconds { self.until = now.addingTimeInterval(policy.maximumSeconds) }
        return wait(at: now)
    }

    /// Nothing left to remember at `now`: no pause under way, and no 429s counted or only ones
    /// that are no longer "in a row" (a quiet spell longer than the longest pause since).
    public func isIdle(at now: Date) -> Bool {
        guard wait(at: now) == 0 else { return false }
        guard consecutive > 0, let until else { return true }
        return now.timeIntervalSince(until) > policy.maximumSeconds
    }
}
