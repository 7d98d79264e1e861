import AzureIdentity
import BrokerStore
import CoreMetrics
import FedBrokerCore
import Foundation
import Logging
import Synchronization

/// Whether this broker can serve now: what `/readyz` answers and what the framed Health reports
/// (SERVING / NOT_SERVING).
///
/// Ready means every required check passes:
/// - `store`: the store answers a cheap read within `storeTimeoutSeconds`;
/// - `audit`: the audit writer takes records (not closed, its queue under its bound, flushes not
///   failing for longer than `auditFailureGraceSeconds`), since no key leaves unaudited;
/// - `identity`: an active FIC slot has a valid assertion, from the cache the serving path uses
///   (so a check costs IMDS nothing while assertions are cached, and at most what serving would);
/// - `canary` (only when configured): the deep canary's last round trip succeeded; required only
///   with `canaryRequired`, otherwise reported without affecting readiness.
///
/// A report is reused for `cacheSeconds`, and concurrent askers share one evaluation, so probes
/// from every direction cannot hammer the store or IMDS. The checks themselves are the pure
/// functions of `Readiness+Checks.swift`; this actor only does their I/O, each step bounded.
public actor Readiness {
    public struct Configuration: Sendable {
        /// How long a report is reused.
        public var cacheSeconds: Double = 5
        /// The longest the store may take to answer the readiness read (and the slots read).
        public var storeTimeoutSeconds: Double = 2
        /// The longest one active slot's assertion may take (cached: no wait at all).
        public var assertionTimeoutSeconds: Double = 3
        /// Active slots tried, in order (the last good one first), before `identity` fails.
        public var assertionAttempts = 2
        /// How long audit flushes may keep failing before the broker stops being ready.
        public var auditFailureGraceSeconds: Double = 30
        /// The deep canary; nil: none.
        public var canary: Canary.Configuration?
        /// Whether a failing canary makes the broker not ready (otherwise it is only reported).
        public var canaryRequired = false

        public init() {}
    }

    public typealias Check = HealthReport.Check
    public typealias Report = HealthReport

    /// The I/O the checks need, as closures, so the logic runs in tests without any.
    public struct Probes: Sendable {
        /// A cheap read that proves the store answers.
        public var storeRead: @Sendable () async throws -> Void
        public var slots: @Sendable () async throws -> [FICSlot]
        public var audit: @Sendable () async -> AuditWriter.Health
        /// An assertion for the slot's managed identity (from the shared cache when it has one).
        public var assertion: @Sendable (_ slot: FICSlot, _ deadline: Date) async throws -> AccessToken

        public init(
            storeRead: @escaping @Sendable () async throws -> Void, slots: @escaping @Sendable () async throws -> [FICSlot],
            audit: @escaping @Sendable () async -> AuditWriter.Health,
            assertion: @escaping @Sendable (_ slot: FICSlot, _ deadline: Date) async throws -> AccessToken
        ) {
            self.storeRead = storeRead
            self.slots = slots
            self.audit = audit
            self.assertion = assertion
        }
    }

    public nonisolated let configuration: Configuration
    /// The deep canary, when configured; `BrokerApp` runs it on its interval.
    public nonisolated let canary: Canary?
    private let probes: Probes
    private let clock: any WallClock
    private let logger: Logger
    private var cached: Report?
    private var inFlight: Task<Report, Never>?
    /// The slot whose assertion last proved good: tried first next time.
    private var lastGoodSlot: FICSlotID?

    public init(configuration: Configuration, probes: Probes, canary: Canary? = nil, clock: any WallClock = SystemWallClock(), logger: Logger) {
        self.configuration = configuration
        self.probes = probes
        self.canary = canary
        self.clock = clock
        self.logger = logger
    }

    /// The latest report if it is younger than `maximumAge` (default `cacheSeconds`), else a new
    /// one; callers arriving during an evaluation share it.
    public func report(maximumAge: Double? = nil) async -> Report {
        let now = clock.now
        if let cached, now >= cached.checkedAt, now.timeIntervalSince(cached.checkedAt) < (maximumAge ?? configuration.cacheSeconds) {
            return cached
        }
        if let inFlight { return await inFlight.value }
        let task = Task { await self.evaluate() }
        inFlight = task
        let report = await task.value
        inFlight = nil
        cached = report
        return report
    }

    /// Runs every check once, each bounded by its timeout.
    private func evaluate() async -> Report {
        let startedAt = clock.now
        var checks: [Check] = []

        let storeStarted = ContinuousClock.now
        let store: Result<Duration, ProbeFailure>
        do {
            try await Self.bounded(configuration.storeTimeoutSeconds, probes.storeRead)
            store = .success(ContinuousClock.now - storeStarted)
        } catch {
            store = .failure(ProbeFailure(error))
        }
        checks.append(Self.storeCheck(store))

        checks.append(Self.auditCheck(await probes.audit(), graceSeconds: configuration.auditFailureGraceSeconds))
        checks.append(await identityCheck())

        if let canary {
            checks.append(
                Self.canaryCheck(
                    canary.lastResult, configuration: canary.configuration, required: configuration.canaryRequired, now: clock.now))
        }

        let report = Report(checks: checks, checkedAt: startedAt)
        Gauge(label: "fedbroker_ready").record(report.ready ? 1 : 0)
        if report.ready != (cached?.ready ?? true) {
            if report.ready {
                logger.info("broker ready again")
            } else {
                logger.warning("broker not ready", metadata: ["fb.failing": "\(report.failing.map(\.name).joined(separator: ","))"])
            }
        }
        return report
    }

    private func identityCheck() async -> Check {
        let slots: [FICSlot]
        do {
            slots = try await Self.bounded(configuration.storeTimeoutSeconds, probes.slots)
        } catch {
            return Check(name: "identity", ok: false, detail: "the FIC slots could not be read (\(ProbeFailure(error)))")
        }
        let candidates = Self.assertionCandidates(slots, preferring: lastGoodSlot, limit: configuration.assertionAttempts)
        var attempts: [AssertionAttempt] = []
        for slot in candidates {
            let deadline = clock.now.addingTimeInterval(configuration.assertionTimeoutSeconds)
            let probes = self.probes
            do {
                let token = try await Self.bounded(configuration.assertionTimeoutSeconds) { try await probes.assertion(slot, deadline) }
                attempts.append(AssertionAttempt(slot: slot.id, outcome: .obtained(expiresOn: token.expiresOn)))
                if token.expiresOn > clock.now {
                    lastGoodSlot = slot.id
                    break
                }
            } catch {
                attempts.append(AssertionAttempt(slot: slot.id, outcome: .failed(ProbeFailure(error))))
            }
        }
        return Self.identityCheck(slots: slots, attempts: attempts, now: clock.now)
    }

    // MARK: Bounded waits

    /// `body`'s result, or `ProbeFailure.timedOut` once `seconds` have passed, whether or not
    /// `body` honours cancellation (a hung connection must not hang the probe).
    static func bounded<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let race = Race<T>()
        return try await withCheckedThrowingContinuation { continuation in
            race.start(continuation)
            let timer = Task {
                guard (try? await Task.sleep(for: .milliseconds(Int64((seconds * 1000).rounded(.up))))) != nil else { return }
                race.finish(.failure(ProbeFailure.timedOut(seconds: seconds)))
            }
            let work = Task {
                let result: Result<T, any Error>
                do { result = .success(try await body()) } catch { result = .failure(error) }
                if race.finish(result) { timer.cancel() }
            }
            race.onTimeout(cancel: work)
        }
    }

    /// The first of a body and its timer to finish resumes the waiter; the other is ignored.
    private final class Race<T: Sendable>: Sendable {
        private let state = Mutex<(continuation: CheckedContinuation<T, any Error>?, timedOut: Bool, work: Task<Void, Never>?)>((nil, false, nil))

        func start(_ continuation: CheckedContinuation<T, any Error>) { state.withLock { $0.continuation = continuation } }

        /// Resumes the waiter unless it was resumed already; true when this call did.
        @discardableResult
        func finish(_ result: Result<T, any Error>) -> Bool {
            let (continuation, work) = state.withLock { s -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?) in
                guard let continuation = s.continuation.take() else { return (nil, nil) }
                if case .failure(let error) = result, error is ProbeFailure { s.timedOut = true }
                return (continuation, s.timedOut ? s.work : nil)
            }
            continuation?.resume(with: result)
            work?.cancel()
            return continuation != nil
        }

        /// The body's task, cancelled if (or once) the timer wins.
        func onTimeout(cancel work: Task<Void, Never>) {
            let cancelNow = state.withLock { s -> Bool in
                s.work = work
                return s.timedOut
            }
            if cancelNow { work.cancel() }
        }
    }
}
