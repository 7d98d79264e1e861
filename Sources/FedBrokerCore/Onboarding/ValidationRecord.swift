import Foundation

/// One validation as recorded: its outcome, when, through which slot, and each step.
public struct ValidationRecord: Hashable, Codable, Sendable {
    public struct Step: Hashable, Codable, Sendable {
        public var name: String
        public var ok: Bool
        public var milliseconds: Double
        public var detail: String
        /// The classified cause (`AADSTS700016`, `ForbiddenByRbac`, `BINDING_TAG_MISSING`, …).
        public var code: String?
        /// Who must act: `customer`, `onboarding` or `sre`.
        public var responsible: String?
        public var remediation: String?

        public init(
            name: String, ok: Bool, milliseconds: Double, detail: String, code: String? = nil, responsible: String? = nil,
            remediation: String? = nil
        ) {
            self.name = name
            self.ok = ok
            self.milliseconds = milliseconds
            self.detail = detail
            self.code = code
            self.responsible = responsible
            self.remediation = remediation
        }
    }

    public var succeeded: Bool
    public var time: Date
    public var slotID: FICSlotID?
    public var steps: [Step]

    /// When the probe began, near enough: `time` (its end) less its steps' durations (non-finite
    /// or negative ones count as 0, since the record is read back from the store).
    public var probeStarted: Date {
        let milliseconds = steps.reduce(0.0) { $0 + ($1.milliseconds.isFinite ? min(max($1.milliseconds, 0), 86_400_000) : 0) }
        return time.addingTimeInterval(-milliseconds / 1000)
    }

    public init(succeeded: Bool, time: Date, slotID: FICSlotID?, steps: [Step]) {
        self.succeeded = succeeded
        self.time = time
        self.slotID = slotID
        self.steps = steps
    }

    /// The first failed step's code, for the audit record.
    public var failureCode: String? { self.steps.first { !$0.ok }?.code }
}
