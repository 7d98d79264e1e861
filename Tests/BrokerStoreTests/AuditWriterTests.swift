import FedBrokerCore
import Foundation
import Logging
import Testing

@testable import BrokerStore

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
            for record in input { await writer.append(record) }
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
            for record in input { await writer.append(record) }

            try await store.executeForTesting("ALTER TABLE audit_records RENAME TO audit_records_away")
            #expect(await writer.flush() == false)
            #expect(await writer.failedFlushes == 1)
            #expect(await writer.pendingCount == 25, "nothing dropped")
            await expectBrokerError(.databaseUnavailable) { try await writer.shutdown() }
            #expect(await writer.failedFlushes == 3)
            #expect(await writer.pendingCount == 25)

            try await store.executeForTesting("ALTER TABLE audit_records_away RENAME TO audit_records")
            #expect(await writer.flush() == true)
            #expect(await writer.pendingCount == 0)
            let stored = try await store.auditRecords(tenant: tenant, from: .distantPast, to: .distantFuture, limit: 1000)
            #expect(stored == input)
        }
    }
}
