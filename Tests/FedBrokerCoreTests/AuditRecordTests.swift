import Foundation
import Testing

@testable import FedBrokerCore

@Suite struct AuditRecordTests {
    static let time = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("A 900 KiB tenant string echoed into the detail leaves at most 1 KiB (the detail bound) in the record")
    func hugeDetailBounded() throws {
        let tenant = String(repeating: "T", count: 900 * 1024)
        let record = AuditRecord(
            time: Self.time, actor: "spiffe://x/unknown", tenantID: nil, operation: "key.unwrap",
            outcome: .failure(code: "TENANT_NOT_FOUND"), detail: "unknown tenant '\(tenant)'")
        let detail = try #require(record.detail)
        #expect(detail.utf8.count <= AuditRecord.Limits.detailBytes)
        #expect(detail.utf8.count <= 1024)
        #expect(detail.hasPrefix("unknown tenant 'TTT"))
        #expect(detail.hasSuffix("…"))
    }

    @Test("Every text field is bounded in bytes and escaped")
    func everyFieldBounded() throws {
        let big = String(repeating: "a\r\n", count: 100_000)
        let record = AuditRecord(
            time: Self.time, actor: big, tenantID: nil, operation: big, keyVersion: big, outcome: .failure(code: big),
            requestID: big, clientRequestID: big, detail: big)
        let fields: [(String?, Int)] = [
            (record.actor, AuditRecord.Limits.actorBytes), (record.operation, AuditRecord.Limits.operationBytes),
            (record.keyVersion, AuditRecord.Limits.keyVersionBytes), (record.requestID, AuditRecord.Limits.requestIDBytes),
            (record.clientRequestID, AuditRecord.Limits.requestIDBytes), (record.detail, AuditRecord.Limits.detailBytes),
        ]
        for (value, limit) in fields {
            let text = try #require(value)
            #expect(text.utf8.count <= limit)
            #expect(!text.contains("\n") && !text.contains("\r"))
        }
        guard case .failure(let code) = record.outcome else { Issue.record("outcome changed"); return }
        #expect(code.utf8.count <= AuditRecord.Limits.failureCodeBytes)
        #expect(record.approximateSize < 4096, "the queue counts what is really held")
    }

    @Test("A forged log line in the actor is escaped; ordinary values are kept as they are")
    func escapedAndKept() {
        let record = AuditRecord(
            time: Self.time, actor: "svc\nfedbroker: tenant suspended", tenantID: TenantID(rawValue: "customer-1"),
            operation: "key.wrap", keyVersion: "0123456789abcdef0123456789abcdef", outcome: .success,
            requestID: "7d3c1a52-0000-4000-8000-000000000001", detail: nil)
        #expect(record.actor == "svc\\u{a}fedbroker: tenant suspended")
        #expect(record.operation == "key.wrap")
        #expect(record.keyVersion == "0123456789abcdef0123456789abcdef")
        #expect(record.requestID == "7d3c1a52-0000-4000-8000-000000000001")
        #expect(record.detail == nil)
        #expect(record.outcome == .success)
    }

    @Test("Bounding is idempotent: a record rebuilt from a bounded one (as the store reads it back) is equal")
    func idempotent() {
        let first = AuditRecord(
            time: Self.time, actor: String(repeating: "é\u{1}", count: 1000), tenantID: nil, operation: "op",
            outcome: .failure(code: "x\ty"), detail: String(repeating: "d", count: 5000))
        let again = AuditRecord(
            id: first.id, time: first.time, actor: first.actor, tenantID: first.tenantID, operation: first.operation,
            keyVersion: first.keyVersion, outcome: first.outcome, latencyMicroseconds: first.latencyMicroseconds,
            requestID: first.requestID, clientRequestID: first.clientRequestID, detail: first.detail)
        #expect(again.actor == first.actor)
        #expect(again.detail == first.detail)
        #expect(again.outcome == first.outcome)
    }
}
