import FedBrokerCore
import NIOCore
import PostgresNIO
import Testing

@testable import BrokerStore

/// The array binds of PostgreSQL audit batches, without a server: how a column of values becomes
/// one bind, and the bytes of a `text[]` with NULL elements.
@Suite struct SQLArrayBindTests {
    @Test("A column becomes integerArray or textArray (NULL kept); a column that mixes types is refused")
    func columns() async throws {
        #expect(try SQLValue.array([.integer(3), .integer(-1)]) == .integerArray([3, -1]))
        #expect(try SQLValue.array([.text("a"), .null, .text("")]) == .textArray(["a", nil, ""]))
        #expect(try SQLValue.array([.null, .null]) == .textArray([nil, nil]))
        for mixed: [SQLValue] in [[.integer(1), .text("a")], [.text("a"), .integer(1)], [.null, .integer(1)], [.bool(true)]] {
            await expectBrokerError(.storeFailure) { _ = try SQLValue.array(mixed) }
        }
    }

    @Test("text[] with NULL elements is PostgreSQL's binary array: dimensions, has-NULL flag, element type, length, lower bound, elements")
    func nullableTextArrayBytes() throws {
        func bytes(_ elements: [String?]) throws -> [UInt8] {
            var buffer = ByteBuffer()
            try PostgresNullableTextArray(elements).encode(into: &buffer, context: .default)
            return Array(buffer.readableBytesView)
        }
        func int32(_ value: Int32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian, Array.init) }
        #expect(PostgresNullableTextArray.psqlType == .textArray)
        #expect(PostgresNullableTextArray.psqlFormat == .binary)
        #expect(try bytes(["ab", nil, ""]) == int32(1) + int32(1) + int32(25) + int32(3) + int32(1)
            + int32(2) + Array("ab".utf8) + int32(-1) + int32(0))
        #expect(try bytes(["é"]) == int32(1) + int32(0) + int32(25) + int32(1) + int32(1) + int32(2) + [0xC3, 0xA9],
            "no NULL: the flag is 0; the length counts UTF-8 bytes")
        #expect(try bytes([]) == int32(0) + int32(0) + int32(25), "empty: no dimensions")
    }
}
