import Foundation
import Synchronization

/// Concurrent identical requests share one execution: the first caller for a key runs the
/// work, the others await its result. Identical unwraps thus cost one vault call, however many
/// arrive at once. Nothing is kept after the result is delivered (the data-key cache decides
/// what is kept).
final class SingleFlight<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private let inFlight = Mutex<[Key: Task<Value, any Error>]>([:])

    func run(_ key: Key, _ work: @escaping @Sendable () async throws -> Value) async throws -> Value {
        let (task, owner) = inFlight.withLock { tasks -> (Task<Value, any Error>, Bool) in
            if let existing = tasks[key] { return (existing, false) }
            let task = Task { try await work() }
            tasks[key] = task
            return (task, true)
        }
        defer {
            if owner { _ = inFlight.withLock { $0.removeValue(forKey: key) } }
        }
        return try await task.value
    }
}
