import FedBrokerCore
import Foundation
import Testing

@testable import BrokerStore

/// The journal's record frame: what is written reads back exactly; what a crash or damage
/// leaves is recognised, never misread.
@Suite struct AuditJournalRecordTests {
    static func record(_ n: Int = 1, detail: String? = "a \\ backslash and\na newline") -> AuditRecord {
        AuditRecord(
            time: Date(timeIntervalSince1970: 1_800_000_000.123456), actor: "spiffe://isv/svc-\(n)", tenantID: TenantID(rawValue: "tenant-\(n)"),
            operation: "key.unwrap", keyVersion: String(repeating: "a", count: 32), outcome: n % 2 == 0 ? .success : .failure(code: "VAULT_THROTTLED"),
            latencyMicroseconds: 1234, requestID: UUID().uuidString, clientRequestID: nil, detail: detail)
    }

    @Test("A record reads back equal, escapes and all (not escaped twice)")
    func roundTrip() throws {
        for original in [Self.record(1), Self.record(2, detail: nil)] {
            var bytes: [UInt8] = []
            AuditJournalRecord.encode(original, into: &bytes)
            let decoded = try bytes.withUnsafeBytes { try AuditJournalRecord.decode($0, at: 0).get() }
            #expect(decoded.0 == original)
            #expect(decoded.next == bytes.count)
        }
    }

    @Test("Records appended one after another into one buffer read back in turn, each frame's header naming its own payload")
    func appendedFrames() throws {
        let records = (1...3).map { Self.record($0) }
        // An odd-length prefix: the frames' headers land unaligned, and the prefix stays as it was.
        let prefix: [UInt8] = [0xAA, 0xBB, 0xCC]
        var bytes = prefix
        var starts: [Int] = []
        for record in records {
            starts.append(bytes.count)
            AuditJournalRecord.encode(record, into: &bytes)
        }
        #expect(Array(bytes.prefix(3)) == prefix)
        var offset = prefix.count
        for (index, record) in records.enumerated() {
            #expect(offset == starts[index])
            let length = bytes.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian) }
            let checksum = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self).littleEndian }
            #expect(checksum == CRC32C.checksum(bytes[(offset + 8)..<(offset + 8 + length)]))
            #expect(bytes[offset + 8] == AuditJournalRecord.version)
            let decoded = try bytes.withUnsafeBytes { try AuditJournalRecord.decode($0, at: offset).get() }
            #expect(decoded.0 == record)
            #expect(decoded.next == offset + 8 + length)
            offset = decoded.next
        }
        #expect(offset == bytes.count)
    }

    @Test("A torn frame is truncated; a flipped byte fails the checksum; an absurd length is refused")
    func damage() {
        var bytes: [UInt8] = []
        AuditJournalRecord.encode(Self.record(), into: &bytes)
        for cut in [3, 8, bytes.count - 1] {
            let torn = Array(bytes.prefix(cut))
            #expect(torn.withUnsafeBytes { AuditJournalRecord.decode($0, at: 0) }.failure == .truncated)
        }
        var flipped = bytes
        flipped[40] ^= 0x01
        #expect(flipped.withUnsafeBytes { AuditJournalRecord.decode($0, at: 0) }.failure == .checksumMismatch)
        var huge = bytes
        huge.replaceSubrange(0..<4, with: [0xFF, 0xFF, 0xFF, 0x7F])
        #expect(huge.withUnsafeBytes { AuditJournalRecord.decode($0, at: 0) }.failure == .oversized(0x7FFF_FFFF))
    }

    @Test("A payload whose checksum matches but whose fields do not parse is malformed, not a record")
    func malformedPayload() {
        let payload: [UInt8] = [1, 0, 0]  // version 1, then too short for the fixed fields
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { bytes += $0 }
        withUnsafeBytes(of: CRC32C.checksum(payload).littleEndian) { bytes += $0 }
        bytes += payload
        guard case .malformed = bytes.withUnsafeBytes({ AuditJournalRecord.decode($0, at: 0) }).failure else {
            Issue.record("expected malformed")
            return
        }
    }

    @Test("CRC-32C matches the standard check value")
    func crcCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
