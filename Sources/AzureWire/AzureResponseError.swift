/// An Azure answer that is not what the service sends. Its text names fields and limits only,
/// never the body's content, so it is safe in any log line or error message.
public struct AzureResponseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable codes, for metrics and for tests to match.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String {
            case notJSON = "not_json"
            case missingField = "missing_field"
            case fieldOutOfBounds = "field_out_of_bounds"
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// Not a JSON object, or larger or deeper than `AzureWireLimits` allow.
        public static let notJSON = Code(.notJSON)
        /// A required field is absent or of the wrong type.
        public static let missingField = Code(.missingField)
        /// A field is present but longer (or its number larger) than `AzureWireLimits` allow.
        public static let fieldOutOfBounds = Code(.fieldOutOfBounds)

        public var description: String { value.rawValue }
    }

    public var code: Code
    /// Which field and why, in fixed text (`no access_token or expires_in`).
    public var detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(code): \(detail)" }
}
