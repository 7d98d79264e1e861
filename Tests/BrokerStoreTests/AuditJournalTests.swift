import FedBrokerCore
import FedBrokerTestSupport
import Foundation
import Synchronization
import Testing

@testable import BrokerStore

/// The audit journal against a real store (SQLite and PostgreSQL) and a real directory: what was
/// acknowledged reaches the store, across a crash, a store outage and a torn write.
@Suite struct AuditJournalTests {
    static let clock = SystemWallClock()

    static func directory() -> String {
        NSTemporaryDirectory() + "fedbroker-journal-\(UUID().uuidString.prefix(8))"
    }

    static func records(_ count: Int, tenant: String = "journal-tenant") -> [AuditRecord] {
        (0..<count).map { n in
            AuditRecord(
                time: Date(timeIntervalSince1970: 1_800_000_000 + Double(n)), actor: "svc", tenantID: TenantID(rawValue: tenant),
                operation: "key.unwrap", outcome: .success, latencyMicroseconds: Int64(n), requestID: "r-\(n)")
        }
    }

    static func stored(_ store: SQLBrokerStore, tenant: String = "journal-tenant") async throws -> Set<UUID> {
        var ids = Set<UUID>()
        var after: Int64 = 0
        while true {
            let page = try await store.auditEntries(AuditQuery(tenant: TenantID(rawValue: tenant), afterSequence: after, limit: 1000))
            guard let last = page.last else { return ids }
            ids.formUnion(page.map(\.record.id))
            after = last.sequence
        }
    }

