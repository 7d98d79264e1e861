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

    /// Appends the record's frame to `bytes`. Written in place (the header patched once the
    /// payload's length and checksum are known): this runs on every key operation's path, where a
    /// temporary array per field cost more than the rest of the encoding.
    static func encode(_ record: AuditRecord, into bytes: inout [UInt8]) {
        let frameStart = bytes.count
        // Grown geometrically, so frames encoded one after another into one buffer stay linear.
        let needed = headerLength + 64 + record.approximateSize
        if bytes.capacity - frameStart < needed { bytes.reserveCapacity(max(frameStart + needed, 2 * bytes.capacity)) }
        bytes.append(contentsOf: repeatElement(0, count: headerLength))
        bytes.append(version)
        withUnsafeBytes(of: record.id.uuid) { bytes.append(contentsOf: $0) }
        append(Int64((record.time.timeIntervalSince1970 * 1_000_000).rounded()), to: &bytes)
        append(record.latencyMicroseconds, to: &bytes)
        let failure: String?
        switch record.outcome {
        case .success:
            bytes.append(0)
            failure = nil
        case .failure(let code):
            bytes.append(1)
            failure = code
        }
        append(record.actor, to: &bytes)
        append(record.tenantID?.rawValue, to: &bytes)
        append(record.operation, to: &bytes)
        append(record.keyVersion, to: &bytes)
        append(failure, to: &bytes)
        append(record.requestID, to: &bytes)
        append(record.clientRequestID, to: &bytes)
        append(record.detail, to: &bytes)
        let payloadStart = frameStart + headerLength
        let length = UInt32(truncatingIfNeeded: bytes.count - payloadStart)
        let checksum = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[payloadStart...])) }
        bytes.withUnsafeMutableBytes { header in
            header.storeBytes(of: length.littleEndian, toByteOffset: frameStart, as: UInt32.self)
            header.storeBytes(of: checksum.littleEndian, toByteOffset: frameStart + 4, as: UInt32.self)
        }
    }

    /// One text field: `u16 LE length` and UTF-8, or 0xFFFF for an absent text.
    private static func append(_ text: String?, to bytes: inout [UInt8]) {
        guard let text else {
            bytes.append(0xFF)
            bytes.append(0xFF)
            return
        }
        // The record's limits keep every text far below 0xFFFF bytes; cut defensively anyway.
        let utf8 = text.utf8.prefix(0xFFFE)
        let count = utf8.count
        bytes.append(UInt8(truncatingIfNeeded: count))
        bytes.append(UInt8(truncatingIfNeeded: count >> 8))
        bytes.append(contentsOf: utf8)
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
        guard let idBytes = reader.uuid(), let micros = reader.int64(), let latency = reader.int64(), let outcome = reader.byte(),
            outcome <= 1
        else { return .failure(.malformed("fixed fields")) }
        guard let actorText = reader.text(), let tenantText = reader.text(), let operationText = reader.text(),
            let keyVersion = reader.text(), let failure = reader.text(), let requestID = reader.text(),
            let clientRequestID = reader.text(), let detail = reader.text()
        else { return .failure(.malformed("text field")) }
        guard reader.isAtEnd, let actor = actorText, let operation = operationText else { return .failure(.malformed("record")) }
        var tenant: TenantID?
        if let raw = tenantText {
            guard let id = TenantID(rawValue: raw) else { return .failure(.malformed("tenant")) }
            tenant = id
        }
        let outcomeValue: AuditRecord.Outcome = outcome == 0 ? .success : .failure(code: failure ?? "")
        return .success(
            AuditRecord(
                journaled: UUID(uuid: idBytes), time: Date(timeIntervalSince1970: Double(micros) / 1_000_000), actor: actor,
                tenantID: tenant, operation: operation, keyVersion: keyVersion, outcome: outcomeValue,
                latencyMicroseconds: latency, requestID: requestID, clientRequestID: clientRequestID, detail: detail))
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        var isAtEnd: Bool { offset == bytes.count }

        mutating func take(_ count: Int) -> UnsafeRawBufferPointer? {
            guard count >= 0, bytes.count - offset >= count else { return nil }
            defer { offset += count }
            return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
        }

        mutating func byte() -> UInt8? { load(UInt8.self) }

        mutating func uuid() -> uuid_t? { load(uuid_t.self) }

        mutating func int64() -> Int64? { load(Int64.self).map(Int64.init(littleEndian:)) }

        private mutating func load<T: BitwiseCopyable>(_: T.Type) -> T? {
            guard bytes.count - offset >= MemoryLayout<T>.size else { return nil }
            defer { offset += MemoryLayout<T>.size }
            return bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        }

        /// `.some(nil)` for an absent text, nil when the field is malformed.
        mutating func text() -> String?? {
            guard let low = byte(), let high = byte() else { return nil }
            let length = Int(low) | Int(high) << 8
            if length == 0xFFFF { return .some(nil) }
            guard let utf8 = take(length) else { return nil }
            guard let text = utf8.withMemoryRebound(to: UInt8.self, { String(validating: $0, as: UTF8.self) }) else { return nil }
            return .some(text)
        }
    }
}
