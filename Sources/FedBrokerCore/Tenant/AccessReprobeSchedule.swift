import Foundation

/// When the broker asks an `access_lost` tenant's vault again: first `minimumSeconds` after the
/// loss, then at doubling intervals up to every `maximumSeconds`.
///
/// Why backoff and not a fixed interval: most losses are repaired within minutes (a role removed
/// by mistake, a key disabled during a rotation) and should come back quickly, while a customer who
/// left for good should not cost their vault, Entra and our budget a probe a minute forever.
///
/// Why the schedule is computed from stored progress and not kept in a replica's memory: every
/// replica reads the same progress row, so one probe runs per due time whichever replica takes it,
/// and a restart neither resets the backoff nor forgets a tenant.
///
/// The bound a customer can rely on: once access works again, service resumes within
/// `maximumSeconds` plus the time one probe takes.
public struct AccessReprobeSchedule: Hashable, Sendable {
    /// Where one loss episode's probing stands, as the store keeps it.
    public struct Progress: Hashable, Sendable {
        /// The tenant's record version when this episode's progress was started: a tenant that
        /// changed since (lost access again, or had its key version moved) starts a new episode.
        public var episode: RecordVersion
        /// Probes started in this episode.
        public var attempts: Int
        public var nextProbeAt: Date

        public init(episode: RecordVersion, attempts: Int, nextProbeAt: Date) {
            self.episode = episode
            self.attempts = attempts
            self.nextProbeAt = nextProbeAt
        }
    }

    /// What `advance` decided.
    public struct Decision: Hashable, Sendable {
        /// The progress to store (unchanged when no probe is due).
        public var progress: Progress
        /// Whether the caller runs probe number `progress.attempts` now.
        public var probeNow: Bool
    }

    /// The standard schedule: one minute, doubling to fifteen.
    public static let standard = AccessReprobeSchedule(checkedMinimum: 60, maximum: 900)

    public let minimumSeconds: Double
    public let maximumSeconds: Double

    /// - Throws: `invalidArgument` unless 0 < minimum ≤ maximum, both finite.
    public init(minimumSeconds: Double, maximumSeconds: Double) throws(BrokerError) {
        guard minimumSeconds.isFinite, maximumSeconds.isFinite, minimumSeconds > 0, maximumSeconds >= minimumSeconds else {
            throw BrokerError(.invalidArgument, "the re-probe interval must satisfy 0 < minimum <= maximum, both finite")
        }
        self.init(checkedMinimum: minimumSeconds, maximum: maximumSeconds)
    }

    private init(checkedMinimum: Double, maximum: Double) {
        self.minimumSeconds = checkedMinimum
        self.maximumSeconds = maximum
    }

    /// Seconds from the start of probe number `attempts` (0: the loss itself) to the next probe.
    public func delay(afterAttempts attempts: Int) -> Double {
        var delay = self.minimumSeconds
        var doublings = max(attempts, 0)
        while doublings > 0, delay < self.maximumSeconds {
            delay *= 2
            doublings -= 1
        }
        return min(delay, self.maximumSeconds)
    }

    /// Decides whether a probe is due now for a tenant that lost access at `lostAt` (its record's
    /// version then is `episode`), given the stored `progress` (nil: none yet), and what to store.
    ///
    /// The next due time is stored before the probe runs, so a replica that dies mid-probe does not
    /// stall the schedule, and a second replica that asks at the same moment finds nothing due. A
    /// due time further ahead than `maximumSeconds` (the clock moved back) counts as due.
    public func advance(_ progress: Progress?, lostAt: Date, episode: RecordVersion, now: Date) -> Decision {
        var current =
            progress.flatMap { $0.episode == episode ? $0 : nil }
            ?? Progress(episode: episode, attempts: 0, nextProbeAt: lostAt.addingTimeInterval(self.minimumSeconds))
        let due = current.nextProbeAt <= now || current.nextProbeAt.timeIntervalSince(now) > self.maximumSeconds
        guard due else { return Decision(progress: current, probeNow: false) }
        current.attempts += 1
        current.nextProbeAt = now.addingTimeInterval(self.delay(afterAttempts: current.attempts))
        return Decision(progress: current, probeNow: true)
    }
}
