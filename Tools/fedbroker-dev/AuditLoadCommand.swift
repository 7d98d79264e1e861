import ArgumentParser
import BrokerStore
import FedBrokerCore
import Foundation
import Logging
import UnixSignals

/// `fedbroker-dev audit-load` (hidden): writes audit batches in a loop, for the durability tests that
/// SIGKILL or SIGTERM it mid-stream. Not an operator tool; `--help` does not list it.
///
/// Each record of batch B carries request id `load-B` and detail `B/I/N`, so a test can check that
/// every batch in the database is complete and intact.
struct AuditLoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit-load",
        abstract: "Test support: write audit batches until killed (direct) or stopped (writer).",
        shouldDisplay: false
    )

    enum Mode: String, ExpressibleByArgument {
        /// One `appendAudit` transaction per batch; prints `committed B` after each commit.
        case direct
        /// Records one by one through `AuditWriter`; on SIGTERM stops, flushes, prints `flushed N`.
        case writer
    }

    @Option(name: .long) var databaseURL: String
    @Option(name: .long) var batchSize: Int = 50
    @Option(name: .long) var mode: Mode = .direct
    @Option(name: .long, help: "Stop after this many batches (0: until killed).") var batches: Int = 0

    func run() async throws {
        let store = try await SQLBrokerStore.open(
            try StoreConfiguration(databaseURL: databaseURL).withPasswordFromEnvironment(), logger: Logger(label: "audit-load"))
        _ = try await store.migrate()
        switch mode {
        case .direct:
            var batch = 0
            while batches == 0 || batch < batches {
                try await store.appendAudit(Self.batch(batch, size: batchSize))
                FileHandle.standardOutput.write(Data("committed \(batch)\n".utf8))
                batch += 1
            }
        case .writer:
            var configuration = AuditWriter.Configuration()
            configuration.batchSize = batchSize
            let writer = AuditWriter(store: store, configuration: configuration, logger: Logger(label: "audit-load"))
            let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
            let batchSize = self.batchSize
            let appended = await withTaskGroup(of: Int?.self) { group in
                group.addTask {
                    var count = 0
                    var batch = 0
                    FileHandle.standardOutput.write(Data("appending\n".utf8))
                    while !Task.isCancelled {
                        for record in Self.batch(batch, size: batchSize) where !Task.isCancelled {
                            do {
                                try await writer.append(record)
                            } catch {
                                FileHandle.standardError.write(Data("append failed: \(String(reflecting: error))\n".utf8))
                                return count
                            }
                            count += 1
                            if count % 500 == 0 { FileHandle.standardOutput.write(Data("appended \(count)\n".utf8)) }
                        }
                        batch += 1
                    }
                    return count
                }
                group.addTask {
                    for await _ in signals { break }
                    return nil
                }
                _ = await group.next()  // the signal
                group.cancelAll()
                var total = 0
                for await result in group { if let result { total = result } }
                return total
            }
            try await writer.shutdown()
            FileHandle.standardOutput.write(Data("flushed \(appended) written \(await writer.writtenRecords)\n".utf8))
        }
        try await store.close()
    }

    static func batch(_ batch: Int, size: Int) -> [AuditRecord] {
        (0..<size).map { index in
            AuditRecord(
                time: Date(timeIntervalSince1970: 1_800_000_000 + Double(batch)), actor: "audit-load",
                tenantID: TenantID(rawValue: "load-tenant"), operation: "wrap", keyVersion: "v\(batch)",
                outcome: index % 7 == 0 ? .failure(code: "vault_throttled") : .success,
                latencyMicroseconds: Int64(index), requestID: "load-\(batch)", clientRequestID: "crid-\(batch)-\(index)",
                detail: "\(batch)/\(index)/\(size)")
        }
    }
}