    static func appendAll(_ journal: AuditJournal, _ records: [AuditRecord]) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for record in records {
                group.addTask { try await journal.appendDurably(record, deadline: .distantFuture, clock: clock) }
            }
            try await group.waitForAll()
        }
    }

    /// A next start's shipping, to the end: the shipper stopped at once, then `shutdown()` ships the rest.
    static func shipTheRest(_ journal: AuditJournal) async throws {
        let shipper = Task { await journal.run() }
        shipper.cancel()
        await shipper.value
        try await journal.shutdown()
    }

    /// Before a test drops a journal as a crash would: its I/O thread lets go of it, so the drop
    /// releases the directory's lock at once (the next open would find it in use otherwise).
    static func crash(_ journal: AuditJournal) async {
        await journal.quiesce()
    }

    /// Where the records end in a segment that holds exactly these (its file goes on, in zeros).
    static func end(of records: [AuditRecord]) -> Int {
        records.reduce(AuditJournalSegments.header.count) { end, record in
            var frame: [UInt8] = []
            AuditJournalRecord.encode(record, into: &frame)
            return end + frame.count
        }
    }

    /// Writes `bytes` at `offset` of a segment, as a write the crash interrupted would have.
    static func write(_ bytes: Data, at offset: Int, of path: String) throws {
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seek(toOffset: UInt64(offset))
        handle.write(bytes)
        try handle.close()
    }

    /// Segments kept aside as damaged.
    static func damaged(in directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(AuditJournalSegments.damagedSuffix) }.sorted()
    }

    static func segments(in directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".wal") }.sorted()
    }

    @Test("Acknowledged records reach the store; shipped segments are removed and a clean shutdown leaves none", arguments: StoreKind.allCases)
    func shipsEverything(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let directory = Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var configuration = AuditJournal.Configuration(directory: directory)
            configuration.segmentBytes = 16 * 1024  // several segments for 400 records
            configuration.batchSize = 64
            let journal = try AuditJournal(store: store, configuration: configuration, logger: TestDatabase.logger)
            let shipper = Task { await journal.run() }
            let records = Self.records(400)
            try await Self.appendAll(journal, records)
            shipper.cancel()
            await shipper.value
            try await journal.shutdown()
            #expect(try await Self.stored(store) == Set(records.map(\.id)))
            #expect(try Self.segments(in: directory).isEmpty)
            #expect(journal.bytesOnDisk == 0 || journal.bytesOnDisk == AuditJournalSegments.header.count)
        }
    }

    @Test("After a crash (no shutdown), the next process ships what the first acknowledged, and a torn last write is ignored")
    func replaysAfterACrash() async throws {
        try await withStore(.sqlite) { store, _ in
            let directory = Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let records = Self.records(120)
            do {
                // The first process: appends acknowledged, nothing shipped (its shipper never ran), then it dies.
                let first = try AuditJournal(store: store, configuration: .init(directory: directory), logger: TestDatabase.logger)
                try await Self.appendAll(first, records)
                await Self.crash(first)
            }
            #expect(try await Self.stored(store).isEmpty)
            // The crash interrupted a write: half a frame after the last record, zeros after it.
            let segment = try #require(try Self.segments(in: directory).last)
            let size = try #require(try FileManager.default.attributesOfItem(atPath: directory + "/" + segment)[.size] as? Int)
            #expect(size == AuditJournal.Configuration(directory: directory).segmentBytes, "preallocated")
            var frame: [UInt8] = []
            AuditJournalRecord.encode(Self.records(1, tenant: "torn")[0], into: &frame)
            try Self.write(Data(frame.prefix(frame.count / 2)), at: Self.end(of: records), of: directory + "/" + segment)

            let second = try AuditJournal(store: store, configuration: .init(directory: directory), logger: TestDatabase.logger)
            let shipper = Task { await second.run() }
            // Something new too, so the shipper is woken; the old segment goes first.
            let later = Self.records(1, tenant: "journal-tenant").map {
                AuditRecord(time: $0.time, actor: "svc", tenantID: $0.tenantID, operation: "key.wrap", outcome: .success)
            }
            try await Self.appendAll(second, later)
            shipper.cancel()
            await shipper.value
            try await second.shutdown()
            #expect(try await Self.stored(store) == Set((records + later).map(\.id)))
            #expect(try await Self.stored(store, tenant: "torn").isEmpty)
            #expect(try Self.segments(in: directory).isEmpty)
            // The zeros after the torn record are a preallocated segment's rest, not damage.
            #expect(try Self.damaged(in: directory) == [])
        }
    }

    @Test("Sync.interval: appends return without a sync, and a crash of the process loses none of them")
    func intervalAppendsSurviveAProcessCrash() async throws {
        try await withStore(.sqlite) { store, _ in
            let directory = Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let records = Self.records(100)
            do {
                var configuration = AuditJournal.Configuration(directory: directory)
                configuration.sync = .interval(.seconds(3600))
                // An hour's interval, so no background sync: only the kernel holds the writes.
                let first = try AuditJournal(store: store, configuration: configuration, logger: TestDatabase.logger)
                try await Self.appendAll(first, records)
                await Self.crash(first)
                #expect(first.syncs == 0)
                // The same appends with every batch synced wait for a sync each time.
                var batched = AuditJournal.Configuration(directory: directory + "-batch")
                batched.sync = .everyBatch
                let second = try AuditJournal(store: store, configuration: batched, logger: TestDatabase.logger)
                defer { try? FileManager.default.removeItem(atPath: directory + "-batch") }
                try await Self.appendAll(second, Self.records(3, tenant: "batch"))
                #expect(second.syncs >= 1)
            }
            // The process died (dropped without shutdown); the next start ships all it acknowledged.
            let next = try AuditJournal(store: store, configuration: .init(directory: directory), logger: TestDatabase.logger)
            try await Self.shipTheRest(next)
            #expect(try await Self.stored(store) == Set(records.map(\.id)))
        }
    }

    @Test("Sync.interval: the background sync follows the writes (without run()); a sealed segment is synced, and so is what shutdown leaves", .timeLimit(.minutes(2)))
    func intervalSyncsBehind() async throws {
        let database = try await TestDatabase.make(.sqlite)
        defer { Task { await database.destroy() } }
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let store = try await database.open()
            _ = try await store.migrate()
            var configuration = AuditJournal.Configuration(directory: directory)
            configuration.sync = .interval(.milliseconds(20))
            let journal = try AuditJournal(store: store, configuration: configuration, logger: TestDatabase.logger)
            try await Self.appendAll(journal, Self.records(10))
            // Returns once the tick has synced what was written (hangs, and fails on the time
            // limit, if it never does). The tick is the journal's own: the shipper has not started,
            // as while the listeners drain after it stopped.
            await journal.synced()
            #expect(journal.syncs >= 1)
            try await Self.shipTheRest(journal)
            try await store.close()
        }
        // Not migrated, so nothing ships: every segment stays, and each must have been synced.
        let unmigrated = try await TestDatabase.make(.sqlite)
        defer { Task { await unmigrated.destroy() } }
        let broken = try await unmigrated.open()
        var configuration = AuditJournal.Configuration(directory: directory + "-kept")
        defer { try? FileManager.default.removeItem(atPath: directory + "-kept") }
        configuration.sync = .interval(.seconds(3600))
        configuration.segmentBytes = 16 * 1024
        configuration.retryDelay = .milliseconds(10)
        configuration.shutdownAttempts = 1
        let journal = try AuditJournal(store: broken, configuration: configuration, logger: TestDatabase.logger)
        for record in Self.records(400) { try await journal.appendDurably(record, deadline: .distantFuture, clock: Self.clock) }
        // An answer comes before its batch's rotation: let the I/O thread finish before counting.
        await journal.quiesce()
        let segments = try Self.segments(in: directory + "-kept")
        #expect(segments.count >= 3)
        // One sync for each segment sealed by a rotation, none yet for the active one.
        #expect(journal.syncs == segments.count - 1)
        // Preallocated: written when anything but zeros follows the header.
        let active = try #require(FileManager.default.contents(atPath: directory + "-kept/" + segments[segments.count - 1]))
        let activeWritten = active.dropFirst(AuditJournalSegments.header.count).contains { $0 != 0 }
        await #expect(throws: BrokerError.self) { try await journal.shutdown() }
        // Shutdown syncs what the active segment holds (a rotation may have just begun it empty).
        #expect(journal.syncs == segments.count - (activeWritten ? 0 : 1))
        try await broken.close()
    }

    @Test("A segment that ends in a record cut off by zeros (a host crash's unwritten tail) ships what precedes it and is not kept as damaged")
    func zeroTailIsTorn() async throws {
        try await withStore(.sqlite) { store, _ in
            let directory = Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let records = Self.records(20)
            do {
                let first = try AuditJournal(store: store, configuration: .init(directory: directory), logger: TestDatabase.logger)
                try await Self.appendAll(first, records)
                await Self.crash(first)
            }
            let segment = try #require(try Self.segments(in: directory).last)
            // A record whose first 40 bytes reached the disk, then zeros to the end.
            var frame: [UInt8] = []
            AuditJournalRecord.encode(Self.records(1, tenant: "lost")[0], into: &frame)
            try Self.write(Data(frame.prefix(40)), at: Self.end(of: records), of: directory + "/" + segment)

            let second = try AuditJournal(store: store, configuration: .init(directory: directory), logger: TestDatabase.logger)
            try await Self.shipTheRest(second)
            #expect(try await Self.stored(store) == Set(records.map(\.id)))
            #expect(try Self.damaged(in: directory) == [])
        }
    }

    @Test("Segments are preallocated, the next one ahead: a rotation begins a full-size segment, and no spare outlives shutdown")
    func preallocated() async throws {
        try await withStore(.sqlite) { store, _ in
            let directory = Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var configuration = AuditJournal.Configuration(directory: directory)
            configuration.segmentBytes = 16 * 1024
            let journal = try AuditJournal(store: store, configuration: configuration, logger: TestDatabase.logger)
            await journal.spareReady()
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("audit-spare-") }.count == 1)
            // Several segments' worth: each rotation installs the spare made ahead (or grows one
            // as written if the spare is late, so only the second segment is sure to be full size).
            let records = Self.records(400)
            for record in records { try await journal.appendDurably(record, deadline: .distantFuture, clock: Self.clock) }
            await journal.quiesce()
            let segments = try Self.segments(in: directory)
            #expect(segments.count >= 3)
            for segment in segments.prefix(2) {
                let size = try #require(try FileManager.default.attributesOfItem(atPath: directory + "/" + segment)[.size] as? Int)
                #expect(size >= configuration.segmentBytes, "\(segment) is \(size) bytes")
            }
            try await Self.shipTheRest(journal)
            #expect(try await Self.stored(store) == Set(records.map(\.id)))
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0 != "LOCK" } == [])
        }
    }

    @Test("Without preallocation segments grow as written, and a crash's segments of either kind ship in full")
    func mixedSegments() async throws {
        try await withStore(.sqlite) { store, _ in
            let directory = Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let grown = Self.records(30, tenant: "grown")
            let full = Self.records(30)
            do {
                var configuration = AuditJournal.Configuration(directory: directory)
                configuration.preallocate = false
                let first = try AuditJournal(store: store, configuration: configuration, logger: TestDatabase.logger)
                try await Self.appendAll(first, grown)
                await Self.crash(first)
                let segment = try #require(try Self.segments(in: directory).last)
                let size = try #require(try FileManager.default.attributesOfItem(atPath: directory + "/" + segment)[.size] as? Int)
                #expect(size == Self.end(of: grown))
            }
            do {
                let second = try AuditJournal(store: store, configuration: .init(directory: directory), logger: TestDatabase.logger)
                try await Self.appendAll(second, full)
                await Self.crash(second)
            }
            let third = try AuditJournal(store: store, configuration: .init(directory: directory), logger: TestDatabase.logger)
            try await Self.shipTheRest(third)
            #expect(try await Self.stored(store, tenant: "grown") == Set(grown.map(\.id)))
            #expect(try await Self.stored(store) == Set(full.map(\.id)))
            let left = try FileManager.default.contentsOfDirectory(atPath: directory)
            #expect(left.filter { $0 != "LOCK" } == [], "left: \(left)")
        }
    }

    @Test(
        "Past the last record of a preallocated segment (and past a torn one), anything but zeros is damage: the segment is kept aside",
        arguments: [false, true])
    func bytesAfterTheZeros(afterATornRecord: Bool) async throws {
        try await withStore(.sqlite) { store, _ in
            let directory = Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let records = Self.records(20)
            var configuration = AuditJournal.Configuration(directory: directory)
            // Two read windows (1 MiB each) of zeros before the stray byte.
            configuration.segmentBytes = 3 << 20
            do {
                let first = try AuditJournal(store: store, configuration: configuration, logger: TestDatabase.logger)
                try await Self.appendAll(first, records)
                await Self.crash(first)
            }
            let segment = try #require(try Self.segments(in: directory).last)
            if afterATornRecord {
                var frame: [UInt8] = []
                AuditJournalRecord.encode(Self.records(1, tenant: "torn")[0], into: &frame)
                try Self.write(Data(frame.prefix(40)), at: Self.end(of: records), of: directory + "/" + segment)
            }
            try Self.write(Data([1]), at: configuration.segmentBytes - 1, of: directory + "/" + segment)
            let second = try AuditJournal(store: store, configuration: configuration, logger: TestDatabase.logger)
            try await Self.shipTheRest(second)
            #expect(try await Self.stored(store) == Set(records.map(\.id)))
            #expect(try Self.damaged(in: directory) == [segment + AuditJournalSegments.damagedSuffix])
        }
    }

    @Test("A failed sync refuses its batch (none of it acknowledged), the segment is cut back and sealed, and the next batch is written in the preallocated spare")
    func failedBatchSync() async throws {
        try await withStore(.sqlite) { store, _ in
            let directory = Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let failNext = Atomic<Bool>(false)
            var configuration = AuditJournal.Configuration(directory: directory)
            configuration.dataSync = { descriptor in
                guard !failNext.exchange(false, ordering: .relaxed) else {
                    errno = EIO
                    return -1
                }
                return fdatasync(descriptor)
            }
            let journal = try AuditJournal(store: store, configuration: configuration, logger: TestDatabase.logger)
            let records = Self.records(3)
            try await journal.appendDurably(records[0], deadline: .distantFuture, clock: Self.clock)
            await journal.spareReady()
            failNext.store(true, ordering: .relaxed)
            await #expect {
                try await journal.appendDurably(records[1], deadline: .distantFuture, clock: Self.clock)
            } throws: { ($0 as? BrokerError)?.code == .storeFailure }
            // Cut back to the last acknowledged record (no later record follows the refused one),
            // and sealed: what comes next goes into the spare, preallocated whole. The refusal is
            // answered before the I/O thread rotates: let it finish before counting.
            await journal.quiesce()
            let segments = try Self.segments(in: directory)
            try #require(segments.count == 2, "\(segments)")
            func size(_ name: String) throws -> Int? { try FileManager.default.attributesOfItem(atPath: directory + "/" + name)[.size] as? Int }
            #expect(try size(segments[0]) == Self.end(of: [records[0]]))
            #expect(try size(segments[1]) == configuration.segmentBytes)
            // Repaired (the cut and its sync succeeded): the journal goes on.
            try await journal.appendDurably(records[2], deadline: .distantFuture, clock: Self.clock)
            #expect(await journal.health.lastFailure == nil)
            try await Self.shipTheRest(journal)
            #expect(try await Self.stored(store) == [records[0].id, records[2].id])
        }
    }

    @Test("Sync.interval: a background sync that fails stops the journal: later appends are refused and its health says so")
    func failedBackgroundSync() async throws {
        try await withStore(.sqlite) { store, _ in
            let directory = Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var configuration = AuditJournal.Configuration(directory: directory)
            configuration.sync = .interval(.milliseconds(10))
            configuration.dataSync = { _ in
                errno = EIO
                return -1
            }
            let journal = try AuditJournal(store: store, configuration: configuration, logger: TestDatabase.logger)
            let records = Self.records(2)
            // Written, so answered: the sync comes after. One record, so one batch: a second
            // batch could come after the failed sync and be refused.
            try await journal.appendDurably(records[0], deadline: .distantFuture, clock: Self.clock)
            // Returns once the background sync has run (and failed: nothing is left waiting for it).
            await journal.synced()
            await #expect {
                try await journal.appendDurably(records[1], deadline: .distantFuture, clock: Self.clock)
            } throws: { ($0 as? BrokerError)?.code == .storeFailure }
            let health = await journal.health
            #expect(health.lastFailure == "journal_write_failed")
            #expect(health.failingFor != nil)
            // The answered record is in the file (the kernel holds it), so it is still shipped.
            try await Self.shipTheRest(journal)
            #expect(try await Self.stored(store) == [records[0].id])
        }
    }

    @Test("A lost tail is zeros from inside the last record to the end; anything else after it is damage")
    func lostTailShape() {
        var frame: [UInt8] = []
        AuditJournalRecord.encode(Self.records(1)[0], into: &frame)
        #expect(AuditJournalRecord.endsInZeros([UInt8](repeating: 0, count: 4096)))
        // The record's first 40 bytes reached the disk, the rest of its block did not.
        #expect(AuditJournalRecord.endsInZeros(Array(frame.prefix(40)) + [UInt8](repeating: 0, count: 4000)))
        // Bytes after the record's declared end are not a lost tail.
        #expect(!AuditJournalRecord.endsInZeros(Array(frame.prefix(40)) + [UInt8](repeating: 0, count: frame.count) + [1]))
        // Nor is a length no writer gives.
        #expect(!AuditJournalRecord.endsInZeros([0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5] + [UInt8](repeating: 0, count: 100)))
    }

    @Test("A record the database rejects is bisected out and quarantined to its file; the rest ship, and shutdown says how many were not",
          arguments: StoreKind.allCases)
    func rejectedRecordsQuarantined(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            switch kind {
            case .postgres:
                try await store.executeForTesting(
                    "ALTER TABLE audit_records ADD CONSTRAINT test_poison CHECK (request_id IS NULL OR request_id NOT LIKE 'poison%')")
            case .sqlite:
                try await store.executeForTesting(
                    """
                    CREATE TRIGGER test_poison BEFORE INSERT ON audit_records WHEN NEW.request_id LIKE 'poison%'
                    BEGIN SELECT RAISE(ABORT, 'poison'); END
                    """)
            }
            let directory = Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var configuration = AuditJournal.Configuration(directory: directory)
            configuration.quarantineDirectory = directory + "/quarantine"
            let journal = try AuditJournal(store: store, configuration: configuration, logger: TestDatabase.logger)
            let poisoned: Set<Int> = [3, 17]
            let records = Self.records(40).enumerated().map { n, record in
                guard poisoned.contains(n) else { return record }
                return AuditRecord(
                    id: record.id, time: record.time, actor: record.actor, tenantID: record.tenantID, operation: record.operation,
                    outcome: record.outcome, latencyMicroseconds: record.latencyMicroseconds, requestID: "poison-\(n)")
            }
            try await Self.appendAll(journal, records)
            let shipper = Task { await journal.run() }
            shipper.cancel()
            await shipper.value
            await expectBrokerError(.invalidData) { try await journal.shutdown() }
            let expected = Set(records.enumerated().filter { !poisoned.contains($0.offset) }.map(\.element.id))
            #expect(try await Self.stored(store) == expected)
            let lines = try String(contentsOfFile: directory + "/quarantine/audit-quarantine.jsonl", encoding: .utf8)
                .split(separator: "\n")
            #expect(lines.count == 2)
            #expect(lines.allSatisfy { $0.contains("poison-") })
        }
    }

    @Test("With the store failing, appends still succeed; shutdown says records remain, and the next start ships them")
    func storeOutage() async throws {
        let database = try await TestDatabase.make(.sqlite)
        defer { Task { await database.destroy() } }
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let records = Self.records(50)
        do {
            // Not migrated: every insert fails, as with a store that is away.
            let broken = try await database.open()
            var configuration = AuditJournal.Configuration(directory: directory)
            configuration.retryDelay = .milliseconds(10)
            configuration.shutdownAttempts = 2
            let journal = try AuditJournal(store: broken, configuration: configuration, logger: TestDatabase.logger)
            let shipper = Task { await journal.run() }
            try await Self.appendAll(journal, records)
            shipper.cancel()
            await shipper.value
            await #expect(throws: BrokerError.self) { try await journal.shutdown() }
            #expect(try Self.segments(in: directory).count == 1)
            try await broken.close()
        }
        let store = try await database.open()
        _ = try await store.migrate()
        let journal = try AuditJournal(store: store, configuration: .init(directory: directory), logger: TestDatabase.logger)
        try await Self.shipTheRest(journal)
        #expect(try await Self.stored(store) == Set(records.map(\.id)))
        try await store.close()
    }

    @Test("Past its byte bound the journal refuses appends instead of growing")
    func bounded() async throws {
        try await withStore(.sqlite) { store, _ in
            let directory = Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var configuration = AuditJournal.Configuration(directory: directory)
            configuration.maximumBytes = 4096
            let journal = try AuditJournal(store: store, configuration: configuration, logger: TestDatabase.logger)
            var accepted = 0
            var refusal: BrokerError?
            for record in Self.records(100) {
                do {
                    try await journal.appendDurably(record, deadline: .distantFuture, clock: Self.clock)
                    accepted += 1
                } catch let error as BrokerError {
                    refusal = error
                    break
                }
            }
            #expect(accepted > 0 && accepted < 100)
            #expect(refusal?.code == .storeTimeout)
            #expect(await journal.health.isFull)
            #expect(journal.bytesOnDisk <= 4096)
            try? await journal.shutdown()
        }
    }
}
