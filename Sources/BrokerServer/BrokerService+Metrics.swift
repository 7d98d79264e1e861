import BrokerWire
import CoreMetrics
import Foundation

extension BrokerService {
    /// Every framed request: answered by `respond`, then counted by method, status and reason and
    /// timed by method (docs/metrics.md). The labels are the wire's own closed enums, never
    /// anything the caller sent.
    public func handle(_ request: WireRequest, caller: CallerIdentity, deadline: Date) async -> WireResponse {
        let started = ContinuousClock.now
        let response = await respond(request, caller: caller, deadline: deadline)
        let elapsed = ContinuousClock.now - started
        let method = ServiceMetrics.name(of: request.method)
        Counter(
            label: ServiceMetrics.requests,
            dimensions: [
                ("method", method), ("status", ServiceMetrics.name(of: response.status.code)),
                ("reason", ServiceMetrics.name(of: response.status.reason)),
            ]
        ).increment()
        CoreMetrics.Timer(label: ServiceMetrics.duration, dimensions: [("method", method)])
            .recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        return response
    }
}

/// The framed requests' metric names and label values.
enum ServiceMetrics {
    static let requests = "fedbroker_requests_total"
    static let duration = "fedbroker_request_duration_seconds"

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
