import FedBrokerCore

/// A bind parameter or column value, in the few types the schema uses.
///
/// Why our own type: the shared store logic (`SQLBrokerStore`) is written once for both databases,
/// and each backend converts these to its driver's binds. Nothing here is public.
enum SQLValue: Hashable, Sendable {
    case text(String)
    case integer(Int64)
    case bool(Bool)
    /// NULL; every nullable column in the schema is TEXT.
    case null
    /// One column of a batch of rows, bound as one array (`text[]`, `bigint[]`) that `unnest`
    /// turns back into rows. PostgreSQL only: SQLite has no arrays, and its backend refuses them.
    case textArray([String?])
    case integerArray([Int64])

    static func text(_ value: String?) -> SQLValue { value.map(SQLValue.text) ?? .null }

    /// One column of rows as one array bind: integers as `integerArray`, text and NULL as
    /// `textArray`. A column that mixes the two (or holds a boolean) is a bug in the caller's
    /// mapping, refused rather than converted.
    static func array(_ column: [SQLValue]) throws -> SQLValue {
        var integers: [Int64] = []
        var texts: [String?] = []
        for value in column {
            switch value {
            case .integer(let integer) where texts.isEmpty: integers.append(integer)
            case .text(let text) where integers.isEmpty: texts.append(text)
            case .null where integers.isEmpty: texts.append(nil)
            default: throw BrokerError(.storeFailure, "a column of an array bind mixes types")
            }
        }
        return integers.isEmpty ? .textArray(texts) : .integerArray(integers)
    }
}

/// One result row, by column name.
struct SQLRow: Sendable {
    let values: [String: SQLValue]

    func text(_ column: String) throws -> String {
        guard case .text(let value) = self.values[column] else { throw Self.typeError(column, "text") }
        return value
    }

    func optionalText(_ column: String) throws -> String? {
        switch self.values[column] {
        case .text(let value): return value
        case .null, .none: return nil
        default: throw Self.typeError(column, "text or NULL")
        }
    }

    func integer(_ column: String) throws -> Int64 {
        guard case .integer(let value) = self.values[column] else { throw Self.typeError(column, "integer") }
        return value
    }

    func optionalInteger(_ column: String) throws -> Int64? {
        switch self.values[column] {
        case .integer(let value): return value
        case .null, .none: return nil
        default: throw Self.typeError(column, "integer or NULL")
        }
    }

    /// PostgreSQL has BOOLEAN; SQLite stores 0/1.
    func bool(_ column: String) throws -> Bool {
        switch self.values[column] {
        case .bool(let value): return value
        case .integer(let value): return value != 0
        default: throw Self.typeError(column, "boolean")
        }
    }

    private static func typeError(_ column: String, _ expected: String) -> ColumnTypeError {
        ColumnTypeError(column: column, expected: expected)
    }
}

/// Thrown when a column doesn't hold what the schema says; mapped to `storeFailure`.
struct ColumnTypeError: Error {
    let column: String
    let expected: String
}
