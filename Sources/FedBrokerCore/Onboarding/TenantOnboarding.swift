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
