import BrokerApp
import BrokerServer
import BrokerStore
import FedBrokerCore
import Foundation
import Testing

import FedBrokerTestSupport

/// `BrokerApp.run()` does not stop quietly with a hole in the audit trail: records it accepted and
/// could not write make it throw `AuditIncompleteError` (and `serve` exit 3).
@Suite struct AuditShutdownTests {
    /// A broker on SQLite in the emulator's directory, mTLS with a fresh PKI.
    static func configuration(_ running: RunningEmulator) throws -> BrokerAppConfiguration {
        var configuration = BrokerAppConfiguration(
            store: .sqlite(path: running.directory.appendingPathComponent("broker.db").path),
            service: BrokerService.Configuration(environment: running.environment))
        configuration.transport.tls = try LocalPKI().serverTLS()
        return configuration
    }

    @Test("At shutdown, audit records the store would not take make run() throw AuditIncompleteError with their count")
    func unwrittenRecordsFailTheRun() async throws {
        let logger = TestLogging.logger(label: "audit-shutdown", uncapturedLevel: .critical)
        try await RunningEmulator.with(logger: logger) { running in
            var configuration = try Self.configuration(running)
            configuration.audit.quarantineDirectory = running.directory.appendingPathComponent("quarantine").path
            configuration.audit.shutdownAttempts = 1
            let app = try await BrokerApp.build(configuration, signals: [], logger: logger)
            let runner = Task { try await app.run() }
            try await app.store.executeForTesting("ALTER TABLE audit_records RENAME TO audit_records_away")
            try await app.audit.append(
                AuditRecord(time: Date(), actor: "svc", tenantID: nil, operation: "key.unwrap", outcome: .success))
            await app.shutdown()
            let result = await runner.result
            do {
                try result.get()
                Issue.record("run() returned although an audit record was never written")
            } catch let error as AuditIncompleteError {
                #expect(error.unwritten == 1)
                #expect(error.quarantined == 0)
                #expect(error.underlying.code == .storeFailure)
                #expect(error.quarantineFile == configuration.audit.quarantineDirectory.map { $0 + "/audit-quarantine.jsonl" })
            }
        }
    }

    @Test("A start that fails after the journal is open (its port taken) lets go of the journal: its lock, its threads and its empty segment")
    func failedStartReleasesTheJournal() async throws {
        let logger = TestLogging.logger(label: "audit-journal-abandon", uncapturedLevel: .critical)
        try await RunningEmulator.with(logger: logger) { running in
            let journalDirectory = running.directory.appendingPathComponent("journal").path
            var configuration = try Self.configuration(running)
            configuration.auditJournal = AuditJournal.Configuration(directory: journalDirectory)
            // A first broker holds the port.
            let first = try await BrokerApp.build(configuration, signals: [], logger: logger)
            var second = configuration
            second.transport.port = first.transport.port
            second.auditJournal = AuditJournal.Configuration(directory: journalDirectory + "-second")
            do {
                _ = try await BrokerApp.build(second, signals: [], logger: logger)
                Issue.record("a second broker bound a port the first holds")
            } catch let error as BrokerError {
                Issue.record("refused for another reason: \(error)")
            } catch {
                // The bind's own error (address in use): what a start with a taken port meets.
            }
            let left = try FileManager.default.contentsOfDirectory(atPath: journalDirectory + "-second").filter { $0.hasSuffix(".wal") || $0.hasSuffix(".tmp") }
            #expect(left.isEmpty, "the failed start left \(left)")
            // Its lock is free: this process (a test, the bench) can open the directory again.
            let store = try await SQLBrokerStore.open(.sqlite(path: running.directory.appendingPathComponent("broker.db").path), logger: logger)
            let reopened = try AuditJournal(store: store, configuration: .init(directory: journalDirectory + "-second"), logger: logger)
            try await reopened.shutdown()
            try await store.close()
            await first.shutdown()
            try await first.run()
        }
    }

    @Test("With the journal, a record the database rejected makes run() throw with its count, none said to wait in the journal")
    func quarantinedJournalRecordsFailTheRun() async throws {
        let logger = TestLogging.logger(label: "audit-journal-quarantine", uncapturedLevel: .critical)
        try await RunningEmulator.with(logger: logger) { running in
            var configuration = try Self.configuration(running)
            var journalConfiguration = AuditJournal.Configuration(directory: running.directory.appendingPathComponent("journal").path)
            journalConfiguration.quarantineDirectory = running.directory.appendingPathComponent("quarantine").path
            configuration.auditJournal = journalConfiguration
            let app = try await BrokerApp.build(configuration, signals: [], logger: logger)
            let journal = try #require(app.journal)
            let runner = Task { try await app.run() }
            try await app.store.executeForTesting(
                """
                CREATE TRIGGER test_poison BEFORE INSERT ON audit_records WHEN NEW.request_id = 'poison'
                BEGIN SELECT RAISE(ABORT, 'poison'); END
                """)
            for requestID in ["poison", "fine"] {
                try await journal.appendDurably(
                    AuditRecord(time: Date(), actor: "svc", tenantID: nil, operation: "key.unwrap", outcome: .success, requestID: requestID),
                    deadline: .distantFuture, clock: SystemWallClock())
            }
            await app.shutdown()
            let result = await runner.result
            do {
                try result.get()
                Issue.record("run() returned although a record was quarantined")
            } catch let error as AuditIncompleteError {
                #expect(error.quarantined == 1)
                #expect(error.unwritten == 0, "nothing waits in the journal")
                #expect(error.underlying.code == .invalidData)
                #expect(error.quarantineFile == journalConfiguration.quarantineDirectory.map { $0 + "/audit-quarantine.jsonl" })
            }
        }
    }
}
