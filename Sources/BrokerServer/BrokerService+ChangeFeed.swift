import BrokerStore
import FedBrokerCore
import Logging

extension BrokerService {
    /// Follows the store's change feed from `sequence` (default: its current end): a tenant that stops being active
    /// (suspended by staff, or marked access_lost by another replica that saw the customer's
    /// refusal) loses its cached plaintext keys at once, not when they age out. Runs until
    /// cancelled; a feed that fails (database unreachable) is followed again from the last event
    /// seen, and meanwhile the cache's age bound still holds.
    ///
    /// - Parameter applied: called after each event is handled, with the keys it purged (tests
    ///   and metrics use it to know the follower caught up).
    public func followChanges(
        after sequence: Int64? = nil, pollInterval: Duration = .seconds(1), retryAfter: Duration = .seconds(2),
        applied: (@Sendable (ChangeEvent, _ purgedKeys: Int) -> Void)? = nil
    ) async {
        var last = sequence
        while !Task.isCancelled {
            do {
                if last == nil { last = try await store.latestChangeSequence() }
                for try await event in store.changeFeed(after: last!, pollInterval: pollInterval) {
                    // Moved past only once applied: an event whose purge failed is applied again.
                    let purged = try await apply(event)
                    last = event.sequence
                    applied?(event, purged)
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning(
                    "change feed failed; cached keys still expire by age. Retrying",
                    metadata: ["fb.error": "\(error)", "fb.afterSequence": "\(last.map(String.init) ?? "start")"])
            }
            try? await Task.sleep(for: retryAfter)
        }
    }

    /// Drops the changed record, and purges the cached keys of a tenant the event left not
    /// active. Returns how many keys.
    func apply(_ event: ChangeEvent) async throws -> Int {
        switch event.kind {
        case .caller: callerRecords.invalidateAll()  // cached by certificate identity, not id
        case .slot: FICSlotID(rawValue: event.entityID).map(slotRecords.invalidate)
        case .tenant: break
        }
        guard event.kind == .tenant, let id = TenantID(rawValue: event.entityID) else { return 0 }
        tenantRecords.invalidate(id)
        let active: Bool
        do {
            active = try await store.tenant(id).state == .active
        } catch let error as BrokerError where error.code == .notFound {
            active = false
        }
        guard !active else { return 0 }
        let purged = cache.purge(tenantID: id.rawValue)
        if purged > 0 {
            logger.info("tenant no longer active; its cached keys are purged", metadata: ["fb.tenant": "\(id)", "fb.purgedKeys": "\(purged)"])
        }
        return purged
    }
}
