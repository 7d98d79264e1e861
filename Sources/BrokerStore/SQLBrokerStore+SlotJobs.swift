import FedBrokerCore
import Foundation

/// SRE jobs on FIC slots and the replicas' heartbeats.
///
/// Why a lease in a row rather than a PostgreSQL advisory lock held for the job's life: an
/// advisory lock belongs to one connection, so a pooled connection recycled mid-job (or SQLite,
/// which has none) would silently drop it; a lease with an expiry is visible to every replica,
/// survives connection churn, and is checked in the same transaction that records each step.
extension SQLBrokerStore {
    static let slotJobColumns = """
        id, kind, state, step, source_slot, target_slot, target_client_id, target_principal_id, progress_json, \
        failures_json, message, created_by, created_at_us, updated_at_us, finished_at_us, drained_at_us, version, \
        lease_owner, lease_expires_at_us
        """

    public func createSlotJob(_ job: SlotJob) async throws -> SlotJob {
        let now = self.clock.now
        return try await self.backend.withTransaction { session in
            try await session.lock(.slotJobs)
            if let open = try await session.query("SELECT id FROM slot_jobs WHERE open_marker = 1", []).first {
                throw BrokerError(
                    .jobInProgress, "slot job \(try open.text("id")) is still running; wait for it (fedbroker slot show) and retry")
            }
            _ = try await session.query(
                """
                INSERT INTO slot_jobs (\(Self.slotJobColumns), open_marker)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                try Self.binds(job) + [.text(nil), .null, job.state.isFinished ? .null : .integer(1)])
            try await self.audit(
                session, actor: job.createdBy, tenant: nil, operation: "slot.job.created",
                detail: "job=\(job.id) kind=\(job.kind.rawValue) \(Self.slotsSummary(job))", at: now)
            return job
        }
    }

    public func slotJob(_ id: SlotJobID) async throws -> SlotJob {
        try await self.backend.withReadTransaction { session in
            guard let row = try await session.query("SELECT \(Self.slotJobColumns) FROM slot_jobs WHERE id = ?", [.text(id.rawValue)]).first
            else { throw BrokerError(.notFound, "no slot job \(id)") }
            return try Self.slotJob(from: row)
        }
    }

    public func slotJobs(limit: Int) async throws -> [SlotJob] {
        try await self.backend.withReadTransaction { session in
            try await session.query(
                "SELECT \(Self.slotJobColumns) FROM slot_jobs ORDER BY created_at_us DESC, id DESC LIMIT ?",
                [.integer(Int64(max(1, min(limit, 1000))))]
            ).map(Self.slotJob(from:))
        }
    }

    public func claimSlotJob(owner: String, leaseSeconds: Double) async throws -> SlotJob? {
        let now = self.clock.now
        // Every replica asks about once a second and almost always finds nothing to take: a read
        // answers that without a write transaction (SQLite's database-wide lock, an advisory lock).
        let claimable = try await self.backend.withReadTransaction { session in
            guard
                let row = try await session.query(
                    "SELECT lease_owner, lease_expires_at_us FROM slot_jobs WHERE open_marker = 1", []
                ).first
            else { return false }
            let holder = try row.optionalText("lease_owner")
            let expires = try row.optionalInteger("lease_expires_at_us") ?? 0
            return holder == nil || holder == owner || expires <= self.micros(now)
        }
        guard claimable else { return nil }
        return try await self.backend.withTransaction { session in
            try await session.lock(.slotJobs)
            guard
                let row = try await session.query(
                    "SELECT \(Self.slotJobColumns) FROM slot_jobs WHERE open_marker = 1\(Self.forUpdate(session))", []
                ).first
            else { return nil }
            let holder = try row.optionalText("lease_owner")
            let expires = try row.optionalInteger("lease_expires_at_us")
            if let holder, holder != owner, let expires, expires > self.micros(now) { return nil }
            let job = try Self.slotJob(from: row)
            _ = try await session.query(
                "UPDATE slot_jobs SET lease_owner = ?, lease_expires_at_us = ? WHERE id = ?",
                [.text(owner), .integer(self.micros(now.addingTimeInterval(leaseSeconds))), .text(job.id.rawValue)])
            if let holder, holder != owner {
                try await self.audit(
                    session, actor: "fedbroker:\(owner)", tenant: nil, operation: "slot.job.taken_over",
                    detail: "job=\(job.id) step=\(job.step.rawValue) previous_owner=\(holder)", at: now)
            }
            return job
        }
    }

    public func renewSlotJobLease(_ id: SlotJobID, owner: String, leaseSeconds: Double) async throws -> Bool {
        let now = self.clock.now
        return try await self.backend.withTransaction { session in
            try await session.lock(.slotJobs)
            let renewed = try await session.query(
                """
                UPDATE slot_jobs SET lease_expires_at_us = ?
                WHERE id = ? AND open_marker = 1 AND lease_owner = ? AND lease_expires_at_us > ? RETURNING id
                """,
                [
                    .integer(self.micros(now.addingTimeInterval(leaseSeconds))), .text(id.rawValue), .text(owner),
                    .integer(self.micros(now)),
                ])
            return !renewed.isEmpty
        }
    }

    public func saveSlotJob(
        _ job: SlotJob, owner: String, leaseSeconds: Double, audit entry: SlotJobAuditEntry?
    ) async throws -> SlotJob {
        let now = self.clock.now
        return try await self.backend.withTransaction { session in
            try await session.lock(.slotJobs)
            guard
                let row = try await session.query(
                    "SELECT version, lease_owner, lease_expires_at_us FROM slot_jobs WHERE id = ?\(Self.forUpdate(session))",
                    [.text(job.id.rawValue)]
                ).first
            else { throw BrokerError(.notFound, "no slot job \(job.id)") }
            guard try row.optionalText("lease_owner") == owner,
                (try row.optionalInteger("lease_expires_at_us") ?? 0) > self.micros(now)
            else {
                throw BrokerError(.leaseLost, "this replica no longer holds the lease of slot job \(job.id)")
            }
            let stored = RecordVersion(rawValue: try row.integer("version"))
            guard stored == job.version else {
                throw BrokerError(.versionConflict, "slot job \(job.id) is at \(stored), not \(job.version)")
            }
            var saved = job
            saved.version = job.version.next
            saved.updatedAt = now
            let finished = saved.state.isFinished
            _ = try await session.query(
                """
                UPDATE slot_jobs SET state = ?, step = ?, progress_json = ?, failures_json = ?, message = ?,
                    updated_at_us = ?, finished_at_us = ?, drained_at_us = ?, version = ?, open_marker = ?,
                    lease_owner = ?, lease_expires_at_us = ?
                WHERE id = ?
                """,
                [
                    .text(saved.state.rawValue), .text(saved.step.rawValue), .text(try Self.json(saved.progress)),
                    .text(try Self.json(saved.failures)), .text(saved.message), .integer(self.micros(now)),
                    saved.finishedAt.map { .integer(self.micros($0)) } ?? .null,
                    saved.drainedAt.map { .integer(self.micros($0)) } ?? .null, .integer(saved.version.rawValue),
                    finished ? .null : .integer(1), finished ? .null : .text(owner),
                    finished ? .null : .integer(self.micros(now.addingTimeInterval(leaseSeconds))), .text(job.id.rawValue),
                ])
            if let entry {
                try await self.insertAudit(
                    session,
                    [
                        AuditRecord(
                            time: now, actor: job.createdBy, tenantID: entry.tenant, operation: entry.operation,
                            outcome: entry.failed ? .failure(code: "slot_job_step_failed") : .success,
                            detail: "job=\(job.id) \(entry.detail)")
                    ])
            }
            return saved
        }
    }

    // MARK: Replicas

    public func heartbeat(replica: String, startedAt: Date, liveWithin: Double) async throws -> Int {
        let now = self.clock.now
        return try await self.backend.withTransaction { session in
            _ = try await session.query(
                """
                INSERT INTO replicas (id, started_at_us, heartbeat_at_us) VALUES (?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET heartbeat_at_us = excluded.heartbeat_at_us
                """,
                [.text(replica), .integer(self.micros(startedAt)), .integer(self.micros(now))])
            // Forget replicas gone for a long time, so the table stays small.
            _ = try await session.query(
                "DELETE FROM replicas WHERE heartbeat_at_us < ?",
                [.integer(self.micros(now.addingTimeInterval(-max(3600, liveWithin * 10))))])
            let live = try await session.query(
                "SELECT COUNT(*) AS n FROM replicas WHERE heartbeat_at_us >= ?",
                [.integer(self.micros(now.addingTimeInterval(-liveWithin)))]
            ).first?.integer("n") ?? 1
            return max(1, Int(live))
        }
    }

    public func removeReplica(_ replica: String) async throws {
        try await self.backend.withTransaction { session in
            _ = try await session.query("DELETE FROM replicas WHERE id = ?", [.text(replica)])
        }
    }

    // MARK: Row mapping

    static func binds(_ job: SlotJob) throws -> [SQLValue] {
        [
            .text(job.id.rawValue), .text(job.kind.rawValue), .text(job.state.rawValue), .text(job.step.rawValue),
            .text(job.sourceSlot?.rawValue), .text(job.targetSlot?.rawValue), .text(job.targetIdentity?.clientID),
            .text(job.targetIdentity?.principalID), .text(try json(job.progress)), .text(try json(job.failures)),
            .text(job.message), .text(job.createdBy), .integer(micros(job.createdAt)), .integer(micros(job.updatedAt)),
            job.finishedAt.map { .integer(micros($0)) } ?? .null, job.drainedAt.map { .integer(micros($0)) } ?? .null,
            .integer(job.version.rawValue),
        ]
    }

    static func slotJob(from row: SQLRow) throws -> SlotJob {
        func decode<T: Decodable>(_ type: T.Type, _ column: String) throws -> T {
            guard let data = try row.text(column).data(using: .utf8), let value = try? JSONDecoder().decode(type, from: data) else {
                throw BrokerError(.storeFailure, "slot job column \(column) does not hold what fedbroker wrote")
            }
            return value
        }
        guard let id = SlotJobID(rawValue: try row.text("id")), let kind = SlotJobKind(rawValue: try row.text("kind")),
            let state = SlotJobState(rawValue: try row.text("state")), let step = SlotJobStep(rawValue: try row.text("step"))
        else { throw BrokerError(.storeFailure, "a slot job row does not hold what fedbroker wrote") }
        var identity: SlotJobIdentity?
        if let client = try row.optionalText("target_client_id"), let principal = try row.optionalText("target_principal_id") {
            identity = try SlotJobIdentity(clientID: client, principalID: principal)
        }
        return SlotJob(
            id: id, kind: kind, state: state, step: step, sourceSlot: try row.optionalText("source_slot").map(slotID),
            targetSlot: try row.optionalText("target_slot").map(slotID), targetIdentity: identity,
            progress: try decode(SlotJobProgress.self, "progress_json"), failures: try decode([SlotJobFailure].self, "failures_json"),
            message: try row.text("message"), createdBy: try row.text("created_by"),
            createdAt: date(try row.integer("created_at_us")), updatedAt: date(try row.integer("updated_at_us")),
            finishedAt: try row.optionalInteger("finished_at_us").map(date), drainedAt: try row.optionalInteger("drained_at_us").map(date),
            version: RecordVersion(rawValue: try row.integer("version")))
    }

    static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func slotsSummary(_ job: SlotJob) -> String {
        [
            job.sourceSlot.map { "slot=\($0)" }, job.targetSlot.map { "new_slot=\($0)" },
            job.targetIdentity.map { "identity=\($0.clientID) principal=\($0.principalID)" },
        ].compactMap { $0 }.joined(separator: " ")
    }
}
