import FedBrokerCore
import Foundation
import Synchronization

/// At most `limit` operations at once and `perSecond` per second against one endpoint (IMDS
/// allows 5 concurrent and 20 per second). Shared per endpoint across sources, since the limits
/// are per VM, not per identity.
final class ConcurrencyGate: Sendable {
    /// `@unchecked`: a `DispatchWorkItem` is safe to cancel from any thread, but not marked Sendable.
    private struct Waiter: @unchecked Sendable {
        let id: UInt64
        let continuation: CheckedContinuation<Bool, Never>
        /// Gives the place up at the caller's deadline; cancelled when the slot comes first.
        let timer: DispatchWorkItem
    }
    private struct State {
        var running = 0
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0
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

    /// Runs `body` once a slot is free and the per-second budget has room. A queued caller waits
    /// until its own deadline at most, and leaves the queue at once when its task is cancelled: a
    /// caller that has gone must not take a slot and a rate token from those behind it.
    func run<T>(clock: any WallClock, deadline: Date, _ body: () async throws -> T) async throws -> T {
        guard await acquire(within: clock.remaining(until: deadline)) else {
            try Task.checkCancellation()
            throw AzureIdentityError.deadlineExceeded(lastFailure: "waiting for an IMDS slot (5 requests at once)")
        }
        defer { release() }
        guard try await rate.admit("imds", clock: clock, deadline: deadline) else {
            throw AzureIdentityError.deadlineExceeded(lastFailure: "IMDS rate limit (20 requests per second)")
        }
        try Task.checkCancellation()
        return try await body()
    }

    /// True once a slot is this caller's; false at `remaining` seconds or at cancellation.
    private func acquire(within remaining: Double) async -> Bool {
        let id = state.withLock { s -> UInt64 in
            s.nextID &+= 1
            return s.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let timer = DispatchWorkItem { [weak self] in self?.leave(id) }
                let decision = state.withLock { s -> Bool? in
                    if s.running < limit {
                        s.running += 1
                        return true
                    }
                    // Cancelled before it queued (the handler found nothing to remove), or no time left.
                    if Task.isCancelled || remaining <= 0 { return false }
                    s.waiters.append(Waiter(id: id, continuation: continuation, timer: timer))
                    return nil
                }
                if let decision {
                    continuation.resume(returning: decision)
                } else {
                    // Armed once queued, so even a deadline already past finds the waiter.
                    DispatchQueue.global().asyncAfter(deadline: .now() + min(remaining, 86_400), execute: timer)
                }
            }
        } onCancel: {
            self.leave(id)
        }
    }

    /// The waiter gives its place up (deadline, cancellation) unless the slot reached it first.
    private func leave(_ id: UInt64) {
        let waiter = state.withLock { s -> Waiter? in
            guard let index = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return s.waiters.remove(at: index)
        }
        waiter?.continuation.resume(returning: false)
    }

    private func release() {
        let next = state.withLock { s -> Waiter? in
            if s.waiters.isEmpty {
                s.running -= 1
                return nil
            }
            return s.waiters.removeFirst()  // the slot passes straight to the next waiter
        }
        next?.timer.cancel()
        next?.continuation.resume(returning: true)
    }
}
