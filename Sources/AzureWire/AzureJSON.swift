import FedBrokerCore
import Foundation

/// Reading Azure's JSON within `AzureWireLimits`: the object, and its fields by kind. Every
/// accessor returns nil for a value that is absent, of the wrong type or out of bounds, so the
/// body types decide what is required and never see an unbounded value.
public enum AzureJSON {
    /// The body as a JSON object; nil when it is not one, is over `maximumBody`, or nests deeper
    /// than `maximumNesting`.
    public static func object(_ body: Data) -> [String: Any]? {
        guard body.count <= AzureWireLimits.maximumBody, nestingDepth(of: body) <= AzureWireLimits.maximumNesting else {
            return nil
        }
        return try? JSONSerialization.jsonObject(with: body) as? [String: Any]
    }

    /// A string of at most `limit` UTF-8 bytes, as sent: for identifiers and tokens, which are
    /// compared or forwarded and so must not be altered.
    public static func string(_ value: Any?, limit: Int) -> String? {
        guard let s = value as? String, s.utf8.count <= limit else { return nil }
        return s
    }

    /// Text for people (a service's message or code): bounded to `limit` characters, control
    /// characters escaped, so it can go into an error message or a log line as it is.
    public static func text(_ value: Any?, limit: Int) -> String? {
        (value as? String).map { BoundedText.escaped($0, limit: limit) }
    }

    /// A finite number sent as a JSON number or as a decimal string (IMDS sends strings). A
    /// string is read only when it looks like a decimal number, so `inf`, `nan` and hex floats
    /// are not numbers here.
    public static func number(_ value: Any?) -> Double? {
        let number: Double?
        if let s = value as? String {
            guard s.utf8.count <= 32,
                s.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || "+-.eE".utf8.contains($0) })
            else { return nil }
            number = Double(s)
        } else {
            number = (value as? NSNumber)?.doubleValue
        }
        guard let number, number.isFinite else { return nil }
        return number
    }

    /// A whole number within `range`; nil for fractions, non-numbers and values outside it.
    public static func integer(_ value: Any?, in range: ClosedRange<Int>) -> Int? {
        guard let number = number(value), number >= Double(range.lowerBound), number <= Double(range.upperBound) else {
            return nil
        }
        return Int(exactly: number).flatMap { range.contains($0) ? $0 : nil }
    }

    /// Base64url decoded, at most `AzureWireLimits.maximumBinaryLength` bytes.
    public static func bytes(_ value: Any?) -> [UInt8]? {
        // 4 characters carry 3 bytes: refuse what would decode past the limit before decoding it.
        guard let s = value as? String, s.utf8.count <= (AzureWireLimits.maximumBinaryLength / 3 + 1) * 4 else { return nil }
        return Base64URL.decode(s).flatMap { $0.count <= AzureWireLimits.maximumBinaryLength ? $0 : nil }
    }

    /// The start of a body that is not the JSON expected, for people: at most `limit`
    /// characters, control characters escaped.
    public static func excerpt(_ body: Data, limit: Int) -> String {
        // 4 bytes per character at most: no more than that is decoded.
        BoundedText.escaped(String(decoding: body.prefix(limit * 4), as: UTF8.self), limit: limit)
    }

    /// How deep arrays and objects nest, outside strings. Stops counting once past the limit.
    static func nestingDepth(of body: Data) -> Int {
        var depth = 0
        var deepest = 0
        var inString = false
        var escaped = false
        for byte in body {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                deepest = max(deepest, depth)
                if deepest > AzureWireLimits.maximumNesting { return deepest }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            default: break
            }
        }
        return deepest
    }
}
