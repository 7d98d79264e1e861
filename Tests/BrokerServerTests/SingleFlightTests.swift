@testable import BrokerServer
import Foundation
import Synchronization
import Testing

@Suite struct SingleFlightTests {
    /// Work that counts its runs and finishes when released; remembers whether it was cancelled.
    final class GatedWork: Sendable {
        let runs = Mutex(0)
        let cancelled = Mutex(false)
        private let gate = Mutex<CheckedContinuation<Void, Never>?>(nil)

        func callAsFunction() async throws -> Int {
            runs.withLock { $0 += 1 }
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in gate.withLock { $0 = continuation } }
            } onCancel: {
                cancelled.withLock { $0 = true }
                gate.withLock { $0.take() }?.resume()
            }
            try Task.checkCancellation()
            return 42
        }
        var started: Bool { gate.withLock { $0 != nil } }
        func release() { gate.withLock { $0.take() }?.resume() }
    }

    static let far = Date().addingTimeInterval(3600)

    /// A first caller that started the gated work, and a second one waiting on it.
    func twoCallers() async -> (SingleFlight<String, Int>, GatedWork, Task<Int, any Error>, Task<Int, any Error>) {
        let flight = SingleFlight<String, Int>()
        let work = GatedWork()
        let first = Task { try await flight.run("k", deadline: Self.far) { try await work() } }
        await Self.poll { work.started }
        let second = Task { try await flight.run("k", deadline: Self.far) { try await work() } }
        await Self.poll { flight.waiters(for: "k") == 2 }
        return (flight, work, first, second)
    }

    /// Waits (bounded, 30 s) until `condition` holds; records an issue if it never does.
    static func poll(_ condition: () -> Bool) async {
        let started = ContinuousClock.now
        while !condition() {
            guard ContinuousClock.now - started < .seconds(30) else {
                Issue.record("condition not reached within 30 s")
                return
            }
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    @Test func identicalCallsShareOneRun() async throws {
        let (flight, work, first, second) = await twoCallers()
        work.release()
        #expect(try await first.value == 42)
        #expect(try await second.value == 42)
        #expect(work.runs.withLock { $0 } == 1)
        #expect(flight.waiters(for: "k") == 0)
    }

    @Test func aCancelledFirstCallerLeavesAloneAndTheWorkGoesOn() async throws {
        let (flight, work, first, second) = await twoCallers()
        first.cancel()
        await #expect(throws: CancellationError.self) { try await first.value }
        #expect(flight.waiters(for: "k") == 1)
        #expect(!work.cancelled.withLock { $0 })
        work.release()
        #expect(try await second.value == 42)
        #expect(work.runs.withLock { $0 } == 1)  // not run again
    }

    @Test func aWaiterWhoseDeadlinePassesLeavesAloneAndTheWorkGoesOn() async throws {
        let flight = SingleFlight<String, Int>()
        let work = GatedWork()
        let patient = Task { try await flight.run("k", deadline: Self.far) { try await work() } }
        await Self.poll { work.started }
        // Its deadline passes while it waits on the shared work (or at once, on a slow run).
        let hurried = Task { try await flight.run("k", deadline: Date().addingTimeInterval(0.05)) { try await work() } }
        await #expect(throws: SingleFlight<String, Int>.DeadlineExceeded.self) { try await hurried.value }
        #expect(flight.isRunning("k"))
        #expect(!work.cancelled.withLock { $0 })
        work.release()
        #expect(try await patient.value == 42)
        #expect(work.runs.withLock { $0 } == 1)
    }

    /// The deadline has passed before the caller even starts: its timer fires at once, and must
    /// find the caller registered (armed before registration, it could fire first, and the caller
    /// would then wait on work that never ends). Alone, it also cancels the work.
    @Test func aDeadlineAlreadyPastLeavesAtOnceAndCancelsWorkNobodyWaitsFor() async throws {
        let flight = SingleFlight<String, Int>()
        let work = GatedWork()
        let late = Task { try await flight.run("k", deadline: .distantPast) { try await work() } }
        await #expect(throws: SingleFlight<String, Int>.DeadlineExceeded.self) { try await late.value }
        await Self.poll { work.cancelled.withLock { $0 } }
        #expect(!flight.isRunning("k"))
    }

    @Test func theLastWaiterToLeaveCancelsTheWork() async throws {
        let (flight, work, first, second) = await twoCallers()
        first.cancel()
        second.cancel()
        await #expect(throws: CancellationError.self) { try await first.value }
        await #expect(throws: CancellationError.self) { try await second.value }
        #expect(work.cancelled.withLock { $0 })
        #expect(!flight.isRunning("k"))
    }
}
