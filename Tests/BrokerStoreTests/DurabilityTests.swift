import FedBrokerCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import FedBrokerTestSupport

@testable import BrokerStore

/// Kills a real `fedbroker-dev audit-load` process and checks what the database kept.
@Suite struct DurabilityTests {
    static let loadTenant = TenantID(rawValue: "load-tenant")!

    /// Starts `fedbroker audit-load` with `arguments`; stderr goes to a file for diagnostics.
    static func launch(_ arguments: [String]) throws -> (Process, FileHandle, URL) {
        let process = Process()
        process.executableURL = try FedBrokerBinary.devURL()
        process.arguments = ["audit-load"] + arguments
        let stdout = Pipe()
        let stderrURL = FileManager.default.temporaryDirectory.appendingPathComponent("audit-load-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        process.standardOutput = stdout
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        try process.run()
        return (process, stdout.fileHandleForReading, stderrURL)
    }

    /// Reads a pipe line by line on a dedicated thread. `stop` ends a read after the chunk holding
    /// the matching line; lines past it and any partial line stay in the reader for the next call.
    final class LineReader: @unchecked Sendable {
        private let handle: FileHandle
        private var buffer = ""
        private var ready: [String] = []

        init(_ handle: FileHandle) { self.handle = handle }

        func read(until stop: @escaping @Sendable (String) -> Bool) async -> [String] {
            await withCheckedContinuation { continuation in
                Thread.detachNewThread {
                    var lines: [String] = []
                    while true {
                        while !self.ready.isEmpty {
                            let line = self.ready.removeFirst()
                            lines.append(line)
                            if stop(line) {
                                continuation.resume(returning: lines)
                                return
                            }
                        }
                        let chunk = self.handle.availableData
                        if chunk.isEmpty { break }
                        self.buffer += String(decoding: chunk, as: UTF8.self)
                        while let newline = self.buffer.firstIndex(of: "\n") {
                            self.ready.append(String(self.buffer[..<newline]))
                            self.buffer.removeSubrange(...newline)
                        }
                    }
                    continuation.resume(returning: lines)
                }
            }
        }
    }

    @Test("SIGKILL mid-stream: every batch in the database is complete and intact, and every acknowledged batch is there",
          arguments: StoreKind.allCases)
    func sigkillMidBatch(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            let batchSize = 250
            let (process, stdout, stderrURL) = try Self.launch(["--database-url", database.url, "--batch-size", "\(batchSize)"])
            let reader = LineReader(stdout)
            let lines = await reader.read { $0 == "committed 5" }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let stderr = (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? ""
            try? FileManager.default.removeItem(at: stderrURL)
            #expect(process.terminationReason == .uncaughtSignal, "the child must die by the signal; stderr: \(stderr)")
            #expect(lines.last == "committed 5", "child output: \(lines), stderr: \(stderr)")
            // Whatever else the child acknowledged before it died is still in the pipe.
            let acknowledgedLines = lines + (await reader.read { _ in false })
            let acknowledged = acknowledgedLines.compactMap { $0.hasPrefix("committed ") ? Int($0.dropFirst(10)) : nil }.max() ?? -1

            let stored = try await store.auditRecords(
                tenant: Self.loadTenant, from: .distantPast, to: .distantFuture, limit: 1_000_000)
            let batches = Dictionary(grouping: stored) { $0.requestID ?? "?" }
            for (requestID, records) in batches {
                let batch = Int(requestID.dropFirst("load-".count)) ?? -1
                #expect(records.count == batchSize, "batch \(requestID) is partial: \(records.count) of \(batchSize)")
                let expected = Set(AuditLoadFixture.batch(batch, size: batchSize).map(\.detail))
                #expect(Set(records.map(\.detail)) == expected, "batch \(requestID) holds damaged or foreign records")
                #expect(records.allSatisfy { $0.keyVersion == "v\(batch)" && $0.clientRequestID?.hasPrefix("crid-\(batch)-") == true })
            }
            let numbers = batches.keys.compactMap { Int($0.dropFirst("load-".count)) }.sorted()
            #expect(numbers == Array(0..<numbers.count), "batches commit in order, none missing")
            #expect(numbers.count >= acknowledged + 1, "an acknowledged batch was lost")
            #expect(numbers.count <= acknowledged + 2, "at most the batch in flight may have committed unacknowledged")
        }
    }

    @Test("SIGTERM: the audit writer flushes everything it accepted before exiting", arguments: StoreKind.allCases)
    func gracefulStopLosesNothing(kind: StoreKind) async throws {
        try await withStore(kind) { store, database in
            let (process, stdout, stderrURL) = try Self.launch(
                ["--database-url", database.url, "--batch-size", "100", "--mode", "writer"])
            let reader = LineReader(stdout)
            let started = await reader.read { $0 == "appended 1000" }
            #expect(started.last == "appended 1000")
            kill(process.processIdentifier, SIGTERM)
            let rest = await reader.read { $0.hasPrefix("flushed ") }
            process.waitUntilExit()
            let stderr = (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? ""
            try? FileManager.default.removeItem(at: stderrURL)
            #expect(process.terminationStatus == 0, "stderr: \(stderr)")
            let summary = try #require(rest.last, "stderr: \(stderr)").split(separator: " ")
            let appended = Int(summary[1]) ?? -1
            let written = Int(summary[3]) ?? -2
            #expect(appended >= 1000)
            #expect(appended == written, "the writer wrote what it accepted")
            let stored = try await store.auditRecords(
                tenant: Self.loadTenant, from: .distantPast, to: .distantFuture, limit: 1_000_000)
            #expect(stored.count == appended, "every accepted record is in the database")
            #expect(Set(stored.map(\.id)).count == stored.count)
        }
    }
}

/// The same records `fedbroker audit-load` writes (the child and the test must agree).
enum AuditLoadFixture {
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
