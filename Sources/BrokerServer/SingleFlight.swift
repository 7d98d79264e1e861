import FedBrokerCore
import Foundation
import Synchronization

/// Concurrent identical requests share one execution: the first caller for a key starts the
/// work, later ones join it. Identical unwraps thus cost one vault call, however many arrive at
/// once. Nothing is kept after the result is delivered (the data-key cache decides what is kept).
///
/// Each caller keeps its own fate. The work runs in a task of its own, not in the first caller's,
/// so a caller that gives up — its deadline passes or its client sends CANCEL — leaves alone and
/// gets its own answer, while the work goes on for whoever still waits. Only when the last waiter
/// has left is the work cancelled: nobody is left to want its result. The work is therefore
/// started with a deadline of its own (the caller passes the longest it may run), never with the
/// first caller's.
package final class SingleFlight<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private typealias Waiter = CheckedContinuation<Value, any Error>

    private struct Flight {
        var generation: UInt64
        var task: Task<Void, Never>?
        var waiters: [UInt64: Waiter]
    }

    private struct State {
        var flights: [Key: Flight] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())
    private let clock: any WallClock

    /// A waiter's own deadline passed before the shared work finished (the work may go on for others).
    package struct DeadlineExceeded: Error {}

    package init(clock: any WallClock = SystemWallClock()) { self.clock = clock }

    /// Callers waiting on the flight for `key` (tests watch it to order their steps).
    package func waiters(for key: Key) -> Int { state.withLock { $0.flights[key]?.waiters.count ?? 0 } }

    /// Whether work for `key` is under way (tests watch it).
    package func isRunning(_ key: Key) -> Bool { state.withLock { $0.flights[key] != nil } }

    /// The result of `work` for `key`, started now or joined if under way. Throws
    /// `DeadlineExceeded` when `deadline` passes first and `CancellationError` when the calling
    /// task is cancelled first; either way the work continues if others wait on it. Without a
    /// deadline the waiter is bounded by its cancellation alone (and no timer is started).
    package func run(_ key: Key, deadline: Date?, _ work: @escaping @Sendable () async throws -> Value) async throws -> Value {
        let id = state.withLock { s -> UInt64 in
            s.nextID &+= 1
            return s.nextID
        }
        var timer: DispatchWorkItem?
        defer { timer?.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (waiter: Waiter) in
                let refused = state.withLock { s -> Bool in
                    // Checked under the lock: a cancellation after this point finds the waiter registered.
                    if Task.isCancelled { return true }
                    if s.flights[key] != nil {
                        s.flights[key]!.waiters[id] = waiter
                        return false
                    }
                    let generation = id
                    s.flights[key] = Flight(generation: generation, task: nil, waiters: [id: waiter])
                    s.flights[key]!.task = Task { await self.execute(key, generation: generation, work) }
                    return false
                }
                if refused { return waiter.resume(throwing: CancellationError()) }
                // Armed once the waiter is registered, so even a deadline already past finds it.
                timer = deadline.map { armDeadline($0, key: key, waiter: id) }
            }
        } onCancel: {
            self.leave(key, waiter: id, with: CancellationError())
        }
    }

    /// Has the waiter leave with `DeadlineExceeded` at `deadline`. Real time, measured from the
    /// injected clock's now: a manual clock's `sleep` would move time instead of waiting, and
    /// expire every waiter at once. A Dispatch timer, not a sleeping task: that task had to be
    /// started and, once cancelled, woken again, two trips through the pool for each caller
    /// (about 40 µs of every uncached Unwrap, `bench --parts uncached` with timestamps). A
    /// cancelled item still fires at the deadline, as a no-op.
    private func armDeadline(_ deadline: Date, key: Key, waiter id: UInt64) -> DispatchWorkItem {
        let seconds = min(max(clock.remaining(until: deadline), 0), 86_400)
        let item = DispatchWorkItem { [weak self] in self?.leave(key, waiter: id, with: DeadlineExceeded()) }
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int((seconds * 1000).rounded(.up))), execute: item)
        return item
    }

    private func execute(_ key: Key, generation: UInt64, _ work: @Sendable () async throws -> Value) async {
        let result: Result<Value, any Error>
        do { result = .success(try await work()) } catch { result = .failure(error) }
        let waiters = state.withLock { s -> [Waiter] in
            guard let flight = s.flights[key], flight.generation == generation else { return [] }
            s.flights[key] = nil
            return Array(flight.waiters.values)
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    /// One waiter gives up; the last one to leave cancels the work.
    private func leave(_ key: Key, waiter id: UInt64, with error: any Error) {
        let (waiter, abandoned) = state.withLock { s -> (Waiter?, Task<Void, Never>?) in
            guard let waiter = s.flights[key]?.waiters.removeValue(forKey: id) else { return (nil, nil) }
            guard s.flights[key]?.waiters.isEmpty == true else { return (waiter, nil) }
            let task = s.flights[key]?.task
            s.flights[key] = nil
            return (waiter, task)
        }
        abandoned?.cancel()
        waiter?.resume(throwing: error)
    }
}
