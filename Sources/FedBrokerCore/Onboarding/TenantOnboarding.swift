import Foundation

/// What onboarding knows of a tenant beyond what the serving path reads: the binding value issued
/// at registration, the last validation and, for a tenant an operator suspended, why.
///
/// Kept apart from `Tenant` so the hot path's record stays small and every onboarding detail can
/// grow without touching it.
public struct TenantOnboarding: Hashable, Sendable {
    /// The value the customer must set as the key's binding tag. Not a secret: it proves that
    /// whoever controls the key also received this registration's answer.
    public var bindingValue: String
    public var lastValidation: ValidationRecord?
    public var suspensionReason: String?

    public init(bindingValue: String, lastValidation: ValidationRecord? = nil, suspensionReason: String? = nil) {
        self.bindingValue = bindingValue
        self.lastValidation = lastValidation
        self.suspensionReason = suspensionReason
    }

    /// The name of the tag on the customer's key that must carry `bindingValue`.
    public static let bindingTagName = "fedbroker-binding"

    /// A new binding value: `fbb-` and 32 hex digits of randomness (128 bits), short enough for a tag.
    public static func newBindingValue() -> String {
        var generator = SystemRandomNumberGenerator()
        return "fbb-" + (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// Whether activation may follow: the last validation succeeded no longer ago than `freshness`.
    public func allowsActivation(now: Date, freshness: TimeInterval) -> Bool {
        guard let validation = self.lastValidation, validation.succeeded else { return false }
        return now.timeIntervalSince(validation.time) <= freshness
    }
}

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

/// How a registration is made repeatable: the client's `Idempotency-Key` and a fingerprint of
/// what it asked, so a retry returns the first answer and a different request under the same
/// key is refused instead of answered with someone else's tenant.
public struct RegistrationIdempotency: Hashable, Sendable {
    public var key: String
    public var fingerprint: String

    public init(key: String, fingerprint: String) {
        self.key = key
        self.fingerprint = fingerprint
    }
}

/// The result of a registration: the tenant, and whether this call created it (false when an
/// earlier request with the same idempotency key did).
public struct RegistrationResult: Hashable, Sendable {
    public var tenant: Tenant
    public var onboarding: TenantOnboarding
    public var created: Bool

    public init(tenant: Tenant, onboarding: TenantOnboarding, created: Bool) {
        self.tenant = tenant
        self.onboarding = onboarding
        self.created = created
    }
}
