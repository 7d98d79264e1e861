import FedBrokerCore

/// `BrokerApp.run()` stopped, but audit records it had accepted are not in the store: still
/// pending (the store was down to the end) or quarantined (the database rejected them).
///
/// Why its own error: the serving part went well, so nothing else would make the process exit
/// non-zero, yet the audit trail has a hole an SRE must look at (invariant 4). `serve` exits
/// with status 3 for it (docs/operations.md).
public struct AuditIncompleteError: Error, CustomStringConvertible, Sendable {
    /// Records accepted and never written.
    public let unwritten: Int
    /// Records the database rejected (in `quarantineFile`, or lost with the process if none).
    public let quarantined: Int
    public let quarantineFile: String?
    /// The audit writer's error: its code and message say why.
    public let underlying: BrokerError

    public var description: String {
        "audit trail incomplete: \(unwritten) record(s) not written, \(quarantined) quarantined"
            + (quarantineFile.map { " (in \($0))" } ?? "") + ": \(underlying)"
    }
}
