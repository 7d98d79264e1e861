import FedBrokerCore
import Synchronization

/// The tenants whose loss of access this replica is recording in the store now: one recording per
/// tenant at a time.
///
/// Why: a customer who removes our role or disables our application refuses every call in flight
/// for the tenant at once. Each refused call used to start the same transition to `access_lost`:
/// a store write each, all but the first failing with a version conflict, and each of those
/// logging `could not record that the tenant lost access`, which the runbooks read as a store that
/// does not take writes. The first refused call records; the others purge and answer.
package final class AccessLossRecordings: Sendable {
    private struct State {
        var inFlight: Set<TenantID> = []
        var started = 0
    }
    private let state = Mutex(State())

    package init() {}

    /// Claims the recording of `tenant`'s loss of access: false when another call holds it.
    /// A claim is released with `finish`, whether the recording succeeded or not.
    func claim(_ tenant: TenantID) -> Bool {
        state.withLock { state in
            guard state.inFlight.insert(tenant).inserted else { return false }
            state.started += 1
            return true
        }
    }

    func finish(_ tenant: TenantID) {
        _ = state.withLock { $0.inFlight.remove(tenant) }
    }

    /// How many recordings were started since this replica started (tests count them).
    package var started: Int { state.withLock { $0.started } }
}
