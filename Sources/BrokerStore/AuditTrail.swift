import FedBrokerCore
import Foundation

/// Where a key operation's audit record becomes durable before its answer (invariant 4): the
/// local journal (`AuditJournal`, the default for `serve`) or the store itself (`AuditWriter`).
public protocol AuditTrail: Sendable {
    /// Returns once the record is durable; throws when it could not be made so in time (the
    /// operation's result is then withheld). `deadline` bounds a wait on the store; the journal's
    /// wait is one `fdatasync` and takes none.
    func appendDurably(_ record: AuditRecord, deadline: Date, clock: any WallClock) async throws
    /// What readiness reads.
    var health: AuditWriter.Health { get async }
}

extension AuditWriter: AuditTrail {
    public nonisolated func appendDurably(_ record: AuditRecord, deadline: Date, clock: any WallClock) async throws {
        try await withStoreDeadline(deadline, clock: clock) { try await self.appendDurably(record) }
    }
}
