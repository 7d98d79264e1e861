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

    public init(succeeded: Bool, time: Date, slotID: FICSlotID?, steps: [Step]) {
        self.succeeded = succeeded
        self.time = time
        self.slotID = slotID
        self.steps = steps
    }

    /// The first failed step's code, for the audit record.
    public var failureCode: String? { self.steps.first { !$0.ok }?.code }
}
