import FedBrokerCore
import Foundation
import Logging
import Testing

@testable import BrokerStore

private func rename(_ store: SQLBrokerStore, away: Bool) async throws {
    try await store.executeForTesting(
        away ? "ALTER TABLE audit_records RENAME TO audit_records_away" : "ALTER TABLE audit_records_away RENAME TO audit_records")
}

private func stored(_ store: SQLBrokerStore, _ tenant: TenantID) async throws -> [AuditRecord] {
    try await store.auditRecords(tenant: tenant, from: .distantPast, to: .distantFuture, limit: 10_000)
}

private func withDetail(_ record: AuditRecord, _ detail: String) -> AuditRecord {
    AuditRecord(
        id: record.id, time: record.time, actor: record.actor, tenantID: record.tenantID, operation: record.operation,
        outcome: record.outcome, latencyMicroseconds: record.latencyMicroseconds, requestID: record.requestID,
        detail: detail)
}

private func records(_ count: Int, tenant: TenantID, start: Date) -> [AuditRecord] {
    (0..<count).map { n in
        AuditRecord(time: start.addingTimeInterval(Double(n)), actor: "svc", tenantID: tenant, operation: "wrap",
                    outcome: .success, latencyMicroseconds: Int64(n), requestID: "r\(n)")
    }
}

