import Foundation

/// The ISV's own stable identifier for a customer (what internal services name in requests).
///
/// Restricted to `[A-Za-z0-9._-]`, 1–128 characters: it appears in logs, metrics labels and
/// wrapped-key envelopes, so it must never need escaping.
public struct TenantID: RawRepresentable, Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    public let rawValue: String

    /// Fails for empty, over-long or oddly-charactered ids.
    public init?(rawValue: String) {
        guard (1...128).contains(rawValue.utf8.count),
            rawValue.utf8.allSatisfy({ TenantID.allowed($0) })
        else { return nil }
        self.rawValue = rawValue
    }

    /// Throwing variant for user input.
    public init(validating rawValue: String) throws {
        guard let id = TenantID(rawValue: rawValue) else {
            throw BrokerError(.invalidArgument, "tenant id must be 1-128 characters of [A-Za-z0-9._-]")
        }
        self = id
    }

    private static func allowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    public var description: String { self.rawValue }
    public static func < (lhs: TenantID, rhs: TenantID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The customer's Microsoft Entra tenant (directory) id: a GUID, kept in lowercase canonical form
/// so that `ABC…` and `abc…` can never register twice.
public struct EntraTenantID: RawRepresentable, Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init?(rawValue: String) {
        guard let uuid = UUID(uuidString: rawValue) else { return nil }
        self.rawValue = uuid.uuidString.lowercased()
    }

    public init(_ uuid: UUID) { self.rawValue = uuid.uuidString.lowercased() }

    public init(validating rawValue: String) throws {
        guard let id = EntraTenantID(rawValue: rawValue) else {
            throw BrokerError(.invalidArgument, "Entra tenant id must be a GUID")
        }
        self = id
    }

    public var description: String { self.rawValue }
    public static func < (lhs: EntraTenantID, rhs: EntraTenantID) -> Bool { lhs.rawValue < rhs.rawValue }
}
