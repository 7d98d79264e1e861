import BrokerServer
import Synchronization
import Testing

@Suite struct SingleFlightTests {
    /// Work that counts its runs and finishes when released.
    final class GatedWork: Sendable {
        let runs = Mutex(0)
        private let gate = Mutex<CheckedContinuation<Void, Never>?>(nil)

        func callAsFunction() async throws -> Int {
            let run = runs.withLock { $0 += 1; return $0 }
            if run == 1 {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in gate.withLock { $0 = continuation } }
                } onCancel: {
                    gate.withLock { $0.take() }?.resume()
                }
                try Task.checkCancellation()
            }
            return 42
        }
        var started: Bool { runs.withLock { $0 } > 0 && gate.withLock { $0 != nil } }
        func release() { gate.withLock { $0.take() }?.resume() }
    }

    /// A first caller running the gated work, and a second one waiting on it.
    func twoCallers() async -> (SingleFlight<String, Int>, GatedWork, Task<Int, any Error>, Task<Int, any Error>) {
        let flight = SingleFlight<String, Int>()
        let work = GatedWork()
        let first = Task { try await flight.run("k") { try await work() } }
        while !work.started { await Task.yield() }
        let second = Task { try await flight.run("k") { try await work() } }
        while flight.waiters(for: "k") == 0 { await Task.yield() }
        return (flight, work, first, second)
    }

    @Test func identicalCallsShareOneRun() async throws {
        let (flight, work, first, second) = await twoCallers()
        work.release()
        #expect(try await first.value == 42)
        #expect(try await second.value == 42)
        #expect(work.runs.withLock { $0 } == 1)
        #expect(flight.waiters(for: "k") == 0)
    }

    @Test func aCancelledFirstCallerDoesNotFailTheOthers() async throws {
        let (_, work, first, second) = await twoCallers()
        first.cancel()
        await #expect(throws: CancellationError.self) { try await first.value }
        #expect(try await second.value == 42)  // it ran the work itself
        #expect(work.runs.withLock { $0 } == 2)
    }
}
