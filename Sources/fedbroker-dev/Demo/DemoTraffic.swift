import BrokerClient
import BrokerWire
import Foundation
import Synchronization

/// What the internal service saw: each call's latency by operation, and every failure.
final class DemoStats: Sendable {
    private struct State {
        var latencies: [String: [Double]] = [:]
        var failures = 0
        var firstFailures: [String] = []
    }
    private let state = Mutex(State())

    func record(_ operation: String, since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        state.withLock { $0.latencies[operation, default: []].append(seconds) }
    }

    func fail(_ operation: String, _ error: any Error) {
        state.withLock {
            $0.failures += 1
            if $0.firstFailures.count < 5 { $0.firstFailures.append("\(operation): \(DemoStats.describe(error))") }
        }
    }

    /// Adds another run's latencies and failures to these.
    func absorb(_ other: DemoStats) {
        let theirs = other.state.withLock { $0 }
        state.withLock { mine in
            for (operation, values) in theirs.latencies { mine.latencies[operation, default: []].append(contentsOf: values) }
            mine.failures += theirs.failures
            mine.firstFailures += theirs.firstFailures.prefix(max(0, 5 - mine.firstFailures.count))
        }
    }

    var failures: (count: Int, first: [String]) { state.withLock { ($0.failures, $0.firstFailures) } }
    var operations: Int { state.withLock { $0.latencies.values.reduce(0) { $0 + $1.count } } }

    /// operation → (count, p50, p99) in seconds.
    var summary: [(operation: String, count: Int, p50: Double, p99: Double)] {
        state.withLock { state in
            state.latencies.keys.sorted().map { operation in
                let sorted = (state.latencies[operation] ?? []).sorted()
                func percentile(_ p: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
                return (operation, sorted.count, percentile(0.5), percentile(0.99))
            }
        }
    }

    static func describe(_ error: any Error) -> String {
        if case .status(let status) = error as? BrokerCallError {
            return "\(status.code) \(status.reason) \(status.message.prefix(160))"
        }
        return String(describing: error).prefix(200).description
    }
}

/// An internal service's steady traffic: GenerateDataKey then Unwraps of the new blob, round
/// robin over the tenants, from a few concurrent workers, until stopped.
struct DemoTraffic: Sendable {
    let client: FedBrokerClient
    let tenants: [String]
    let stats: DemoStats

    /// One GenerateDataKey and two Unwraps of its blob; the plaintexts must match.
    func roundTrip(_ tenant: String) async throws {
        var start = ContinuousClock.now
        let generated: (plaintext: [UInt8], blob: [UInt8], keyID: String)
        do {
            generated = try await client.generateDataKey(tenant: tenant, deadline: Date().addingTimeInterval(10))
            stats.record("GenerateDataKey", since: start)
        } catch {
            stats.fail("GenerateDataKey", error)
            throw error
        }
        // Two readers of the same data: the first Unwrap goes to the vault, the second is served
        // from the broker's cache (within cache.maxAgeSeconds).
        for _ in 0..<2 {
            start = ContinuousClock.now
            do {
                let plaintext = try await client.unwrap(generated.blob, deadline: Date().addingTimeInterval(10))
                guard plaintext == generated.plaintext else { throw DemoFailure("Unwrap answered a different key than GenerateDataKey made") }
                stats.record("Unwrap", since: start)
            } catch {
                stats.fail("Unwrap", error)
                throw error
            }
        }
    }

    /// Runs `workers` loops until `stop` is set; failures are counted in `stats`, never thrown.
    func run(workers: Int, stop: DemoStopFlag) async {
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<workers {
                group.addTask {
                    var index = worker
                    while !stop.isSet {
                        try? await roundTrip(tenants[index % tenants.count])
                        index += 1
                    }
                }
            }
        }
    }
}

/// Set once, read by every traffic worker between calls (in-flight calls finish normally).
final class DemoStopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .acquiring) }
    func set() { flag.store(true, ordering: .releasing) }
}
