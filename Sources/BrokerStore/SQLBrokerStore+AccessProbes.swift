import FedBrokerCore
import Foundation

/// What `claimAccessProbe` decided for one tenant.
public enum AccessProbeClaim: Hashable, Sendable {
    /// This caller runs probe number `attempt` now. Should it fail, the next is due at `nextProbeAt`
    /// (already stored, so another replica will not run this one too).
    case probeNow(attempt: Int, nextProbeAt: Date)
    /// Nothing is due before `until` (or another replica has just taken the probe that was).
    case notDue(until: Date)
    /// The tenant is not `access_lost` (it recovered, an operator suspended it, it is gone).
    case notLost
}

extension SQLBrokerStore {
    public func claimAccessProbe(_ id: TenantID, schedule: AccessReprobeSchedule) async throws -> AccessProbeClaim {
        let now = self.clock.now
        return try await self.backend.withTransaction { session in
            guard let tenant = try await self.fetchTenant(session, id, forUpdate: false), tenant.state == .accessLost else {
                _ = try await session.query("DELETE FROM tenant_access_probes WHERE tenant_id = ?", [.text(id.rawValue)])
                return .notLost
            }
            // Make sure the row exists (a new episode's first probe is due `minimumSeconds` after
            // the loss), then lock it: replicas that ask together queue on the row lock (PostgreSQL)
            // or the write lock (SQLite), and each reads what the one before it wrote.
            _ = try await session.query(
                """
                INSERT INTO tenant_access_probes (tenant_id, episode_version, attempts, next_probe_at_us)
                VALUES (?, ?, 0, ?) ON CONFLICT (tenant_id) DO NOTHING
                """,
                [.text(id.rawValue), .integer(tenant.version.rawValue), .integer(self.micros(tenant.updatedAt.addingTimeInterval(schedule.minimumSeconds)))])
            guard
                let row = try await session.query(
                    """
                    SELECT episode_version, attempts, next_probe_at_us FROM tenant_access_probes
                    WHERE tenant_id = ?\(Self.forUpdate(session))
                    """,
                    [.text(id.rawValue)]
                ).first
            else { throw BrokerError(.storeFailure, "the re-probe schedule of tenant \(id) vanished inside its transaction") }
            let stored = AccessReprobeSchedule.Progress(
                episode: RecordVersion(rawValue: try row.integer("episode_version")),
                attempts: Int(clamping: try row.integer("attempts")),
                nextProbeAt: Self.date(try row.integer("next_probe_at_us")))
            let decision = schedule.advance(stored, lostAt: tenant.updatedAt, episode: tenant.version, now: now)
            guard decision.progress != stored else { return .notDue(until: stored.nextProbeAt) }
            _ = try await session.query(
                """
                UPDATE tenant_access_probes SET episode_version = ?, attempts = ?, next_probe_at_us = ?
                WHERE tenant_id = ?
                """,
                [
                    .integer(decision.progress.episode.rawValue), .integer(Int64(decision.progress.attempts)),
                    .integer(self.micros(decision.progress.nextProbeAt)), .text(id.rawValue),
                ])
            guard decision.probeNow else { return .notDue(until: decision.progress.nextProbeAt) }
            return .probeNow(attempt: decision.progress.attempts, nextProbeAt: decision.progress.nextProbeAt)
        }
    }
}
