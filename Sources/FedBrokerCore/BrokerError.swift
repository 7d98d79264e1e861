/// The one public error of fedbroker's domain and store layers.
///
/// Why a struct with a `Code` and not an enum: codes are added as the product grows without
/// breaking callers' `switch`es, equality compares the code only (tests and callers match on
/// *what* went wrong, not on the wording), and the stable `Code.rawValue` is what metrics and the
/// wire use as a label.
///
/// - Important: `message` is written for operators and must never contain secrets, tokens, key
///   material or database passwords. Underlying driver errors are kept in `underlying`, shown only
///   by `String(reflecting:)`.
public struct BrokerError: Error, Hashable, CustomStringConvertible, CustomDebugStringConvertible, Sendable {
    /// What went wrong, as a stable value. See each member for when it is used and whether a
    /// caller may retry.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: String, Hashable, Sendable {
            case illegalTenantTransition = "illegal_tenant_transition"
            case illegalSlotTransition = "illegal_slot_transition"
            case keyLocked = "key_locked"
            case slotLimitReached = "slot_limit_reached"
            case noActiveSlot = "no_active_slot"
            case slotNotEmpty = "slot_not_empty"
            case slotNotAssignable = "slot_not_assignable"
            case invalidArgument = "invalid_argument"
            case notFound = "not_found"
            case uniqueConflict = "unique_conflict"
            case versionConflict = "version_conflict"
            case databaseUnavailable = "database_unavailable"
            case schemaTooNew = "schema_too_new"
            case schemaBehind = "schema_behind"
            case migrationFailed = "migration_failed"
            case storeFailure = "store_failure"
            case transactionConflict = "transaction_conflict"
            case storeTimeout = "store_timeout"
            case invalidData = "invalid_data"
            case idempotencyKeyReused = "idempotency_key_reused"
            case jobInProgress = "job_in_progress"
            case leaseLost = "lease_lost"
        }

        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The stable, snake_case label (metrics, logs, the admin API).
        public var rawValue: String { self.wrapped.rawValue }
        public var description: String { self.wrapped.rawValue }

        /// The event is not allowed in the tenant's current state. Not retryable as is.
        public static let illegalTenantTransition = Code(.illegalTenantTransition)
        /// The event is not allowed in the slot's current state. Not retryable as is.
        public static let illegalSlotTransition = Code(.illegalSlotTransition)
        /// An activated tenant's key may not be swapped for another vault or key name.
        public static let keyLocked = Code(.keyLocked)
        /// The application already has 20 non-retired federated identity credential slots.
        public static let slotLimitReached = Code(.slotLimitReached)
        /// No slot is `active`, so a tenant cannot be placed or a draining slot emptied.
        public static let noActiveSlot = Code(.noActiveSlot)
        /// A slot still serves tenants and so cannot be retired.
        public static let slotNotEmpty = Code(.slotNotEmpty)
        /// A tenant may only be assigned to an `active` slot.
        public static let slotNotAssignable = Code(.slotNotAssignable)
        /// Input failed validation (an empty name, a malformed tenant id, a bad URL).
        public static let invalidArgument = Code(.invalidArgument)
        /// The record does not exist.
        public static let notFound = Code(.notFound)
        /// A record with the same unique key (e.g. the customer's Entra tenant) already exists.
        public static let uniqueConflict = Code(.uniqueConflict)
        /// The record changed since it was read; re-read and retry the decision.
        public static let versionConflict = Code(.versionConflict)
        /// The database cannot be reached. Retryable after a back-off.
        public static let databaseUnavailable = Code(.databaseUnavailable)
        /// The database was migrated by a newer fedbroker; this binary refuses to touch it.
        public static let schemaTooNew = Code(.schemaTooNew)
        /// The database lacks migrations this binary needs and this process may not apply them
        /// (`store.migrateOnStart` false): run `fedbroker migrate` (the deployment's migration job).
        public static let schemaBehind = Code(.schemaBehind)
        /// A migration failed and was rolled back.
        public static let migrationFailed = Code(.migrationFailed)
        /// Any other database failure. See `underlying` through `String(reflecting:)`.
        public static let storeFailure = Code(.storeFailure)
        /// The database aborted the transaction to keep it serializable or to break a deadlock
        /// (PostgreSQL 40001, 40P01) and the store's own bounded retries were used up. Retryable.
        public static let transactionConflict = Code(.transactionConflict)
        /// A statement or lock wait hit its deadline (PostgreSQL 57014 statement_timeout, 55P03
        /// lock_timeout). Retryable after a back-off; the transaction was rolled back.
        public static let storeTimeout = Code(.storeTimeout)
        /// The database rejected a value of the record itself (PostgreSQL class 22 data exception,
        /// e.g. 22021 for a NUL byte in text, or a class 23 integrity violation other than a unique
        /// key; SQLite constraint or type errors). Not retryable as is: the record must change.
        public static let invalidData = Code(.invalidData)
        /// An `Idempotency-Key` was sent again with a different request: the first request's answer
        /// cannot be replayed for it, and a second record must not be created.
        public static let idempotencyKeyReused = Code(.idempotencyKeyReused)
        /// Another slot job is still open: SRE jobs run one at a time, so two never move the same
        /// tenants or race on the 20-credential limit. Wait for it, then retry.
        public static let jobInProgress = Code(.jobInProgress)
        /// This replica no longer holds the job's lease (it expired while the replica was stalled,
        /// and another replica took the job over). The replica must stop working on the job.
        public static let leaseLost = Code(.leaseLost)
    }

    public let code: Code
    /// A short operator-facing explanation, safe to log.
    public let message: String
    /// The driver error behind it, if any. Only `debugDescription` shows it.
    public let underlying: (any Error)?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { "\(self.code.rawValue): \(self.message)" }

    public var debugDescription: String {
        guard let underlying = self.underlying else { return self.description }
        return "\(self.description) (underlying: \(String(reflecting: underlying)))"
    }

    public static func == (lhs: BrokerError, rhs: BrokerError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}
