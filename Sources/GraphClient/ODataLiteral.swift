import AzureHTTP
import Foundation

/// OData string literals, as `$filter` values and alternate keys take them.
enum ODataLiteral {
    /// `'value'` with every single quote doubled (OData's only escape inside a literal).
    static func quoted(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
    }

    /// An alternate-key literal for a path segment (`name='…'`, `appId='…'`): quotes doubled,
    /// then everything but unreserved characters percent-encoded, so nothing in the value can end
    /// the literal or the segment. The delimiting quotes stay literal, as Graph's examples write them.
    static func pathKey(_ value: String) -> String {
        "'" + AzureHTTP.percentEncoded(value.replacingOccurrences(of: "'", with: "''")) + "'"
    }
}
