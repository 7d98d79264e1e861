import FedBrokerCore
import Synchronization

/// The recordings of a loss of access under way in this replica: one per tenant at a time, each
/// in a task of its own.
///
/// Why one per tenant: a customer who removes our role or disables our application refuses every
/// call in flight for the tenant at once. Each refused call used to start the same transition to
/// `access_lost`: a store write each, all but the first failing with a version conflict, and each
/// of those logging `could not record that the tenant lost access`, which the runbooks read as a
/// store that does not take writes. The first refused call starts the recording; the others wait
/// for that one.
///
/// Why a task of its own: the recording must not depend on the call that started it. That call
/// waits only until its own deadline and may be cancelled (its client's CANCEL, or, for an
/// Unwrap, the last waiter of a shared vault call leaving); had the recording been part of it,
/// the others, having written nothing, would have left the loss unrecorded.
package final class AccessLossRecordings: Sendable {
    private struct State {
        var inFlight: [TenantID: Task<Void, Never>] = [:]
        var started = 0
    }
    private let state = Mutex(State())

    package init() {}

    /// The recording of `tenant`'s loss under way, started with `record` if there is none; and
    /// whether this call started it. The recording ends when `record` returns, whatever became
    /// of the calls waiting for it.
    package func recording(_ tenant: TenantID, _ record: @escaping @Sendable () async -> Void) -> (task: Task<Void, Never>, started: Bool) {
        state.withLock { state in
            if let task = state.inFlight[tenant] { return (task, false) }
            state.started += 1
            // Made under the lock, so the task's own removal (which takes it) comes after this
            // insertion even if the task finishes at once.
            let task = Task {
                await record()
                self.finish(tenant)
            }
            state.inFlight[tenant] = task
            return (task, true)
        }
    }

    private func finish(_ tenant: TenantID) {
        _ = state.withLock { $0.inFlight.removeValue(forKey: tenant) }
    }

    /// Waits for the recordings under way (each is bounded: `BrokerService.lossRecordingSeconds`).
    /// At shutdown, before the store closes, so a loss seen just before is not dropped with it.
    package func drain() async {
        let tasks = state.withLock { Array($0.inFlight.values) }
        for task in tasks { await task.value }
    }

    /// How many recordings were started since this replica started (tests count them).
    package var started: Int { state.withLock { $0.started } }
}
