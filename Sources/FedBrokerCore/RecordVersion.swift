/// The optimistic-concurrency version every stored record carries.
///
/// Why: many replicas and admin clients act on the same tenant or slot. An update names the
/// version it read; the store applies it only if the record is still at that version, and bumps
/// it. A lost race surfaces as `BrokerError.Code.versionConflict` instead of a silent overwrite.
public struct RecordVersion: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: Int64

    public init(rawValue: Int64) { self.rawValue = rawValue }

    /// The version of a record that was just created.
    public static let initial = RecordVersion(rawValue: 1)

    /// The version an update produces.
    public var next: RecordVersion { RecordVersion(rawValue: self.rawValue + 1) }

    public var description: String { "v\(self.rawValue)" }

    public static func < (lhs: RecordVersion, rhs: RecordVersion) -> Bool { lhs.rawValue < rhs.rawValue }
}
