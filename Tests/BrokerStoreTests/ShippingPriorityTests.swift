import FedBrokerCore
import Foundation
import Testing

@testable import BrokerStore

/// The journal's shipper yields the cores to the answers: on SQLite its inserts run on a
/// connection of their own whose thread has a raised nice value, while the backlog is small; a
/// backlog, or shutdown, ships at the answers' priority.
@Suite struct ShippingPriorityTests {
    static func records(_ count: Int, from first: Int = 0) -> [AuditRecord] {
        AuditJournalTests.records(first + count).suffix(count).map { $0 }
    }

    /// A SQLite store (its backend, to ask which thread did what) and a journal directory, removed after.
    static func withJournalDirectory(_ body: (SQLBrokerStore, SQLiteBackend, String) async throws -> Void) async throws {
        try await withStore(.sqlite) { store, _ in
            let backend = try #require(store.backend as? SQLiteBackend)
            let directory = AuditJournalTests.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try await body(store, backend, directory)
        }
    }

    @Test("The rule: background while open, within the backlog limit and at most two segments")
    func rule() {
        #expect(AuditJournal.shipsInBackground(closed: false, unshippedRecords: 0, segments: 1, backlogLimit: 20_000))
        #expect(AuditJournal.shipsInBackground(closed: false, unshippedRecords: 20_000, segments: 2, backlogLimit: 20_000))
        #expect(!AuditJournal.shipsInBackground(closed: false, unshippedRecords: 20_001, segments: 1, backlogLimit: 20_000), "falling behind")
        #expect(!AuditJournal.shipsInBackground(closed: false, unshippedRecords: 0, segments: 3, backlogLimit: 20_000), "a previous run's segments")
        #expect(!AuditJournal.shipsInBackground(closed: true, unshippedRecords: 0, segments: 1, backlogLimit: 20_000), "shutdown")
    }

    @Test("Background appends land like any other, on SQLite through a second connection whose thread is lowered", arguments: StoreKind.allCases)
    func backgroundAppendsLand(_ kind: StoreKind) async throws {
        // What the process runs at (0, unless the tests were started under `nice`).
        let base = LowPriorityThread.currentNice()
        try await withStore(kind) { store, _ in
            let records = Self.records(450)
            try await store.appendAudit(Array(records.prefix(50)))
            if let backend = store.backend as? SQLiteBackend {
                #expect(try await backend.shippingThreadNice() == nil, "opened on the first background batch, not before")
            }
            try await store.appendAuditInBackground(Array(records.dropFirst(50)))
            // Idempotent by id, like appendAudit: a batch sent again after a lost acknowledgement.
            try await store.appendAuditInBackground(Array(records.suffix(10)))
            #expect(try await AuditJournalTests.stored(store) == Set(records.map(\.id)))
            // In batch order: on PostgreSQL the 400 rows go in four statements, whose sequence
            // numbers follow one another.
            let page = try await store.auditEntries(AuditQuery(tenant: TenantID(rawValue: "journal-tenant"), afterSequence: 0, limit: 1000))
            #expect(page.map(\.record.id) == records.map(\.id))
            if kind == .postgres {
                // One transaction, whatever its statements: a batch lands whole or not at all.
                let ids = records.dropFirst(50).map { "'\($0.id.uuidString.lowercased())'" }.joined(separator: ", ")
                #expect(try await store.rowCountForTesting("SELECT DISTINCT xmin::text FROM audit_records WHERE id IN (\(ids))") == 1)
                #expect(store.backgroundAuditRowsPerStatement < 400, "the batch above spans several statements (a server on this machine)")
            }
            if let backend = store.backend as? SQLiteBackend {
                #if os(Linux)
                #expect(try await backend.shippingThreadNice() == max(base, LowPriorityThread.nice))
                #endif
                #expect(try await backend.writerThreadNice() == base, "the writer, whose writes someone waits on, keeps the process's priority")
            }
        }
    }

