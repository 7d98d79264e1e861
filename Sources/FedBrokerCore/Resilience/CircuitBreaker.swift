import Foundation

/// Whether one downstream (a customer's vault) is worth calling right now. After
/// `failureThreshold` consecutive failures of the downstream itself (5xx, timeouts, resets) the
/// circuit opens: calls are refused at once, with a retry hint, instead of each caller spending
/// its whole deadline on retries against a vault that is down. After `openSeconds` one probe is
/// let through (half-open); its success closes the circuit, its failure opens it again.
///
/// Answers that prove the vault is up — success, 4xx, a customer's refusal, throttling — are
/// not failures. A plain value, driven by the caller with the time: no clock, no I/O, no locks.
public struct CircuitBreaker: Sendable, Equatable {
    public struct Policy: Sendable, Equatable {
        public var failureThreshold: Int
        public var openSeconds: Double
        public init(failureThreshold: Int = 5, openSeconds: Double = 5) {
            precondition(failureThreshold > 0 && openSeconds > 0)
            self.failureThreshold = failureThreshold
            self.openSeconds = openSeconds
        }
    }

    public enum State: Sendable, Equatable {
        case closed(consecutiveFailures: Int)
        case open(until: Date)
        /// One probe is out since `probeStartedAt`; a probe that never reports (its caller was
        /// cancelled) is replaced after `openSeconds`.
        case halfOpen(probeStartedAt: Date)
    }

    public enum Admission: Sendable, Equatable {
        case allowed
        /// The one call that tests whether the downstream recovered.
        case probe
        case refused(retryAfterSeconds: Double)
    }

    public enum Outcome: Sendable, Equatable {
        /// The downstream answered (any answer that is not its own failure).
        case answered
        /// The downstream failed: 5xx, timeout, connection refused or reset.
        case failed
    }

    public let policy: Policy
    public private(set) var state: State = .closed(consecutiveFailures: 0)

    public init(policy: Policy = Policy()) { self.policy = policy }

    public mutating func admit(at now: Date) -> Admission {
        switch state {
        case .closed:
            return .allowed
        case .open(let until):
            guard now >= until else { return .refused(retryAfterSeconds: until.timeIntervalSince(now)) }
            state = .halfOpen(probeStartedAt: now)
            return .probe
        case .halfOpen(let started):
            guard now.timeIntervalSince(started) >= policy.openSeconds else {
                return .refused(retryAfterSeconds: policy.openSeconds - now.timeIntervalSince(started))
            }
            state = .halfOpen(probeStartedAt: now)
            return .probe
        }
    }

    /// Reports how a call admitted by `admit` ended. Returns true when this report changed
    /// whether the circuit is open (for the log line an SRE reads).
    ///
    /// - Parameter probe: whether this call was admitted as `.probe`. While half-open only the
    ///   probe decides: a call admitted long before the circuit opened, timing out now, says
    ///   nothing about whether the vault has recovered since.
    @discardableResult
    public mutating func record(_ outcome: Outcome, at now: Date, probe: Bool = false) -> Bool {
        switch (state, outcome) {
        case (.closed, .answered):
            state = .closed(consecutiveFailures: 0)
            return false
        case (.closed(let failures), .failed):
            if failures + 1 >= policy.failureThreshold {
                state = .open(until: now.addingTimeInterval(policy.openSeconds))
                return true
            }
            state = .closed(consecutiveFailures: failures + 1)
            return false
        case (.halfOpen, _) where !probe:
            return false
        case (.halfOpen, .answered):
            state = .closed(consecutiveFailures: 0)
            return true
        case (.halfOpen, .failed):
            state = .open(until: now.addingTimeInterval(policy.openSeconds))
            return false
        case (.open, _):
            // A call admitted before the circuit opened reports late: it changes nothing.
            return false
        }
    }

    /// The probe admitted never reached the downstream (its caller gave up first): the next
    /// caller may probe at once.
    public mutating func abandonProbe(at now: Date) {
        if case .halfOpen = state { state = .open(until: now) }
    }

    public var isOpen: Bool {
        if case .closed = state { return false }
        return true
    }
}
