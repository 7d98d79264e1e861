import FedBrokerCore
import Foundation
import Synchronization

/// At most `limit` operations at once and `perSecond` per second against one endpoint (IMDS
/// allows 5 concurrent and 20 per second). Shared per endpoint across sources, since the limits
/// are per VM, not per identity.
final class ConcurrencyGate: Sendable {
    private struct State {
        var running = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
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

    /// Runs `body` once a slot is free and the per-second budget has room. A queued caller
    /// waits for at most one attempt timeout of the slot holders (their requests are bounded).
    func run<T>(clock: any WallClock, deadline: Date, _ body: () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        guard try await rate.admit("imds", clock: clock, deadline: deadline) else {
            throw AzureIdentityError.deadlineExceeded(lastFailure: "IMDS rate limit (20 requests per second)")
        }
        try Task.checkCancellation()
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let admitted = state.withLock { s -> Bool in
                if s.running < limit {
                    s.running += 1
                    return true
                }
                s.waiters.append(continuation)
                return false
            }
            if admitted { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty {
                s.running -= 1
                return nil
            }
            return s.waiters.removeFirst()  // the slot passes straight to the next waiter
        }
        next?.resume()
    }
}
