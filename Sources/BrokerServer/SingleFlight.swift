import Foundation
import Synchronization

/// Concurrent identical requests share one execution: the first caller for a key runs the
/// work, the others await its result. Identical unwraps thus cost one vault call, however many
/// arrive at once. Nothing is kept after the result is delivered (the data-key cache decides
/// what is kept).
///
/// The first caller runs the work in its own task (no extra task: an uncached unwrap is on the
/// hot path, and every task hop is a thread wake-up). If that caller is cancelled (its client
/// sent CANCEL) the work is cancelled with it; the callers waiting on it were not cancelled, so
/// one of them runs the work again rather than fail with someone else's cancellation.
package final class SingleFlight<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private typealias Waiter = CheckedContinuation<Value, any Error>
    private let inFlight = Mutex<[Key: [Waiter]]>([:])

    /// What a waiter is resumed with when the first caller was cancelled: try again.
    private struct OwnerCancelled: Error {}

    package init() {}

    /// Callers waiting on the flight for `key` (tests watch it to order their steps).
    package func waiters(for key: Key) -> Int { inFlight.withLock { $0[key]?.count ?? 0 } }

    package func run(_ key: Key, _ work: () async throws -> Value) async throws -> Value {
        while true {
            let owner = inFlight.withLock { flights -> Bool in
                guard flights[key] == nil else { return false }
                flights[key] = []
                return true
            }
            if owner {
                let result: Result<Value, any Error>
                do { result = .success(try await work()) } catch { result = .failure(error) }
                let waiters = inFlight.withLock { $0.removeValue(forKey: key) } ?? []
                for waiter in waiters {
                    switch result {
                    case .failure(let error) where error is CancellationError: waiter.resume(throwing: OwnerCancelled())
                    default: waiter.resume(with: result)
                    }
                }
                return try result.get()
            }
            do {
                return try await withCheckedThrowingContinuation { (waiter: Waiter) in
                    let joined = inFlight.withLock { flights -> Bool in
                        guard flights[key] != nil else { return false }
                        flights[key]!.append(waiter)
                        return true
                    }
                    // The flight landed between the two looks: go round and look again.
                    if !joined { waiter.resume(throwing: OwnerCancelled()) }
                }
            } catch is OwnerCancelled {
                try Task.checkCancellation()
                continue
            }
        }
    }
}
