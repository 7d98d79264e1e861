import BrokerClient
import BrokerWire
import Foundation
import Synchronization

/// What the internal service saw: each call's latency by operation, and every failure.
final class DemoStats: Sendable {
    private struct State {
        var nanoseconds: [String: [UInt64]] = [:]
        var failures = 0
        var firstFailures: [String] = []
    }
    private let state = Mutex(State())

    /// `start`: `DispatchTime.now().uptimeNanoseconds` before the call, as the bench takes it.
    func record(_ operation: String, since start: UInt64) {
        let elapsed = DispatchTime.now().uptimeNanoseconds - start
        state.withLock { $0.nanoseconds[operation, default: []].append(elapsed) }
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
            for (operation, values) in theirs.nanoseconds { mine.nanoseconds[operation, default: []].append(contentsOf: values) }
            mine.failures += theirs.failures
            mine.firstFailures += theirs.firstFailures.prefix(max(0, 5 - mine.firstFailures.count))
        }
    }

    var failures: (count: Int, first: [String]) { state.withLock { ($0.failures, $0.firstFailures) } }
    var operations: Int { state.withLock { $0.nanoseconds.values.reduce(0) { $0 + $1.count } } }

    /// Each operation's calls and percentiles, computed as the bench computes them.
    var summary: [(operation: String, latency: LatencySample)] {
        state.withLock { state in
            state.nanoseconds.keys.sorted().map { ($0, LatencySample(nanoseconds: state.nanoseconds[$0] ?? [], seconds: 0, errors: 0)) }
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
        var start = DispatchTime.now().uptimeNanoseconds
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
            start = DispatchTime.now().uptimeNanoseconds
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
