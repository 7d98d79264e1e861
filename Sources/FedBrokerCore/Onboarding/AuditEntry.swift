/// An audit record with its position in the trail (the cursor of the next page).
public struct AuditEntry: Hashable, Sendable {
    public var sequence: Int64
    public var record: AuditRecord

    public init(sequence: Int64, record: AuditRecord) {
        self.sequence = sequence
        self.record = record
    }
}
