import FedBrokerCore
import FedBrokerTestSupport
import Synchronization
import Testing

@testable import BrokerServer

/// Refresh ahead: a hot record is reloaded in the background past half its age, and never served
/// older than its age bound, whether the refresh succeeds, fails or is overtaken by an invalidation.
@Suite struct RecordCacheTests {
    final class Loads: Sendable {
        let count = Atomic<Int>(0)
        let value = Atomic<Int>(1)
        let fail = Atomic<Bool>(false)
        func load() throws -> Int {
            count.add(1, ordering: .relaxed)
            if fail.load(ordering: .relaxed) { throw BrokerError(.databaseUnavailable, "down") }
            return value.load(ordering: .relaxed)
        }
    }

    /// Yields until `condition` holds (a background task's result), at most 10,000 times.
    static func eventually(_ condition: () -> Bool) async -> Bool {
        for _ in 0..<10_000 {
            if condition() { return true }
            await Task.yield()
        }
        return condition()
    }

    @Test("Past half its age the record is served as it is while one refresh loads its successor")
    func refreshesAhead() async throws {
        let clock = ManualWallClock()
        let cache = RecordCache<String, Int>(maximumAge: 1, clock: clock)
        let loads = Loads()
        #expect(try await cache.value(for: "k") { try loads.load() } == 1)
        loads.value.store(2, ordering: .relaxed)
        clock.advance(by: 0.4)
        #expect(cache.cached("k", refreshing: { try loads.load() }) == 1)
        #expect(loads.count.load(ordering: .relaxed) == 1, "no refresh before half the age")
        clock.advance(by: 0.2)
        #expect(cache.cached("k", refreshing: { try loads.load() }) == 1, "the old record still answers while the refresh runs")
        #expect(cache.cached("k", refreshing: { try loads.load() }) == 1)
        #expect(await Self.eventually { cache.cached("k") == 2 })
        #expect(loads.count.load(ordering: .relaxed) == 2, "one refresh, however many readers")
        // The successor ages from when its load began (0.6 s): still served at 1.5 s, gone at 1.6 s.
        clock.advance(by: 0.9)
        #expect(cache.cached("k") == 2)
        clock.advance(by: 0.1)
        #expect(cache.cached("k") == nil)
    }

    @Test("A reader after an invalidation does not join a load that began before it, so the record it removed is not cached again",
          .timeLimit(.minutes(1)))  // joined, it would wait for a load released only after it returns
    func readerAfterInvalidationLoadsAnew() async throws {
        let clock = ManualWallClock()
        let cache = RecordCache<String, String>(maximumAge: 60, clock: clock)
        let (started, startedSink) = AsyncStream.makeStream(of: Void.self)
        let (release, releaseSink) = AsyncStream.makeStream(of: Void.self)
        // A load that read the record before it changed, and is slow to come back.
        let stale = Task {
            try await cache.value(for: "tenant") {
                startedSink.yield()
                for await _ in release { break }
                return "active"
            }
        }
        var startedIterator = started.makeAsyncIterator()
        await startedIterator.next()
        // The change feed says the tenant changed (suspended) while that load is out.
        cache.invalidate("tenant")
        let fresh = try await cache.value(for: "tenant") { "suspended" }
        #expect(fresh == "suspended", "joined the load that began before the invalidation")
        releaseSink.yield()
        #expect(try await stale.value == "active", "the old reader gets what it read")
        #expect(cache.cached("tenant") == "suspended", "and the cache keeps the record read after the change")
    }

    @Test("A failed refresh changes nothing: the record expires at its age bound, and a later reader tries again")
    func failedRefresh() async throws {
        let clock = ManualWallClock()
        let cache = RecordCache<String, Int>(maximumAge: 1, clock: clock)
        let loads = Loads()
        _ = try await cache.value(for: "k") { try loads.load() }
        loads.fail.store(true, ordering: .relaxed)
        clock.advance(by: 0.6)
        #expect(cache.cached("k", refreshing: { try loads.load() }) == 1)
        #expect(await Self.eventually { loads.count.load(ordering: .relaxed) == 2 })
        #expect(await Self.eventually { cache.cached("k", refreshing: { try loads.load() }) == 1 && loads.count.load(ordering: .relaxed) == 3 })
        clock.advance(by: 0.4)
        #expect(cache.cached("k", refreshing: { try loads.load() }) == nil)
    }

    @Test("An invalidation during a refresh wins: the refreshed record is not put back")
    func invalidationWins() async throws {
        let clock = ManualWallClock()
        let cache = RecordCache<String, Int>(maximumAge: 1, clock: clock)
        _ = try await cache.value(for: "k") { 1 }
        clock.advance(by: 0.6)
        let gate = AsyncStream<Void>.makeStream()
        let started = AsyncStream<Void>.makeStream()
        #expect(cache.cached("k", refreshing: {
            started.continuation.yield()
            for await _ in gate.stream { break }
            return 2
        }) == 1)
        for await _ in started.stream { break }
        cache.invalidate("k")
        gate.continuation.yield()
        // The refresh has finished once a new load can be made and nothing else appeared.
        #expect(await Self.eventually { cache.cached("k") == nil })
        #expect(try await cache.value(for: "k") { 3 } == 3)
    }
}
