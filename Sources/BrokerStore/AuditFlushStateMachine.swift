/// When audit records go to the store: the life of both audit writers as a plain struct, so its
/// rules are tested without a disk, a database or a clock (sans-IO, like the connection state
/// machines). `AuditJournal` (shipping its journal) and `AuditWriter` (its in-memory queue) feed it
/// events and perform the actions it returns.
///
/// - open: idle; records (or the interval) wake it to flush.
/// - flushing: one batch is on its way to the store; wakes meanwhile are remembered, so records
///   that arrive during a batch follow at once. Others who want a flush wait for this one.
/// - backingOff: the store failed; a wake does nothing before `until` (the pause doubles per
///   consecutive failure up to `maximumDelay`). The records wait safely (journal or queue). An
///   explicit flush request (`flushRequested`) still goes: someone is waiting on it.
/// - closing: no more appends; flush what is left, with at most `closingAttempts` failures and
///   shorter pauses (`closingDelay`, doubling up to `closingMaximumDelay`).
/// - closed: done, or given up (what was not written stays in the journal for the next start, or
///   pending in the writer). An explicit flush request after that is one more attempt.
struct AuditFlushStateMachine {
    enum State: Equatable {
        case open
        case flushing
        case backingOff(until: ContinuousClock.Instant)
        case closing(flushing: Bool)
        case closed
    }

    enum Action: Equatable {
        case none
        /// Read the next batch from the journal and write it to the store.
        case ship
        /// Nothing to do before this instant (then call `wake`).
        case sleep(until: ContinuousClock.Instant)
        /// Closed with everything shipped.
        case finished
        /// Closed with records left in the journal: the store kept failing.
        case gaveUp
    }

    private(set) var state: State = .open
    /// Failed batches in a row (0 after a success): the back-off's exponent, and what readiness reports.
    private(set) var consecutiveFailures = 0
    private var wokenWhileFlushing = false
    private var closingFailures = 0

    let baseDelay: Duration
    let maximumDelay: Duration
    let closingAttempts: Int
    let closingDelay: Duration
    let closingMaximumDelay: Duration

    init(
        baseDelay: Duration, maximumDelay: Duration, closingAttempts: Int, closingDelay: Duration? = nil,
        closingMaximumDelay: Duration = .seconds(2)
    ) {
        self.baseDelay = baseDelay
        self.maximumDelay = max(baseDelay, maximumDelay)
        self.closingAttempts = max(1, closingAttempts)
        self.closingDelay = closingDelay ?? baseDelay
        self.closingMaximumDelay = closingMaximumDelay
    }

    /// Whether a batch is out (so a flush requested now waits for it).
    var isFlushing: Bool {
        switch state {
        case .flushing, .closing(flushing: true): true
        case .open, .backingOff, .closing(flushing: false), .closed: false
        }
    }

    /// Records were committed to the journal, or a timer fired.
    mutating func wake(now: ContinuousClock.Instant) -> Action {
        switch state {
        case .open:
            state = .flushing
            return .ship
        case .flushing, .closing(flushing: true):
            wokenWhileFlushing = true
            return .none
        case .backingOff(let until):
            guard now >= until else { return .sleep(until: until) }
            state = .flushing
            return .ship
        case .closing(flushing: false):
            state = .closing(flushing: true)
            return .ship
        case .closed:
            return .none
        }
    }

    /// Someone asked for a flush and waits for its result (an appender whose record must be
    /// durable, a full batch, a test): unlike `wake`, a back-off does not hold it back, since the
    /// caller would otherwise only learn of the failure later. `.none`: a batch is out; wait for
    /// it, then ask again.
    mutating func flushRequested() -> Action {
        switch state {
        case .open, .backingOff:
            state = .flushing
            return .ship
        case .flushing, .closing(flushing: true):
            return .none
        case .closing(flushing: false), .closed:
            // After closing, one more attempt (a manual flush of what shutdown could not write);
            // it counts against the closing attempts like the others.
            state = .closing(flushing: true)
            return .ship
        }
    }

    /// The batch reached the store; `more`: the journal holds records not yet shipped.
    mutating func shipped(more: Bool) -> Action {
        consecutiveFailures = 0
        let again = more || wokenWhileFlushing
        wokenWhileFlushing = false
        switch state {
        case .flushing:
            guard again else {
                state = .open
                return .none
            }
            return .ship
        case .closing:
            guard again else {
                state = .closed
                return .finished
            }
            state = .closing(flushing: true)
            return .ship
        case .open, .backingOff, .closed:
            return .none  // no batch was out; nothing to account
        }
    }

    /// The store refused or failed the batch; its records stay in the journal.
    mutating func failed(now: ContinuousClock.Instant) -> Action {
        consecutiveFailures += 1
        wokenWhileFlushing = false
        switch state {
        case .flushing:
            let until = now.advanced(by: delay(failures: consecutiveFailures))
            state = .backingOff(until: until)
            return .sleep(until: until)
        case .closing:
            closingFailures += 1
            guard closingFailures < closingAttempts else {
                state = .closed
                return .gaveUp
            }
            state = .closing(flushing: false)
            // Shorter pauses while closing: the process is waiting to exit.
            return .sleep(until: now.advanced(by: closingPause(failures: closingFailures)))
        case .open, .backingOff, .closed:
            return .none
        }
    }

    /// The driver stopped (its task was cancelled) after `.ship` was decided and before a batch
    /// went out: no batch is out after all.
    mutating func notShipped() {
        switch state {
        case .flushing: state = .open
        case .closing(flushing: true): state = .closing(flushing: false)
        case .open, .backingOff, .closing(flushing: false), .closed: break
        }
    }

    /// Shutdown began: ship what is left now (a back-off is cut short), then close.
    mutating func close() -> Action {
        switch state {
        case .open, .backingOff:
            state = .closing(flushing: true)
            return .ship
        case .flushing:
            state = .closing(flushing: true)
            return .none  // the batch under way continues; its result decides
        case .closing, .closed:
            return .none
        }
    }

    func delay(failures: Int) -> Duration {
        Self.doubling(baseDelay, failures: failures, maximum: maximumDelay)
    }

    func closingPause(failures: Int) -> Duration {
        Self.doubling(closingDelay, failures: failures, maximum: closingMaximumDelay)
    }

    /// `base` after the first failure, doubling with each further one; never more than `maximum`.
    static func doubling(_ base: Duration, failures: Int, maximum: Duration) -> Duration {
        guard failures > 1 else { return min(base, maximum) }
        return min(base * (1 << min(failures - 1, 16)), maximum)
    }
}