    @Test("PostgreSQL on this machine gets background batches in short statements; a server elsewhere, one statement")
    func backgroundStatementsByServerPlace() throws {
        func rows(_ url: String) throws -> Int { SQLBrokerStore.backgroundAuditRowsPerStatement(.postgres(try PostgresSettings(url: url))) }
        #expect(try rows("postgres://broker@127.0.0.1:5432/fedbroker") == 100)
        #expect(try rows("postgres://broker@localhost/fedbroker") == 100)
        #expect(try rows("postgres://broker@[::1]:5432/fedbroker") == 100)
        // Its cores are not the answers': one statement for the shipper's 500 rows, as before.
        #expect(try rows("postgres://broker@db.internal.example:5432/fedbroker") >= 500)
        #expect(SQLBrokerStore.backgroundAuditRowsPerStatement(.sqlite(path: "/tmp/x.db")) == SQLBrokerStore.auditRowsPerStatement(.sqlite))
    }

    @Test("Closing the store closes the shipping connection; a background batch after it is refused, not a connection opened again")
    func closedStore() async throws {
        let database = try await TestDatabase.make(.sqlite)
        defer { Task { await database.destroy() } }
        let store = try await database.open()
        _ = try await store.migrate()
        let backend = try #require(store.backend as? SQLiteBackend)
        try await store.appendAuditInBackground(Self.records(3))
        #expect(try await backend.shippingThreadNice() != nil)
        try await store.close()
        #expect(try await backend.shippingThreadNice() == nil, "its thread is gone with it")
        do {
            try await store.appendAuditInBackground(Self.records(1, from: 3))
            Issue.record("a background batch was written after close")
        } catch let error as BrokerError {
            #expect(error.code == .databaseUnavailable, "\(error)")
        }
        #expect(try await backend.shippingThreadNice() == nil, "and none was opened again")
    }

    @Test("Records of a previous run are not taken off this run's unshipped count, so its backlog still ships at the answers' priority")
    func recoveredSegmentsLeaveTheCountAlone() async throws {
        let base = LowPriorityThread.currentNice()
        try await Self.withJournalDirectory { store, backend, directory in
            var configuration = AuditJournal.Configuration(directory: directory)
            do {
                // A run that crashed before shipping anything.
                let earlier = try AuditJournal(store: store, configuration: configuration, logger: TestDatabase.logger)
                try await AuditJournalTests.appendAll(earlier, Self.records(40))
                await AuditJournalTests.crash(earlier)
            }
            configuration.backgroundBacklog = 10
            let journal = try AuditJournal(store: store, configuration: configuration, logger: TestDatabase.logger)
            try await AuditJournalTests.appendAll(journal, Self.records(30, from: 40))
            #expect(await journal.health.backlog == 30)
            try await journal.shipPending()
            #expect(try await AuditJournalTests.stored(store).count == 70)
            #expect(await journal.health.backlog == 0)
            // Before: the earlier run's 40 records, shipped first, were taken off this run's 30
            // (to 0), and this run's backlog over the limit of 10 then went in the background.
            #expect(try await backend.shippingThreadNice() == nil, "30 of this run's records over a limit of 10: the ordinary writer")
            #expect(journal.lastBatchReadAtNice == base)
            try await journal.shutdown()
        }
    }

    @Test("The journal ships a backlog at the answers' priority and a small batch in the background")
    func journalChoosesByBacklog() async throws {
        let base = LowPriorityThread.currentNice()
        try await Self.withJournalDirectory { store, backend, directory in
            var configuration = AuditJournal.Configuration(directory: directory)
            configuration.backgroundBacklog = 10
            let journal = try AuditJournal(store: store, configuration: configuration, logger: TestDatabase.logger)
            let backlog = Self.records(30)
            try await AuditJournalTests.appendAll(journal, backlog)
            try await journal.shipPending()
            #expect(try await AuditJournalTests.stored(store) == Set(backlog.map(\.id)))
            #expect(try await backend.shippingThreadNice() == nil, "30 unshipped records, over the limit of 10: not in the background")
            #expect(journal.lastBatchReadAtNice == base, "nor read back on the low-priority thread")

            let few = Self.records(5, from: 30)
            try await AuditJournalTests.appendAll(journal, few)
            try await journal.shipPending()
            #expect(try await AuditJournalTests.stored(store) == Set((backlog + few).map(\.id)))
            #expect(try await backend.shippingThreadNice() != nil, "5 unshipped records: in the background")
            #if os(Linux)
            #expect(journal.lastBatchReadAtNice == max(base, LowPriorityThread.nice), "read back on the low-priority thread too")
            #endif
            try await journal.shutdown()
        }
    }
}
