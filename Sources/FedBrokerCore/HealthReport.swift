import Foundation

/// A readiness verdict with the checks behind it: what `/readyz` renders and the framed Health
/// reports. In the domain module so that the service deciding it and the admin API rendering it
/// share one type without depending on each other.
public struct HealthReport: Sendable, Equatable {
    /// One named check's verdict.
    public struct Check: Sendable, Equatable {
        public var name: String
        public var ok: Bool
        /// Whether its failure makes the broker not ready.
        public var required: Bool
        /// What was seen, for the SRE: durations, counts, stable codes; never a secret.
        public var detail: String

        public init(name: String, ok: Bool, required: Bool = true, detail: String) {
            self.name = name
            self.ok = ok
            self.required = required
            self.detail = detail
        }
    }

    public var checks: [Check]
    public var checkedAt: Date

    public init(checks: [Check], checkedAt: Date) {
        self.checks = checks
        self.checkedAt = checkedAt
    }

    /// Every required check passed.
    public var ready: Bool { checks.allSatisfy { $0.ok || !$0.required } }
    /// The checks that failed (required or not).
    public var failing: [Check] { checks.filter { !$0.ok } }
}
