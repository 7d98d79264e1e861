import FedBrokerCore
import Foundation
import Synchronization

/// Runs a store call within a request's deadline: the call's answer, or, once `deadline` has
/// passed, a retryable `BrokerError` at once, whatever the store is doing.
///
/// - `databaseUnavailable` when the call was still waiting for a PostgreSQL connection (the
///   server is down or unreachable, or every pooled connection is busy);
/// - `storeTimeout` when it was waiting for anything else (a lock, a slow statement, SQLite), or
///   when `deadline` had passed before the call began.
///
/// Both mean "the store did not answer in time; try again", which is what the request path
/// answers as UNAVAILABLE (`BrokerError.Code.isStoreUnavailable`). Inside `body` PostgreSQL also
/// learns the deadline: `statement_timeout` and `lock_timeout` are lowered to the time left, so
/// the server stops working for a caller that is gone.
///
/// Why a race and not only cancellation: a query in flight is not interrupted by Swift task
/// cancellation, and the caller must have its answer at its deadline. The abandoned call is
/// cancelled and finishes on its own; a write it was making commits or rolls back as a whole.
///
/// `clock` says how much time is left (`deadline` is in its time, as every request deadline is);
/// the wait itself is real time, so a `ManualWallClock` that does not move bounds a call by
/// what was left when it started.
public func withStoreDeadline<T: Sendable>(
    _ deadline: Date, clock: any WallClock, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    // A day at most: the remaining time becomes a Duration, and a far-off or infinite deadline
    // must not trap the conversion.
    let remaining = min(clock.remaining(until: deadline), 86_400)
    guard remaining > 0 else {
        throw BrokerError(.storeTimeout, "the request's deadline passed before the store was asked")
    }
    let milliseconds = Int64((remaining * 1000).rounded(.up))
    let context = StoreDeadline(instant: ContinuousClock.now.advanced(by: .milliseconds(milliseconds)))
    return try await StoreDeadline.$current.withValue(context) {
        try await StoreDeadline.race(until: context.instant, body) {
            context.exceeded(afterMilliseconds: milliseconds)
        }
    }
}

extension BrokerError.Code {
    /// The store did not answer, for now: down, unreachable, too slow for the deadline, or a
    /// conflict that outlived its retries. A request that failed so is answered as retryable
    /// UNAVAILABLE, never as an internal error.
    public var isStoreUnavailable: Bool {
        self == .databaseUnavailable || self == .storeTimeout || self == .transactionConflict
    }
}

/// The deadline of the store call running in this task, and what the call is waiting for.
final class StoreDeadline: Sendable {
    /// Set by `withStoreDeadline` for the call it runs (inherited by the tasks the call starts).
    @TaskLocal static var current: StoreDeadline?

    let instant: ContinuousClock.Instant
    /// Connection leases under way: non-zero when the deadline finds the call still waiting for
    /// PostgreSQL itself rather than for a lock or a statement.
    private let connectionWaits = Atomic<Int>(0)

    init(instant: ContinuousClock.Instant) { self.instant = instant }

    /// Time left, at least a millisecond (what a PostgreSQL timeout can express).
    var remaining: Duration { max(.milliseconds(1), ContinuousClock.now.duration(to: self.instant)) }

    func connectionWaitBegan() { self.connectionWaits.add(1, ordering: .relaxed) }
    func connectionWaitEnded() { self.connectionWaits.subtract(1, ordering: .relaxed) }

    func exceeded(afterMilliseconds milliseconds: Int64) -> BrokerError {
        if self.connectionWaits.load(ordering: .relaxed) > 0 {
            return BrokerError(
                .databaseUnavailable,
                "no PostgreSQL connection within the request's deadline (\(milliseconds) ms): the server is down, unreachable or saturated")
        }
        return BrokerError(.storeTimeout, "the store did not answer within the request's deadline (\(milliseconds) ms)")
    }

    /// `body`'s result, or `timeout()`'s error at `instant`, whichever comes first; the loser is
    /// cancelled and not waited for. A cancelled caller gets `CancellationError` at once, unless
    /// `abandonOnCancel` is false: then `body` runs to its end or to `instant` whatever the
    /// caller's cancellation (a statement on a leased connection, which must finish before the
    /// next one on that connection is sent, or the connection goes back to the pool mid-transaction).
    static func race<T: Sendable>(
        until instant: ContinuousClock.Instant, abandonOnCancel: Bool = true, _ body: @escaping @Sendable () async throws -> T,
        timeout: @escaping @Sendable () -> any Error
    ) async throws -> T {
        let race = Race<T>()
        let run = {
            try await withCheckedThrowingContinuation { continuation in
                race.start(continuation)
                let work = Task {
                    let result: Result<T, any Error>
                    do { result = .success(try await body()) } catch { result = .failure(error) }
                    race.finish(result)
                }
                let timer = Task {
                    guard (try? await Task.sleep(until: instant, clock: .continuous)) != nil else { return }
                    race.finish(.failure(timeout()))
                }
                race.attach(work, timer)
            }
        }
        guard abandonOnCancel else { return try await run() }
        return try await withTaskCancellationHandler {
            try await run()
        } onCancel: {
            race.finish(.failure(CancellationError()))
        }
    }

    /// The first result resumes the waiter; both tasks are cancelled then (a finished one is not
    /// affected). Tasks attached after the finish are cancelled at once.
    private final class Race<T: Sendable>: Sendable {
        private struct State {
            var continuation: CheckedContinuation<T, any Error>?
            var tasks: [Task<Void, Never>] = []
            var finished = false
        }
        private let state = Mutex(State())

        func start(_ continuation: CheckedContinuation<T, any Error>) {
            let finishedEarly = self.state.withLock { state -> Bool in
                guard !state.finished else { return true }
                state.continuation = continuation
                return false
            }
            if finishedEarly { continuation.resume(throwing: CancellationError()) }
        }

        func attach(_ tasks: Task<Void, Never>...) {
            let finished = self.state.withLock { state -> Bool in
                state.tasks += tasks
                return state.finished
            }
            if finished { for task in tasks { task.cancel() } }
        }

        func finish(_ result: Result<T, any Error>) {
            let (continuation, tasks) = self.state.withLock { state -> (CheckedContinuation<T, any Error>?, [Task<Void, Never>]) in
                guard !state.finished else { return (nil, []) }
                state.finished = true
                return (state.continuation.take(), state.tasks)
            }
            continuation?.resume(with: result)
            for task in tasks { task.cancel() }
        }
    }
}
