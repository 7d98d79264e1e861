import BrokerStore
import FedBrokerCore
import Foundation
import Logging

/// `bench --parts audit-insert`: what one audit record costs the store as the journal's shipper
/// writes it (batches of 500, one multi-row insert each), with the time-ordered ids records carry
/// against random (version 4) ids, alternating batch by batch in the same store, so both see the
/// same table size and the same machine. A store that has to place each id on a random page of
/// its unique index pays for it once the index outgrows the cache; the ratio shows how much.
struct AuditInsert {
    struct Result: Codable {
        var store: String
        var records: Int
        var batchSize: Int
        /// Records per second with time-ordered ids, and with random ids (the baseline).
        var timeOrderedPerSecond: Double
        var randomPerSecond: Double
        /// timeOrdered / random: above 1, time-ordered ids are cheaper to insert.
        var ratio: Double
        /// The last tenth of the run alone (the table at its largest), as ratio.
        var ratioAtEnd: Double
    }

    let records: Int
    let directory: String
    let databaseURL: String?
    let logger: Logger
    let note: (String) -> Void
    static let batchSize = 500

    func run() async throws -> Result {
        let root = URL(fileURLWithPath: directory).appendingPathComponent("fedbroker-audit-insert-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        var scratch: String?
        if let databaseURL { scratch = try await PostgresScratchDatabase.create(on: databaseURL, prefix: "bench_audit") }
        let outcome: Swift.Result<Result, any Error>
        do {
            let configuration = try scratch.map { try StoreConfiguration(databaseURL: $0) } ?? .sqlite(path: root.appendingPathComponent("broker.db").path)
            let store = try await SQLBrokerStore.open(configuration, logger: logger)
            do {
                _ = try await store.migrate()
                outcome = .success(try await measure(store, name: scratch == nil ? "sqlite" : "postgres"))
            } catch {
                outcome = .failure(error)
            }
            try? await store.close()
        } catch {
            outcome = .failure(error)
        }
        if let scratch, let databaseURL { try? await PostgresScratchDatabase.drop(scratch, on: databaseURL) }
        return try outcome.get()
    }

    private func measure(_ store: SQLBrokerStore, name: String) async throws -> Result {
        let batches = max(2, records / Self.batchSize / 2 * 2)
        note("audit insert: \(batches * Self.batchSize) records into \(name), batches of \(Self.batchSize), time-ordered and random ids alternating …")
        var timeOrdered: [Duration] = []
        var random: [Duration] = []
        let clock = ContinuousClock()
        let start = Date()
        for batch in 0..<batches {
            let ordered = batch % 2 == 0
            let records = (0..<Self.batchSize).map { index -> AuditRecord in
                let time = start.addingTimeInterval(Double(batch * Self.batchSize + index) / 10_000)
                return AuditRecord(
                    id: ordered ? .timeOrdered(at: time) : UUID(), time: time, actor: "bench-caller", tenantID: TenantID(rawValue: "customer-\(index % 50)"),
                    operation: "key.unwrap", keyVersion: "0123456789abcdef0123456789abcdef", outcome: .success, latencyMicroseconds: 420,
                    requestID: "bench-\(batch)-\(index)", clientRequestID: nil)
            }
            let elapsed = try await clock.measure { try await store.appendAudit(records) }
            if ordered { timeOrdered.append(elapsed) } else { random.append(elapsed) }
            if batch > 0, batch % 100 == 0 { note("  \(batch * Self.batchSize) records …") }
        }
        func perSecond(_ durations: some Collection<Duration>) -> Double {
            Double(durations.count * Self.batchSize) / (durations.reduce(Duration.zero, +) / .seconds(1))
        }
        let tail = max(1, timeOrdered.count / 10)
        return Result(
            store: name, records: batches * Self.batchSize, batchSize: Self.batchSize, timeOrderedPerSecond: perSecond(timeOrdered),
            randomPerSecond: perSecond(random), ratio: perSecond(timeOrdered) / perSecond(random),
            ratioAtEnd: perSecond(timeOrdered.suffix(tail)) / perSecond(random.suffix(tail)))
    }
}
