import FedBrokerCore
import NIOCore
import PostgresNIO

/// A `text[]` bind whose elements may be NULL.
///
/// Why our own: postgres-nio encodes `[String]` but has no encoding for `[String?]`, and an audit
/// batch goes to PostgreSQL as one array per column (`unnest`), several of them nullable. This is
/// PostgreSQL's binary array format (`array_recv`): dimensions, a has-NULLs flag, the element
/// type, one dimension's length and lower bound, then each element as a length (-1 for NULL)
/// and its bytes.
struct PostgresNullableTextArray: PostgresEncodable {
    let elements: [String?]

    init(_ elements: [String?]) { self.elements = elements }

    static var psqlType: PostgresDataType { .textArray }
    static var psqlFormat: PostgresFormat { .binary }

    /// Past the wire format's 32-bit lengths. The server refuses a value over 1 GB before that;
    /// an audit batch (records of at most a few KB) comes near neither.
    private static let tooLong = BrokerError(.invalidData, "an array bind is longer than PostgreSQL's wire format allows")

    func encode<JSONEncoder: PostgresJSONEncoder>(
        into buffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>
    ) throws {
        guard let count = Int32(exactly: elements.count) else { throw Self.tooLong }
        buffer.writeInteger(count == 0 ? 0 : 1, as: Int32.self)  // dimensions: none for an empty array
        buffer.writeInteger(elements.contains(nil) ? 1 : 0, as: Int32.self)
        buffer.writeInteger(PostgresDataType.text.rawValue)
        guard count > 0 else { return }
        buffer.writeInteger(count)
        buffer.writeInteger(1, as: Int32.self)  // lower bound
        for element in elements {
            guard let element else {
                buffer.writeInteger(-1, as: Int32.self)
                continue
            }
            guard let length = Int32(exactly: element.utf8.count) else { throw Self.tooLong }
            buffer.writeInteger(length)
            buffer.writeString(element)
        }
    }
}
