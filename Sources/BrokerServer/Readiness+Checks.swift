import AzureIdentity
import BrokerStore
import FedBrokerCore
import Foundation

/// The readiness checks as pure functions of what the probes saw: no I/O, no clock of their own.
extension Readiness {
    /// Why a probe gave no answer, as a stable code (never an error's text, which may carry a
    /// connection string or a service's message).
    enum ProbeFailure: Error, Equatable, CustomStringConvertible {
        case timedOut(seconds: Double)
        case failed(code: String)

        init(_ error: any Error) {
            switch error {
            case let failure as ProbeFailure: self = failure
            case let error as BrokerError: self = .failed(code: error.code.rawValue)
            case let error as AzureIdentityError: self = .failed(code: error.code)
            default: self = .failed(code: String(describing: type(of: error)))
            }
        }

        var description: String {
            switch self {
            case .timedOut(let seconds): "no answer within \(Self.format(seconds)) s"
            case .failed(let code): code
            }
        }

        static func format(_ seconds: Double) -> String {
            seconds == seconds.rounded() ? String(Int(seconds)) : String(format: "%.1f", seconds)
        }
    }

    /// One active slot's assertion, asked for by the identity check.
    struct AssertionAttempt: Equatable {
        enum Outcome: Equatable {
            case obtained(expiresOn: Date)
            case failed(ProbeFailure)
        }
        var slot: FICSlotID
        var outcome: Outcome
    }

    static func storeCheck(_ result: Result<Duration, ProbeFailure>) -> Check {
        switch result {
        case .success(let elapsed):
            let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            return Check(name: "store", ok: true, detail: "answered in \(Int(milliseconds.rounded())) ms")
        case .failure(let failure):
            return Check(name: "store", ok: false, detail: "the store does not answer: \(failure)")
        }
    }

    static func auditCheck(_ health: AuditWriter.Health, graceSeconds: Double) -> Check {
        if health.closed {
            return Check(name: "audit", ok: false, detail: "the audit writer is closed (shutting down)")
        }
        if health.isFull {
            return Check(
                name: "audit", ok: false,
                detail: "the audit queue is full (\(health.backlog) of \(health.maximumPending) records, \(health.backlogBytes) of \(health.maximumQueueBytes) bytes wait for the store)")
        }
        if let failing = health.failingFor {
            let seconds = Double(failing.components.seconds) + Double(failing.components.attoseconds) / 1e18
            let detail = "audit flushes have failed for \(Int(seconds)) s (\(health.lastFailure ?? "unknown")); \(health.backlog) records wait"
            return Check(name: "audit", ok: seconds <= graceSeconds, detail: detail)
        }
        return Check(name: "audit", ok: true, detail: "\(health.backlog) records waiting")
    }

    /// The active slots to ask for an assertion, the last good one first, at most `limit`.
    static func assertionCandidates(_ slots: [FICSlot], preferring preferred: FICSlotID?, limit: Int) -> [FICSlot] {
        let active = slots.filter { $0.state == .active }
        let ordered = active.filter { $0.id == preferred } + active.filter { $0.id != preferred }
        return Array(ordered.prefix(max(1, limit)))
    }

    /// Passes when some attempt obtained an assertion still valid at `now`.
    static func identityCheck(slots: [FICSlot], attempts: [AssertionAttempt], now: Date) -> Check {
        let active = slots.filter { $0.state == .active }.count
        guard active > 0 else {
            let counts = Dictionary(grouping: slots, by: \.state).map { "\($0.value.count) \($0.key.rawValue)" }.sorted()
            let seen = counts.isEmpty ? "no slots at all" : counts.joined(separator: ", ")
            return Check(name: "identity", ok: false, detail: "no active FIC slot (\(seen)): nothing can be served")
        }
        if let good = attempts.first(where: { if case .obtained(let expiresOn) = $0.outcome { expiresOn > now } else { false } }),
            case .obtained(let expiresOn) = good.outcome
        {
            let minutes = Int(expiresOn.timeIntervalSince(now) / 60)
            return Check(
                name: "identity", ok: true,
                detail: "slot \(good.slot) has an assertion valid for \(minutes) more min (\(active) active slot\(active == 1 ? "" : "s"))")
        }
        let failures = attempts.map { attempt -> String in
            switch attempt.outcome {
            case .obtained: "\(attempt.slot): assertion already expired"
            case .failed(let failure): "\(attempt.slot): \(failure)"
            }
        }
        return Check(
            name: "identity", ok: false,
            detail: "no assertion for any active FIC slot (\(failures.joined(separator: "; ")))")
    }

    /// The canary's last result as a check: fails when it failed, when it has not run yet, or
    /// when it stopped running (its result is older than three intervals).
    static func canaryCheck(_ last: Canary.Result?, configuration: Canary.Configuration, required: Bool, now: Date) -> Check {
        guard let last else {
            return Check(name: "canary", ok: false, required: required, detail: "the canary has not completed a run yet")
        }
        let age = now.timeIntervalSince(last.finishedAt)
        let staleAfter = 3 * configuration.intervalSeconds + configuration.timeoutSeconds
        if age > staleAfter {
            return Check(
                name: "canary", ok: false, required: required,
                detail: "the canary's last result is \(Int(age)) s old (it runs every \(Int(configuration.intervalSeconds)) s): it stopped running")
        }
        return Check(name: "canary", ok: last.ok, required: required, detail: "\(last.detail), \(Int(age)) s ago")
    }
}
