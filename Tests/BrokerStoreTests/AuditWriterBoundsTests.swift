import FedBrokerCore
import Foundation
import Testing

@testable import BrokerStore

/// What the audit writer holds is bounded: in bytes as well as records, per field, and what the
/// database rejects is kept on disk rather than in memory.
@Suite struct AuditWriterBoundsTests {
    static func rename(_ store: SQLBrokerStore, away: Bool) async throws {
        try await store.executeForTesting(
            away ? "ALTER TABLE audit_records RENAME TO audit_records_away" : "ALTER TABLE audit_records_away RENAME TO audit_records")
    }

    static func record(_ n: Int, tenant: TenantID, at time: Date, detail: String? = nil) -> AuditRecord {
        AuditRecord(
            time: time.addingTimeInterval(Double(n)), actor: "svc", tenantID: tenant, operation: "key.wrap", outcome: .success,
            requestID: "r\(n)", detail: detail)
    }

    /// A temporary directory, removed afterwards.
    static func withDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fb-quarantine-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try await body(directory)
    }

    static func poison(_ store: SQLBrokerStore, _ kind: StoreKind) async throws {
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
    }

    @Test("A record the database rejects ends in the quarantine file (JSON lines, mode 0600), not in memory",
          arguments: StoreKind.allCases)
    func quarantinePersisted(kind: StoreKind) async throws {
        try await Self.withDirectory { directory in
            try await withStore(kind) { store, database in
                try await Self.poison(store, kind)
                var configuration = AuditWriter.Configuration()
                configuration.quarantineDirectory = directory
                let writer = AuditWriter(store: store, configuration: configuration, logger: TestDatabase.logger)
                let tenant = TenantID(rawValue: "t")!
                var input = (0..<6).map { Self.record($0, tenant: tenant, at: database.clock.now) }
                input[2] = Self.record(2, tenant: tenant, at: database.clock.now, detail: "poison")
                input[5] = Self.record(5, tenant: tenant, at: database.clock.now, detail: "poison")
                for record in input { try await writer.append(record) }
                #expect(await writer.flush() == true)
                #expect(await writer.quarantinedCount == 2)
                #expect(await writer.quarantinedRecords.isEmpty, "persisted, so not held in memory")

                let path = try #require(writer.quarantineFilePath)
                #expect(path == directory + "/audit-quarantine.jsonl")
                let attributes = try FileManager.default.attributesOfItem(atPath: path)
                #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
                let text = try String(contentsOfFile: path, encoding: .utf8)
                let lines = try text.split(separator: "\n").map {
                    try JSONDecoder().decode(AuditQuarantineFile.Line.self, from: Data($0.utf8))
                }
                #expect(lines.map(\.id) == [input[2].id, input[5].id].map { $0.uuidString.lowercased() })
                #expect(lines.allSatisfy { $0.rejection == "invalid_data" && $0.detail == "poison" && $0.operation == "key.wrap" })
                #expect(text.hasSuffix("\n"))

                let written = try await store.auditRecords(tenant: tenant, from: .distantPast, to: .distantFuture, limit: 100)
                #expect(written.count == 4)
                do {
                    try await writer.shutdown()
                    Issue.record("shutdown succeeded with quarantined records")
                } catch let error as BrokerError {
                    #expect(error.code == .invalidData)
                    #expect(error.message.contains("2 in \(path)"))
                }
            }
        }
    }

    @Test("The queue is bounded in bytes: past maximumQueueBytes an append waits, then is refused; room comes back after a flush",
          arguments: StoreKind.allCases)
    func boundedInBytes(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            let tenant = TenantID(rawValue: "t")!
            let detail = String(repeating: "d", count: 400)
            let input = (0..<4).map { Self.record($0, tenant: tenant, at: database.clock.now, detail: detail) }
            let size = input[0].approximateSize
            var configuration = AuditWriter.Configuration()
            configuration.batchSize = 100
            configuration.maximumQueueBytes = 3 * size + size / 2  // three fit, not four
            configuration.appendTimeout = .milliseconds(300)
            let writer = AuditWriter(store: store, configuration: configuration, logger: TestDatabase.logger)
            try await Self.rename(store, away: true)
            for record in input.prefix(3) { try await writer.append(record) }
            let health = await writer.health
            #expect(health.backlogBytes == 3 * size)
            #expect(health.isFull == false)
            do {
                try await writer.append(input[3])
                Issue.record("a fourth record was accepted past the byte bound")
            } catch let error as BrokerError {
                #expect(error.code == .storeTimeout)
                #expect(error.message.contains("\(3 * size) bytes pending"))
            }
            // `health` counts a batch a flush under way holds as well.
            #expect(await writer.health.backlog == 3, "bounded: the fourth was refused, not queued")
            #expect(await writer.health.backlogBytes == 3 * size)
            try await Self.rename(store, away: false)
            #expect(await writer.flush() == true)
            #expect(await writer.health.backlogBytes == 0)
            try await writer.append(input[3])
            try await writer.shutdown()
            #expect(try await store.auditRecords(tenant: tenant, from: .distantPast, to: .distantFuture, limit: 10) == input)
        }
    }

    @Test("An appender waiting for room that is cancelled stops waiting at once and queues nothing")
    func cancelledWaiter() async throws {
        try await withStore(.sqlite) { store, database in
            var configuration = AuditWriter.Configuration()
            configuration.maximumPending = 1
            configuration.appendTimeout = .seconds(120)
            let writer = AuditWriter(store: store, configuration: configuration, logger: TestDatabase.logger)
            let tenant = TenantID(rawValue: "t")!
            try await Self.rename(store, away: true)
            try await writer.append(Self.record(0, tenant: tenant, at: database.clock.now))
            let waiting = Task { try await writer.append(Self.record(1, tenant: tenant, at: database.clock.now)) }
            while await writer.appendsWaitingForRoom == 0 { await Task.yield() }
            let started = ContinuousClock.now
            waiting.cancel()
            let result = await waiting.result
            #expect(ContinuousClock.now - started < .seconds(60), "not the 120 s append timeout")
            #expect(throws: CancellationError.self) { try result.get() }
            #expect(await writer.health.backlog == 1, "the first record only (pending or in a flush under way)")
            try await Self.rename(store, away: false)
            try await writer.shutdown()
            #expect(try await store.auditRecords(tenant: tenant, from: .distantPast, to: .distantFuture, limit: 10).map(\.requestID) == ["r0"])
        }
    }

    @Test("A record with huge fields (900 KiB) is stored with every field within its bound",
          arguments: StoreKind.allCases)
    func hugeFieldsStoredBounded(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            let huge = String(repeating: "x", count: 900 * 1024)
            let tenant = TenantID(rawValue: "t")!
            let record = AuditRecord(
                time: database.clock.now, actor: huge, tenantID: tenant, operation: "key.unwrap", keyVersion: huge,
                outcome: .failure(code: huge), requestID: huge, clientRequestID: huge, detail: "unknown tenant '\(huge)'")
            let writer = AuditWriter(store: store, logger: TestDatabase.logger)
            try await writer.appendDurably(record)
            try await writer.shutdown()
            let stored = try #require(
                try await store.auditRecords(tenant: tenant, from: .distantPast, to: .distantFuture, limit: 10).first)
            #expect(stored == record)
            #expect(try #require(stored.detail).utf8.count <= 1024)
            #expect(try #require(stored.detail).utf8.count <= AuditRecord.Limits.detailBytes)
            #expect(stored.actor.utf8.count <= AuditRecord.Limits.actorBytes)
            #expect(try #require(stored.requestID).utf8.count <= AuditRecord.Limits.requestIDBytes)
            #expect(try #require(stored.keyVersion).utf8.count <= AuditRecord.Limits.keyVersionBytes)
        }
    }
}
