import FedBrokerCore
import Foundation
import Synchronization
import Testing

@testable import BrokerStore
import FedBrokerTestSupport

/// A store call within a request's deadline, and a store whose PostgreSQL has stopped.
@Suite struct StoreDeadlineTests {
    /// Set once the body it is given has ended (returned, thrown or been cancelled).
    final class Ended: Sendable {
        private let flag = Atomic<Bool>(false)
        func set() { self.flag.store(true, ordering: .relaxed) }
        var value: Bool { self.flag.load(ordering: .relaxed) }
    }

    /// Waits, bounded, for a condition another task makes true.
    static func eventually(_ seconds: Double = 5, _ condition: () -> Bool) async -> Bool {
        let end = ContinuousClock.now.advanced(by: .milliseconds(Int64(seconds * 1000)))
        while !condition(), ContinuousClock.now < end { await Task.yield() }
        return condition()
    }

    @Test("Within the deadline the body's answer comes back, and the body sees the deadline")
    func answerWithinDeadline() async throws {
        let clock = ManualWallClock()
        let value = try await withStoreDeadline(clock.now.addingTimeInterval(30), clock: clock) { () -> Int in
            let left = try #require(StoreDeadline.current?.remaining)
            #expect(left <= .seconds(30) && left > .seconds(0))  // the body sees the 30 s deadline (a loaded 2-core run may have spent seconds getting here)
            return 42
        }
        #expect(value == 42)
    }

    @Test("A deadline already passed fails at once as store_timeout, without asking the store")
    func passedDeadline() async {
        let clock = ManualWallClock()
        let ran = Ended()
        await expectBrokerError(.storeTimeout) {
            _ = try await withStoreDeadline(clock.now.addingTimeInterval(-1), clock: clock) { ran.set() }
        }
        #expect(!ran.value)
    }

    @Test("A store call that does not answer fails at the deadline as store_timeout, and is cancelled")
    func silentStore() async throws {
        let clock = ManualWallClock()
        let (never, _) = AsyncStream<Void>.makeStream()
        let ended = Ended()
        let started = ContinuousClock.now
        await expectBrokerError(.storeTimeout) {
            try await withStoreDeadline(clock.now.addingTimeInterval(0.2), clock: clock) {
                for await _ in never {}  // ends only when cancelled
                ended.set()
            }
        }
        let elapsed = ContinuousClock.now - started
        // The upper bound only tells the deadline from never: a CI run on two loaded cores once
        // took 25.4 s to wake this 0.2 s timer, while the whole test process was starved.
        #expect(elapsed >= .milliseconds(200) && elapsed < .seconds(120), "answered after \(elapsed)")
        #expect(await Self.eventually { ended.value }, "the abandoned call was cancelled")
    }

    @Test("A call waiting for a PostgreSQL connection at the deadline is database_unavailable")
    func waitingForConnection() async {
        let clock = ManualWallClock()
        let (never, _) = AsyncStream<Void>.makeStream()
        await expectBrokerError(.databaseUnavailable) {
            try await withStoreDeadline(clock.now.addingTimeInterval(0.1), clock: clock) {
                StoreDeadline.current?.connectionWaitBegan()
                for await _ in never {}
            }
        }
    }

    @Test("A cancelled caller gets CancellationError at once, not the deadline's error")
    func cancelledCaller() async {
        let clock = ManualWallClock()
        let (never, _) = AsyncStream<Void>.makeStream()
        let call = Task {
            try await withStoreDeadline(clock.now.addingTimeInterval(600), clock: clock) { for await _ in never {} }
        }
        call.cancel()
        let started = ContinuousClock.now
        let result = await call.result
        #expect(ContinuousClock.now - started < .seconds(300))  // before the 600 s deadline: the cancellation, not the deadline, ended it
        #expect(throws: CancellationError.self) { try result.get() }
    }

    @Test("The codes a request answers as retryable UNAVAILABLE")
    func unavailableCodes() {
        #expect(BrokerError.Code.databaseUnavailable.isStoreUnavailable)
        #expect(BrokerError.Code.storeTimeout.isStoreUnavailable)
        #expect(BrokerError.Code.transactionConflict.isStoreUnavailable)
        #expect(!BrokerError.Code.storeFailure.isStoreUnavailable)
        #expect(!BrokerError.Code.notFound.isStoreUnavailable)
        #expect(!BrokerError.Code.invalidData.isStoreUnavailable)
    }
}

