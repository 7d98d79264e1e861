import FedBrokerCore
import HTTPTypes

/// An RFC 9457 problem the admin API answers with: a stable code (the end of its `type` URI), an
/// HTTP status, and a detail a person can act on.
///
/// Why one type: 404, 409 and 422 must mean the same thing on every route, so every refusal,
/// whether a handler's, the store's or the authentication's, goes through `init(_:)` or one of
/// the named constructors here.
public struct AdminProblem: Error, Hashable, Sendable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    /// Stable, snake_case: `type` is `urn:fedbroker:problem:<code>`.
    public var code: String
    public var title: String
    public var detail: String

    public init(status: HTTPResponse.Status, code: String, title: String, detail: String) {
        self.status = status
        self.code = code
        self.title = title
        self.detail = Self.bounded(detail)
    }

    public var type: String { "urn:fedbroker:problem:\(self.code)" }
    public var description: String { "\(self.status.code) \(self.code): \(self.detail)" }

    /// The store's and the domain's errors, classified once.
    public init(_ error: BrokerError) {
        let (status, title): (HTTPResponse.Status, String) =
            switch error.code {
            case .notFound: (.notFound, "Not found")
            case .invalidArgument, .invalidData: (.unprocessableContent, "Invalid value")
            case .uniqueConflict: (.conflict, "Already exists")
            case .versionConflict: (.preconditionFailed, "Version mismatch")
            case .illegalTenantTransition, .illegalSlotTransition: (.conflict, "Not allowed in this state")
            case .keyLocked: (.conflict, "Key locked")
            case .noActiveSlot: (.conflict, "No active FIC slot")
            case .slotLimitReached, .slotNotEmpty, .slotNotAssignable: (.conflict, "Slot conflict")
            case .idempotencyKeyReused: (.unprocessableContent, "Idempotency-Key reused")
            case .jobInProgress: (.conflict, "Another slot job is running")
            case .databaseUnavailable, .storeTimeout, .transactionConflict: (.serviceUnavailable, "Store unavailable")
            default: (.internalServerError, "Internal error")
            }
        // Internal failures say what happened, not the store's own words.
        let detail = status == .internalServerError ? "the store failed; the request was not applied" : error.message
        self.init(status: status, code: error.code.rawValue, title: title, detail: detail)
    }

    public static let internalError = AdminProblem(
        status: .internalServerError, code: "internal", title: "Internal error", detail: "the request failed")

    public static func badRequest(_ detail: String) -> AdminProblem {
        AdminProblem(status: .badRequest, code: "invalid_request", title: "Malformed request", detail: detail)
    }

    public static func invalid(_ detail: String) -> AdminProblem {
        AdminProblem(status: .unprocessableContent, code: "invalid_argument", title: "Invalid value", detail: detail)
    }

    public static func notFound(_ detail: String) -> AdminProblem {
        AdminProblem(status: .notFound, code: "not_found", title: "Not found", detail: detail)
    }

    public static func conflict(_ code: String, _ detail: String) -> AdminProblem {
        AdminProblem(status: .conflict, code: code, title: "Conflict", detail: detail)
    }

    public static let ifMatchRequired = AdminProblem(
        status: .preconditionRequired, code: "if_match_required", title: "If-Match required",
        detail: "send If-Match with the ETag of the version the change was decided on (GET the record first)")

    public static func unauthenticated(_ detail: String) -> AdminProblem {
        AdminProblem(status: .unauthorized, code: "unauthenticated", title: "Not authenticated", detail: detail)
    }

    public static func forbidden(_ detail: String) -> AdminProblem {
        AdminProblem(status: .forbidden, code: "forbidden", title: "Not authorized", detail: detail)
    }

    public static let bodyTooLarge = AdminProblem(
        status: .contentTooLarge, code: "body_too_large", title: "Body too large",
        detail: "the request body is over the admin API's limit of \(AdminAPIConfiguration.maximumBodyBytes) bytes")

    /// Text from outside (a token claim, a field value) may end up in `detail`: bound it and
    /// drop control characters so it can never forge lines in a log or break a terminal.
    static func bounded(_ text: String) -> String {
        let clean = String(String.UnicodeScalarView(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7f }))
        return clean.count > 1_000 ? String(clean.prefix(1_000)) + "…" : clean
    }
}
