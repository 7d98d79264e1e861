import BrokerStore
import FedBrokerCore
import Foundation
import Logging

/// `bench --parts journal-append`: what one durable journal append costs (`audit.journalSync`
/// `batch`: the write and its `fdatasync`) in segments preallocated with zeros, serve's default,
/// against segments that grow as they are written, the baseline. Two journals side by side in
/// the store directory, alternating rounds of appends, so both see the same disk and the same
/// moment; one at a time (what a lone key operation waits for) and 16 at a time (group commit).
/// The cached part cannot show this: its broker-to-echo ratio on a shared VM moves by more than
/// the sync's share of an answer.
struct JournalAppend {
    struct Result: Codable {
        var appends: Int
        /// One at a time: append latency percentiles in µs.
        var preallocatedP50: Double
        var preallocatedP99: Double
        var grownP50: Double
        var grownP99: Double
        /// preallocated p50 / grown p50: below 1, preallocation is cheaper.
        var ratioP50: Double
        /// 16 at a time: appends per second, and preallocated / grown.
        var preallocatedPerSecond: Double
        var grownPerSecond: Double
        var ratioThroughput: Double
    }

    let appends: Int
    let directory: String
    let logger: Logger
    let note: (String) -> Void
    static let round = 250
    static let concurrent = 16

    func run() async throws -> Result {
        let root = URL(fileURLWithPath: directory).appendingPathComponent("fedbroker-journal-append-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let store = try await SQLBrokerStore.open(.sqlite(path: root.appendingPathComponent("broker.db").path), logger: logger)
        let outcome: Swift.Result<Result, any Error>
        do {
            _ = try await store.migrate()
            var grownConfiguration = AuditJournal.Configuration(directory: root.appendingPathComponent("grown").path)
            grownConfiguration.preallocate = false
            let grown = try AuditJournal(store: store, configuration: grownConfiguration, logger: logger)
            let preallocated = try AuditJournal(store: store, configuration: .init(directory: root.appendingPathComponent("preallocated").path), logger: logger)
            do {
                outcome = .success(try await measure(preallocated: preallocated, grown: grown))
            } catch {
                outcome = .failure(error)
            }
            // Shipped at shutdown, after the figures: the store is scratch.
            for journal in [grown, preallocated] { try? await journal.shutdown() }
        } catch {
            outcome = .failure(error)
        }
        try? await store.close()
        return try outcome.get()
    }

    private func measure(preallocated: AuditJournal, grown: AuditJournal) async throws -> Result {
        let rounds = max(1, appends / Self.round)
        note("journal append: \(rounds * Self.round) appends into each journal (preallocated and grown), alternating rounds of \(Self.round), one at a time, then \(Self.concurrent) at a time …")
        let wall = SystemWallClock()
        // Its first spare being zero-filled would slow the preallocated journal's first round.
        await preallocated.spareReady()
        func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
        var serial = [RawSample(), RawSample()]
        var parallelSeconds = [0.0, 0.0]
        for round in 0..<(rounds * 2) {
            let kind = round % 2
            let journal = kind == 0 ? preallocated : grown
            for index in 0..<Self.round {
                let record = Self.record(round: round, index: index)
                let before = now()
                try await journal.appendDurably(record, deadline: .distantFuture, clock: wall)
                serial[kind].nanoseconds.append(now() - before)
            }
        }
        for round in 0..<(rounds * 2) {
            let kind = round % 2
            let journal = kind == 0 ? preallocated : grown
            let before = now()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<Self.concurrent {
                    group.addTask {
                        for index in stride(from: lane, to: Self.round, by: Self.concurrent) {
                            try await journal.appendDurably(Self.record(round: round, index: index), deadline: .distantFuture, clock: wall)
                        }
                    }
                }
                try await group.waitForAll()
            }
            parallelSeconds[kind] += Double(now() - before) / 1e9
        }
        let (one, other) = (serial[0].summary, serial[1].summary)
        let perSecond = parallelSeconds.map { Double(rounds * Self.round) / $0 }
        return Result(
            appends: rounds * Self.round, preallocatedP50: one.p50Microseconds, preallocatedP99: one.p99Microseconds,
            grownP50: other.p50Microseconds, grownP99: other.p99Microseconds, ratioP50: one.p50Microseconds / other.p50Microseconds,
            preallocatedPerSecond: perSecond[0], grownPerSecond: perSecond[1], ratioThroughput: perSecond[0] / perSecond[1])
    }

    /// About the size of a cached Unwrap's record.
    static func record(round: Int, index: Int) -> AuditRecord {
        AuditRecord(
            time: Date(), actor: "bench-caller", tenantID: TenantID(rawValue: "customer-\(index % 50)"), operation: "key.unwrap",
            keyVersion: "0123456789abcdef0123456789abcdef", outcome: .success, latencyMicroseconds: 420, requestID: "bench-\(round)-\(index)",
            clientRequestID: nil)
    }
}
