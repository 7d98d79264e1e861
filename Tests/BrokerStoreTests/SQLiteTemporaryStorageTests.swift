import FedBrokerCore
import Foundation
import Testing

@testable import BrokerStore

/// SQLite's `temp_store` on the writing connection: in memory for the audit shipper's bulk inserts
/// (their statement journals no longer go to temporary files on disk), SQLite's default for every
/// other write, so a migration's index build can still spill its sort to disk.
@Suite struct SQLiteTemporaryStorageTests {
    @Test("Bulk inserts run with temp_store MEMORY; every other write, before and after, with the default")
    func scopedToBulkInserts() async throws {
        try await withStore(.sqlite) { store, database in
            let backend = try #require(store.backend as? SQLiteBackend)
            @Sendable func setting(_ session: any SQLSession) async throws -> Int64? {
                try await session.query("PRAGMA temp_store", []).first?.integer("temp_store")
            }
            #expect(try await backend.withTransaction(setting) == 0, "SQLite's default before any bulk insert")
            #expect(try await backend.withBulkInsertTransaction(setting) == 2, "MEMORY in a bulk insert")
            #expect(try await backend.withTransaction(setting) == 0, "a transaction after it has the default again")
            _ = try await backend.withBulkInsertTransaction(setting)
            #expect(try await backend.withSingleStatement(setting) == 0, "and so does a single statement")

            // The shipper's batch of more than 200 records takes the bulk path, and its records land.
            let tenant = TenantID(rawValue: "tenant-a")!
            let records = (0..<450).map { n in
                AuditRecord(
                    time: database.clock.now, actor: "svc", tenantID: tenant, operation: "unwrap", keyVersion: nil,
                    outcome: .success, latencyMicroseconds: Int64(n), requestID: "r-\(n)", clientRequestID: nil, detail: nil)
            }
            _ = try await backend.withBulkInsertTransaction(setting)  // so the next write must switch back
            try await store.appendAudit(Array(records.prefix(150)))
            #expect(backend.writerTemporaryStorageInMemory == false, "150 records: one statement, the default")
            try await store.appendAudit(Array(records.dropFirst(150)))
            #expect(backend.writerTemporaryStorageInMemory == true, "300 records: the bulk transaction")
            let stored = try await store.auditRecords(tenant: tenant, from: .distantPast, to: .distantFuture, limit: 1_000)
            #expect(stored.map(\.requestID) == records.map(\.requestID))
            #expect(try await backend.withTransaction(setting) == 0)
        }
    }
}