/// PostgreSQL stopped under a running store: every call fails soon and classified, and the store
/// serves again once the server is back. Runs where scripts/test.sh runs the PostgreSQL tests;
/// the server is the test's own.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["FEDBROKER_TEST_DATABASE_URL"].map { !$0.isEmpty } ?? false))
struct StoreDownTests {
    /// Opens the store while the server is up. A loaded machine may take longer than the short
    /// connect_timeout to set up the first connection; that is not what this test is about.
    static func open(_ url: String, clock: ManualWallClock) async throws -> SQLBrokerStore {
        for _ in 1..<3 {
            if let store = try? await SQLBrokerStore.open(StoreConfiguration(databaseURL: url), clock: clock, logger: TestDatabase.logger) {
                return store
            }
        }
        return try await SQLBrokerStore.open(StoreConfiguration(databaseURL: url), clock: clock, logger: TestDatabase.logger)
    }

    @Test("With the server stopped a lookup fails at connect_timeout, not the pool's minute, as database_unavailable; a deadline-bound one at its deadline, retryable; an audit append as soon")
    func serverStopped() async throws {
        let postgres = try ThrowawayPostgres()
        defer { postgres.destroy() }
        let clock = ManualWallClock()
        let store = try await Self.open(postgres.url + "&connect_timeout=3", clock: clock)
        do {
            _ = try await store.migrate()
            try await makeActiveSlots(store, 1...1)
            _ = try await store.registerTenant(makeRegistration(1), actor: "test")
            #expect(try await store.tenants().count == 1)
            try postgres.stop()

            var started = ContinuousClock.now
            await expectBrokerError(.databaseUnavailable) { _ = try await store.tenant(TenantID(rawValue: "customer-1")!) }
            var elapsed = ContinuousClock.now - started
            #expect(elapsed < .seconds(50), "connect_timeout=3 (the pool alone waits a minute), answered after \(elapsed)")

            // database_unavailable while the call waits for a connection; store_timeout if it got a
            // pooled one the pool had not yet found dead. Both are the retryable kind.
            started = ContinuousClock.now
            do {
                _ = try await withStoreDeadline(clock.now.addingTimeInterval(0.3), clock: clock) { try await store.tenants() }
                Issue.record("the store answered with its server stopped")
            } catch let error as BrokerError {
                #expect(error.code.isStoreUnavailable, "\(String(reflecting: error))")
            }
            elapsed = ContinuousClock.now - started
            #expect(elapsed < .seconds(50), "the deadline was 0.3 s (connect_timeout 3 s; the pool alone waits a minute), answered after \(elapsed)")

            var configuration = AuditWriter.Configuration()
            configuration.flushInterval = .seconds(3600)
            let writer = AuditWriter(store: store, configuration: configuration, logger: TestDatabase.logger)
            let record = AuditRecord(time: clock.now, actor: "svc", tenantID: nil, operation: "key.unwrap", outcome: .success)
            started = ContinuousClock.now
            await expectBrokerError(.databaseUnavailable) { try await writer.appendDurably(record) }
            elapsed = ContinuousClock.now - started
            #expect(elapsed < .seconds(50), "connect_timeout=3 (the pool alone waits a minute), answered after \(elapsed)")
            #expect(await writer.pendingCount == 1, "kept for retry")

            // Back: the same store serves again and the record is written, nothing to repair.
            try postgres.start()
            var flushed = false
            let restarted = ContinuousClock.now
            while !flushed, ContinuousClock.now - restarted < .seconds(30) { flushed = await writer.flush() }
            #expect(flushed)
            try await writer.shutdown()
            #expect(try await store.tenants().count == 1)
            let stored = try await store.auditEntries(AuditQuery(limit: 100))
            #expect(stored.contains { $0.record.id == record.id })
            try await store.close()
        } catch {
            try? await store.close()
            throw error
        }
    }
}
