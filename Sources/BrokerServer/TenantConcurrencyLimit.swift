import Synchronization

/// At most `limit` vault-bound requests in flight per tenant. A request over the limit is
/// refused at once (the caller gets a retryable OVERLOADED) rather than queued: a customer
/// whose vault is slow holds at most `limit` of the broker's requests, and every other tenant
/// keeps being served. Cache hits do not count; they never wait on a vault.
final class TenantConcurrencyLimit: Sendable {
    let limit: Int
    private let inFlight = Mutex<[String: Int]>([:])

    init(limit: Int) {
        precondition(limit > 0)
        self.limit = limit
    }

    /// The tenant had no room: the work was not run (`BrokerService.refusal(for:)` answers OVERLOADED).
    struct Exceeded: Error {}

    /// Runs `work` if the tenant has room, else throws `Exceeded` without running it.
    func withPermit<T>(_ tenant: String, _ work: () async throws -> T) async throws -> T {
        let admitted = inFlight.withLock { counts -> Bool in
            let current = counts[tenant, default: 0]
            guard current < limit else { return false }
            counts[tenant] = current + 1
            return true
        }
        guard admitted else { throw Exceeded() }
        defer {
            inFlight.withLock { counts in
                let remaining = counts[tenant, default: 1] - 1
                counts[tenant] = remaining == 0 ? nil : remaining
            }
        }
        return try await work()
    }

    func inFlight(_ tenant: String) -> Int { inFlight.withLock { $0[tenant, default: 0] } }
}

extension BrokerService {
    /// Vault-bound requests in flight for `tenant` (for tests and metrics).
    public func tenantLimitInFlight(_ tenant: String) -> Int { tenantLimit.inFlight(tenant) }
}
