import FedBrokerCore
import Foundation

/// How one audit record is laid out in a journal segment:
///
///     u32 LE payload length | u32 LE CRC-32C of the payload | payload
///
/// and the payload: `u8 version (1)`, the record id (16 bytes), time and latency (i64 LE,
/// microseconds), `u8 outcome` (0 success, 1 failure), then eight texts (actor, tenant,
/// operation, key version, failure code, request id, client request id, detail), each
/// `u16 LE length` and UTF-8, with 0xFFFF for an absent one.
///
/// Binary rather than JSON: a record is encoded on every key operation's path, and this costs a
/// fraction of a JSON encoder's time. A frame that does not check out (short, oversized, bad
/// checksum, bad fields) ends the readable part of a segment: what follows is a write the crash
/// interrupted, never acknowledged to a caller.
enum AuditJournalRecord {
    static let version: UInt8 = 1
    /// No valid payload is near this: eight bounded texts (at most 1,600 bytes) and 42 fixed.
    static let maximumPayload = 8 * 1024
    static let headerLength = 8

    /// Whether `bytes` (a segment's unreadable rest, beginning with a frame) is zeros from inside
    /// that frame's declared length to the end: what a crash of the host leaves of a write it
    /// lost. A length no writer gives is damage, whatever follows it.
    static func endsInZeros(_ bytes: [UInt8]) -> Bool {
        guard let last = bytes.lastIndex(where: { $0 != 0 }) else { return true }
        guard bytes.count >= headerLength else { return false }
        let length = bytes.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian) }
        return length <= maximumPayload && last < headerLength + length
    }

    /// Why a frame could not be read; `truncated` is the ordinary end of a torn write.
    enum ReadFailure: Error, Equatable {
        case truncated
        case oversized(Int)
        case checksumMismatch
        case malformed(String)
    }

    static func encode(_ record: AuditRecord, into bytes: inout [UInt8]) {
        var payload: [UInt8] = []
        payload.reserveCapacity(64 + record.approximateSize)
        payload.append(version)
        withUnsafeBytes(of: record.id.uuid) { payload.append(contentsOf: $0) }
        append(Int64((record.time.timeIntervalSince1970 * 1_000_000).rounded()), to: &payload)
        append(record.latencyMicroseconds, to: &payload)
        let failure: String?
        switch record.outcome {
        case .success:
            payload.append(0)
            failure = nil
        case .failure(let code):
            payload.append(1)
            failure = code
        }
        for text in [
            record.actor, record.tenantID?.rawValue, record.operation, record.keyVersion, failure, record.requestID,
            record.clientRequestID, record.detail,
        ] {
            guard let text else {
                payload += [0xFF, 0xFF]
                continue
            }
            // The record's limits keep every text far below 0xFFFF bytes; cut defensively anyway.
            let utf8 = Array(text.utf8.prefix(0xFFFE))
            payload += [UInt8(utf8.count & 0xFF), UInt8(utf8.count >> 8)]
            payload += utf8
        }
        append(UInt32(payload.count), to: &bytes)
        append(CRC32C.checksum(payload), to: &bytes)
        bytes += payload
    }

    /// The record at `offset` in `bytes` and the offset after it.
    static func decode(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Result<(AuditRecord, next: Int), ReadFailure> {
        guard bytes.count - offset >= headerLength else { return .failure(.truncated) }
        let length = Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
        let checksum = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self).littleEndian
        guard length <= maximumPayload else { return .failure(.oversized(length)) }
        let start = offset + headerLength
        guard bytes.count - start >= length else { return .failure(.truncated) }
        let payload = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)])
        guard CRC32C.checksum(payload) == checksum else { return .failure(.checksumMismatch) }
        return parse(payload).map { ($0, start + length) }
    }

    private static func parse(_ payload: UnsafeRawBufferPointer) -> Result<AuditRecord, ReadFailure> {
        var reader = Reader(bytes: payload)
        guard reader.byte() == version else { return .failure(.malformed("version")) }
        guard let idBytes = reader.take(16), let micros = reader.int64(), let latency = reader.int64(), let outcome = reader.byte(),
            outcome <= 1
        else { return .failure(.malformed("fixed fields")) }
        var texts: [String?] = []
        for _ in 0..<8 {
            guard let text = reader.text() else { return .failure(.malformed("text field")) }
            texts.append(text)
        }
        guard reader.isAtEnd, let actor = texts[0], let operation = texts[2] else { return .failure(.malformed("record")) }
        var tenant: TenantID?
        if let raw = texts[1] {
            guard let id = TenantID(rawValue: raw) else { return .failure(.malformed("tenant")) }
            tenant = id
        }
        let uuid = idBytes.withUnsafeBytes { $0.loadUnaligned(as: uuid_t.self) }
        let outcomeValue: AuditRecord.Outcome = outcome == 0 ? .success : .failure(code: texts[4] ?? "")
        return .success(
            AuditRecord(
                journaled: UUID(uuid: uuid), time: Date(timeIntervalSince1970: Double(micros) / 1_000_000), actor: actor,
                tenantID: tenant, operation: operation, keyVersion: texts[3], outcome: outcomeValue,
                latencyMicroseconds: latency, requestID: texts[5], clientRequestID: texts[6], detail: texts[7]))
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        var isAtEnd: Bool { offset == bytes.count }

        mutating func take(_ count: Int) -> [UInt8]? {
            guard bytes.count - offset >= count else { return nil }
            defer { offset += count }
            return Array(bytes[offset..<(offset + count)])
        }

        mutating func byte() -> UInt8? { take(1)?.first }

        mutating func int64() -> Int64? {
            guard bytes.count - offset >= 8 else { return nil }
            defer { offset += 8 }
            return Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int64.self))
        }

        /// `.some(nil)` for an absent text, nil when the field is malformed.
        mutating func text() -> String?? {
            guard let low = byte(), let high = byte() else { return nil }
            let length = Int(low) | Int(high) << 8
            if length == 0xFFFF { return .some(nil) }
            guard let utf8 = take(length) else { return nil }
            guard let text = String(validating: utf8, as: UTF8.self) else { return nil }
            return .some(text)
        }
    }
}
