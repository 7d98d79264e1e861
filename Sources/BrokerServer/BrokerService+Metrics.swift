import BrokerWire
import CoreMetrics
import Foundation
import Synchronization

extension BrokerService {
    /// Every framed request: answered by `respond`, then counted by method, status and reason and
    /// timed by method (docs/metrics.md). The labels are the wire's own closed enums, never
    /// anything the caller sent.
    public func handle(_ request: WireRequest, caller: CallerIdentity, deadline: Date) async -> WireResponse {
        let started = ContinuousClock.now
        let response = await respond(request, caller: caller, deadline: deadline)
        let elapsed = ContinuousClock.now - started
        metricHandles.record(method: request.method, response.status, elapsed: elapsed)
        return response
    }
}

/// The framed requests' metric names and label values.
enum ServiceMetrics {
    static let requests = "fedbroker_requests_total"
    static let duration = "fedbroker_request_duration_seconds"

    /// The metric objects, made once per label set: making one goes through the metrics
    /// factory's lock and a dictionary on every request otherwise. The label sets are the wire's
    /// closed enums, so this holds at most a few hundred entries. One per service (not static),
    /// so the objects come from the factory bootstrapped before the service was made.
    final class Handles: Sendable {
        private struct Labels: Hashable {
            var method: Int
            var code: Int
            var reason: Int
        }
        private let counters = Mutex<[Labels: Counter]>([:])
        private let timers = Mutex<[Int: CoreMetrics.Timer]>([:])

        func record(method: WireRequest.OneOf_Method?, _ status: WireStatus, elapsed: Duration) {
            let methodIndex = ServiceMetrics.index(of: method)
            let labels = Labels(method: methodIndex, code: status.code.rawValue, reason: status.reason.rawValue)
            let counter = counters.withLock { counters in
                if let counter = counters[labels] { return counter }
                let counter = Counter(
                    label: ServiceMetrics.requests,
                    dimensions: [
                        ("method", ServiceMetrics.name(of: method)), ("status", ServiceMetrics.name(of: status.code)),
                        ("reason", ServiceMetrics.name(of: status.reason)),
                    ])
                counters[labels] = counter
                return counter
            }
            counter.increment()
            let timer = timers.withLock { timers in
                if let timer = timers[methodIndex] { return timer }
                let timer = CoreMetrics.Timer(label: ServiceMetrics.duration, dimensions: [("method", ServiceMetrics.name(of: method))])
                timers[methodIndex] = timer
                return timer
            }
            timer.recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        }
    }

    static func index(of method: WireRequest.OneOf_Method?) -> Int {
        switch method {
        case .generateDataKey: 1
        case .wrap: 2
        case .unwrap: 3
        case .rewrap: 4
        case .keyStatus: 5
        case .health: 6
        case nil: 0
        }
    }

    /// The method, as the protocol names it (docs/protocol.md); `none` for a request without one.
    static func name(of method: WireRequest.OneOf_Method?) -> String {
        switch method {
        case .generateDataKey: "GenerateDataKey"
        case .wrap: "Wrap"
        case .unwrap: "Unwrap"
        case .rewrap: "Rewrap"
        case .keyStatus: "KeyStatus"
        case .health: "Health"
        case nil: "none"
        }
    }

    /// The status code as the protocol file spells it (`OK`, `PERMISSION_DENIED`, …).
    static func name(of code: WireStatusCode) -> String {
        switch code {
        case .ok: "OK"
        case .cancelled: "CANCELLED"
        case .unknown: "UNKNOWN"
        case .invalidArgument: "INVALID_ARGUMENT"
        case .deadlineExceeded: "DEADLINE_EXCEEDED"
        case .notFound: "NOT_FOUND"
        case .alreadyExists: "ALREADY_EXISTS"
        case .permissionDenied: "PERMISSION_DENIED"
        case .resourceExhausted: "RESOURCE_EXHAUSTED"
        case .failedPrecondition: "FAILED_PRECONDITION"
        case .aborted: "ABORTED"
        case .outOfRange: "OUT_OF_RANGE"
        case .unimplemented: "UNIMPLEMENTED"
        case .internal: "INTERNAL"
        case .unavailable: "UNAVAILABLE"
        case .dataLoss: "DATA_LOSS"
        case .unauthenticated: "UNAUTHENTICATED"
        case .UNRECOGNIZED: "UNRECOGNIZED"
        }
    }

    /// The broker's reason as the protocol file spells it (`TENANT_UNKNOWN`, …); `REASON_UNSPECIFIED`
    /// for successes and failures without one.
    static func name(of reason: WireReason) -> String {
        switch reason {
        case .unspecified: "REASON_UNSPECIFIED"
        case .tenantUnknown: "TENANT_UNKNOWN"
        case .tenantSuspended: "TENANT_SUSPENDED"
        case .keyDisabled: "KEY_DISABLED"
        case .accessRevokedByCustomer: "ACCESS_REVOKED_BY_CUSTOMER"
        case .vaultThrottled: "VAULT_THROTTLED"
        case .vaultUnavailable: "VAULT_UNAVAILABLE"
        case .blobInvalid: "BLOB_INVALID"
        case .notAuthorized: "NOT_AUTHORIZED"
        case .protocolError: "PROTOCOL_ERROR"
        case .overloaded: "OVERLOADED"
        case .identityUnavailable: "IDENTITY_UNAVAILABLE"
        case .contextMismatch: "CONTEXT_MISMATCH"
        case .shuttingDown: "SHUTTING_DOWN"
        case .auditUnavailable: "AUDIT_UNAVAILABLE"
        case .storeUnavailable: "STORE_UNAVAILABLE"
        case .keyVersionUnavailable: "KEY_VERSION_UNAVAILABLE"
        case .UNRECOGNIZED: "UNRECOGNIZED"
        }
    }
}