@Suite struct AuditWriterTests {
    @Test("Full batches flush on their own; shutdown writes the rest: nothing lost on a graceful stop",
          arguments: StoreKind.allCases)
    func gracefulStop(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            var configuration = AuditWriter.Configuration()
            configuration.batchSize = 10
            let writer = AuditWriter(store: store, configuration: configuration, logger: TestDatabase.logger)
            let tenant = TenantID(rawValue: "t")!
            let input = records(95, tenant: tenant, start: database.clock.now)
            for record in input { try await writer.append(record) }
            #expect(await writer.writtenRecords == 90)
            #expect(await writer.pendingCount == 5)
            try await writer.shutdown()
            #expect(await writer.pendingCount == 0)
            #expect(await writer.failedFlushes == 0)
            let stored = try await store.auditRecords(tenant: tenant, from: .distantPast, to: .distantFuture, limit: 1000)
            #expect(stored == input)
        }
    }

    @Test("A failed flush keeps its records, is counted, and the retry writes them exactly once",
          arguments: StoreKind.allCases)
    func failedFlushRetried(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            var configuration = AuditWriter.Configuration()
            configuration.batchSize = 1000
            configuration.shutdownAttempts = 2
            configuration.shutdownRetryDelay = .zero
            let writer = AuditWriter(store: store, configuration: configuration, logger: TestDatabase.logger)
            let tenant = TenantID(rawValue: "t")!
            let input = records(25, tenant: tenant, start: database.clock.now)
            for record in input { try await writer.append(record) }

            try await store.executeForTesting("ALTER TABLE audit_records RENAME TO audit_records_away")
            #expect(await writer.flush() == false)
            #expect(await writer.failedFlushes == 1)
            #expect(await writer.pendingCount == 25, "nothing dropped")
            // The real error (a missing table: storeFailure), not a generic "unavailable".
            await expectBrokerError(.storeFailure) { try await writer.shutdown() }
            #expect(await writer.failedFlushes == 3)
            #expect(await writer.pendingCount == 25)

            try await store.executeForTesting("ALTER TABLE audit_records_away RENAME TO audit_records")
            #expect(await writer.flush() == true)
            #expect(await writer.pendingCount == 0)
            let stored = try await store.auditRecords(tenant: tenant, from: .distantPast, to: .distantFuture, limit: 1000)
            #expect(stored == input)
        }
    }

    @Test("After shutdown an append writes through at once or throws; shutdown waits for an append under way",
          arguments: StoreKind.allCases)
    func closedWriter(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            var configuration = AuditWriter.Configuration()
            configuration.batchSize = 100
            configuration.maximumPending = 2
            configuration.appendTimeout = .seconds(60)
            configuration.shutdownRetryDelay = .zero
            let writer = AuditWriter(store: store, configuration: configuration, logger: TestDatabase.logger)
            let tenant = TenantID(rawValue: "t")!
            let input = records(4, tenant: tenant, start: database.clock.now)
            try await rename(store, away: true)
            try await writer.append(input[0])
            try await writer.append(input[1])
            // The third waits for room (flushes fail while the table is away).
            let third = Task { try await writer.append(input[2]) }
            while await writer.appendsWaitingForRoom == 0 { await Task.yield() }
            try await rename(store, away: false)
            try await writer.shutdown()
            try await third.value
            #expect(await writer.pendingCount == 0)
            #expect(try await stored(store, tenant).count == 3, "the append under way was not lost")

            // Closed: written through synchronously.
            try await writer.append(input[3])
            #expect(try await stored(store, tenant) == input)
            // Closed and the write fails: the caller hears of it.
            try await rename(store, away: true)
            await expectBrokerError(.storeFailure) {
                try await writer.append(records(1, tenant: tenant, start: database.clock.now.addingTimeInterval(9))[0])
            }
            #expect(await writer.pendingCount == 0, "nothing accepted after close")
            try await rename(store, away: false)
        }
    }

    @Test("Back-pressure: at maximumPending append waits for a flush, then times out without accepting",
          arguments: StoreKind.allCases)
    func backPressure(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            var configuration = AuditWriter.Configuration()
            configuration.batchSize = 100
            configuration.maximumPending = 3
            configuration.appendTimeout = .milliseconds(300)
            let writer = AuditWriter(store: store, configuration: configuration, logger: TestDatabase.logger)
            let tenant = TenantID(rawValue: "t")!
            let input = records(4, tenant: tenant, start: database.clock.now)
            try await rename(store, away: true)
            for record in input.prefix(3) { try await writer.append(record) }
            let started = ContinuousClock.now
            await expectBrokerError(.storeTimeout) { try await writer.append(input[3]) }
            #expect(ContinuousClock.now - started >= .milliseconds(300))
            #expect(await writer.flush() == false)  // also waits out a flush the append started
            #expect(await writer.pendingCount == 3, "bounded: the fourth was refused, not queued")
            try await rename(store, away: false)
            #expect(await writer.flush() == true)
            try await writer.append(input[3])  // room again once a flush succeeded
            try await writer.shutdown()
            #expect(try await stored(store, tenant) == input)
        }
    }

    @Test("Control characters (NUL too) are escaped; a record the database rejects is isolated and quarantined, the rest written",
          arguments: StoreKind.allCases)
    func badRecordsDoNotBlockTheQueue(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            switch kind {
            case .postgres:
                try await store.executeForTesting(
                    "ALTER TABLE audit_records ADD CONSTRAINT test_poison CHECK (detail IS NULL OR detail <> 'poison')")
            case .sqlite:
                try await store.executeForTesting(
                    """
                    CREATE TRIGGER test_poison BEFORE INSERT ON audit_records WHEN NEW.detail = 'poison'
                    BEGIN SELECT RAISE(ABORT, 'poison'); END
                    """)
            }
            var configuration = AuditWriter.Configuration()
            configuration.batchSize = 100
            let writer = AuditWriter(store: store, configuration: configuration, logger: TestDatabase.logger)
            let tenant = TenantID(rawValue: "t")!
            var input = records(10, tenant: tenant, start: database.clock.now)
            input[1] = withDetail(input[1], "nul\u{0}byte")
            input[3] = withDetail(input[3], "poison")
            input[7] = withDetail(input[7], "poison")
            for record in input { try await writer.append(record) }
            #expect(await writer.flush() == true)
            #expect(await writer.pendingCount == 0, "the queue is not blocked")
            #expect(await writer.quarantinedRecords.map(\.id) == [input[3].id, input[7].id])
            let written = try await stored(store, tenant)
            #expect(written.count == 8)
            #expect(written.first { $0.id == input[1].id }?.detail == "nul\\u{0}byte")
            await expectBrokerError(.invalidData) { try await writer.shutdown() }
        }
    }

    @Test("appendDurably returns only after the record is committed; a failed batch throws and keeps the record",
          arguments: StoreKind.allCases)
    func durableAppend(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            var configuration = AuditWriter.Configuration()
            configuration.batchSize = 100
            configuration.flushInterval = .seconds(3600)
            let writer = AuditWriter(store: store, configuration: configuration, logger: TestDatabase.logger)
            let tenant = TenantID(rawValue: "t")!
            let input = records(21, tenant: tenant, start: database.clock.now)
            try await writer.appendDurably(input[0])
            #expect(try await stored(store, tenant) == [input[0]], "committed before appendDurably returned")
            // Group commit: concurrent durable appends all return committed.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for record in input[1..<20] { group.addTask { try await writer.appendDurably(record) } }
                try await group.waitForAll()
            }
            #expect(try await stored(store, tenant).count == 20)

            try await rename(store, away: true)
            await expectBrokerError(.storeFailure) { try await writer.appendDurably(input[20]) }
            #expect(await writer.pendingCount == 1, "kept for retry")
            try await rename(store, away: false)
            try await writer.shutdown()
            #expect(try await stored(store, tenant) == input)
        }
    }
}
