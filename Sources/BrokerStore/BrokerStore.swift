import FedBrokerCore
import Foundation

/// fedbroker's memory: tenants, FIC slots, callers, the audit trail and a change feed.
///
/// Everything above the store talks to this protocol only; no SQL or driver type crosses it.
/// Two implementations exist (`SQLBrokerStore` over PostgreSQL or SQLite) and one conformance
/// suite holds both to the same contract:
///
/// - every mutation is one transaction that also writes its audit record and a change-feed entry;
/// - updates name the `RecordVersion` they read and fail with `versionConflict` if it moved;
/// - at most `FICSlot.maximumNonRetiredPerApplication` non-retired slots exist per application,
///   even with concurrent writers;
/// - a tenant is on at most one slot, and only ever placed on an `active` one.
///
/// Errors are always `BrokerError` (`databaseUnavailable`, `schemaTooNew`, `uniqueConflict`,
/// `versionConflict`, `notFound`, the domain codes, or `storeFailure`).
public protocol BrokerStore: Sendable {
    // MARK: Schema

    /// Applies missing migrations (serialized across replicas) and returns what was done.
    /// Throws `schemaTooNew` when the database was migrated by a newer binary.
    func migrate() async throws -> MigrationReport

    // MARK: Tenants

    /// Registers a customer and places it on the least-loaded active slot, if there is one.
    /// Throws `uniqueConflict` when the tenant id or the customer's Entra tenant is taken.
    func registerTenant(_ registration: TenantRegistration, actor: String) async throws -> Tenant
    /// Throws `notFound`.
    func tenant(_ id: TenantID) async throws -> Tenant
    func tenant(entraTenantID: EntraTenantID) async throws -> Tenant?
    /// All tenants, ordered by id.
    func tenants() async throws -> [Tenant]
    /// Applies a lifecycle event (see `TenantLifecycle`).
    func transitionTenant(
        _ id: TenantID, expectedVersion: RecordVersion, event: TenantEvent, actor: String
    ) async throws -> Tenant
    /// Replaces a tenant's key reference, within the rules of `TenantLifecycle.changeKey(to:)`.
    func changeTenantKey(
        _ id: TenantID, expectedVersion: RecordVersion, to key: KeyReference, actor: String
    ) async throws -> Tenant
    /// Moves a tenant to `slot` (which must be `active`) atomically: the tenant is on the old slot or
    /// on the new one, never on both or neither.
    func assignTenant(
        _ id: TenantID, expectedVersion: RecordVersion, to slot: FICSlotID, actor: String
    ) async throws -> Tenant

    // MARK: Onboarding

    /// Registers a customer for onboarding: the tenant and its binding value in one transaction,
    /// placed on the least-loaded active slot. Unlike `registerTenant(_:actor:)`, a registration
    /// with no active slot fails (`noActiveSlot`): onboarding staff must not get a tenant that
    /// can never validate.
    ///
    /// With `idempotency`, a key already used for the same fingerprint returns that tenant
    /// (`created == false`); for another fingerprint it throws `idempotencyKeyReused`.
    /// - Throws: `uniqueConflict` when the customer's Entra tenant is already registered.
    func registerTenant(
        _ registration: TenantRegistration, bindingValue: String, idempotency: RegistrationIdempotency?, actor: String
    ) async throws -> RegistrationResult
    /// The onboarding record of a tenant registered through `registerTenant(_:bindingValue:…)`;
    /// nil for tenants written before onboarding existed.
    func onboarding(_ id: TenantID) async throws -> TenantOnboarding?
    /// The onboarding records of `ids` that have one, in one read (a page of the tenant list).
    func onboardings(_ ids: [TenantID]) async throws -> [TenantID: TenantOnboarding]
    /// Records a validation on the tenant and, when it succeeded and the tenant is `registered`,
    /// moves it to `validated`, in one transaction with its audit record.
    func recordValidation(
        _ id: TenantID, expectedVersion: RecordVersion, result: ValidationRecord, actor: String
    ) async throws -> Tenant
    /// Restores a `suspended` or `access_lost` tenant (`event`: `.restore` or `.accessRestored`)
    /// and records the validation that passed for it, in one transaction with both audit records:
    /// a failure leaves the tenant as it was, so the caller's retry finds it still to restore.
    func restoreTenant(
        _ id: TenantID, expectedVersion: RecordVersion, event: TenantEvent, validation: ValidationRecord, actor: String
    ) async throws -> Tenant
    /// Applies `event` and keeps `reason` (an operator's suspension reason, or nil to clear it).
    func transitionTenant(
        _ id: TenantID, expectedVersion: RecordVersion, event: TenantEvent, reason: String?, actor: String
    ) async throws -> Tenant
    /// A page of tenants, ordered by id.
    func tenants(matching query: TenantQuery) async throws -> [Tenant]

    // MARK: Access recovery

    /// Decides, for every replica at once, whether a re-probe of `access_lost` tenant `id` is due
    /// now by `schedule` (see `AccessReprobeSchedule.advance`), and records the next due time
    /// before the probe runs, so the replicas asking together get one `probeNow` between them.
    /// Returns `notLost` (and forgets the schedule) for a tenant in any other state.
    func claimAccessProbe(_ id: TenantID, schedule: AccessReprobeSchedule) async throws -> AccessProbeClaim

    // MARK: FIC slots

    /// Creates a slot in `provisioning`. Throws `slotLimitReached` past 20 non-retired per application.
    func createSlot(_ id: FICSlotID, identity: FICSlotIdentity, actor: String) async throws -> FICSlot
    /// Throws `notFound`.
    func slot(_ id: FICSlotID) async throws -> FICSlot
    /// All slots, ordered by id.
    func slots() async throws -> [FICSlot]
    /// Applies a slot event (see `FICSlotState.applying(_:assignedTenants:)`).
    func transitionSlot(
        _ id: FICSlotID, expectedVersion: RecordVersion, event: FICSlotEvent, actor: String
    ) async throws -> FICSlot
    /// Every slot of `applicationID` with its current number of tenants.
    func slotLoads(applicationID: String) async throws -> [PartitionPlanner.SlotLoad]
    /// The tenants currently assigned to `slot`, ordered by id.
    func tenants(onSlot slot: FICSlotID) async throws -> [TenantID]

    // MARK: Slot jobs

    /// Records a new job (at `job.step`, running, with no lease), with its audit record.
    /// - Throws: `jobInProgress` while another job is open: jobs run one at a time.
    func createSlotJob(_ job: SlotJob) async throws -> SlotJob
    /// Throws `notFound`.
    func slotJob(_ id: SlotJobID) async throws -> SlotJob
    /// The newest jobs first, at most `limit`.
    func slotJobs(limit: Int) async throws -> [SlotJob]
    /// Takes the open job's lease for `owner` when it is free, expired, or `owner`'s already, and
    /// returns the job; nil when no job is open or another replica's lease is still live.
    func claimSlotJob(owner: String, leaseSeconds: Double) async throws -> SlotJob?
    /// Extends `owner`'s lease on job `id`; false when the job is finished, or another replica
    /// holds it, or `owner`'s lease has expired (someone may have taken it: stop working).
    func renewSlotJobLease(_ id: SlotJobID, owner: String, leaseSeconds: Double) async throws -> Bool
    /// Saves progress made under the lease and renews the lease, with an audit record when
    /// `audit` is given, in one transaction. A finished job releases its lease and the
    /// one-open-job marker.
    /// - Throws: `leaseLost` when `owner` no longer holds the lease; `versionConflict` when the
    ///   job moved on since `job.version` was read.
    func saveSlotJob(
        _ job: SlotJob, owner: String, leaseSeconds: Double, audit: SlotJobAuditEntry?
    ) async throws -> SlotJob

    // MARK: Replicas

    /// Records that `replica` is alive now and returns how many replicas (itself included) sent
    /// a heartbeat within the last `liveWithin` seconds: what the vault budget is divided by.
    func heartbeat(replica: String, startedAt: Date, liveWithin: Double) async throws -> Int
    /// Forgets a replica that is shutting down, so the others' shares grow at once.
    func removeReplica(_ replica: String) async throws

    // MARK: Callers

    /// Creates a caller at version `.initial`.
    ///
    /// - Throws: `uniqueConflict` when the id or the identity is taken (never overwrites an
    ///   existing caller's grants).
    func createCaller(_ caller: Caller, actor: String) async throws -> Caller

    /// Replaces a caller's identity, grants and enabled flag; `caller.version` is the version the
    /// update was decided on.
    ///
    /// - Throws: `versionConflict` when the stored version differs, `notFound` when there is no
    ///   such caller, `uniqueConflict` when the new identity is taken.
    func updateCaller(_ caller: Caller, actor: String) async throws -> Caller
    /// Throws `notFound`.
    func caller(_ id: String) async throws -> Caller
    func caller(identity: String) async throws -> Caller?
    /// Every caller, ordered by id.
    func callers() async throws -> [Caller]
    /// Removes a caller at `expectedVersion`. Its audit records stay.
    /// - Throws: `notFound`, `versionConflict`.
    func deleteCaller(_ id: String, expectedVersion: RecordVersion, actor: String) async throws

    // MARK: Audit

    /// Appends records in one transaction: all of them or none. Idempotent by record id, so a
    /// batch whose commit acknowledgement was lost can be sent again.
    func appendAudit(_ records: [AuditRecord]) async throws
    /// `appendAudit` for records no caller is waiting on (the journal's shipper): the store's own
    /// work in this process runs at a lowered CPU priority (SQLite), so it yields the cores to
    /// the answers.
    func appendAuditInBackground(_ records: [AuditRecord]) async throws
    /// A tenant's records with `from <= time < to`, oldest first, at most `limit`.
    func auditRecords(tenant: TenantID, from: Date, to: Date, limit: Int) async throws -> [AuditRecord]
    /// A page of the audit trail matching `query`, in sequence order.
    func auditEntries(_ query: AuditQuery) async throws -> [AuditEntry]

    // MARK: Change feed

    /// Changes committed after `sequence`, in commit order, at most `limit`.
    func changes(after sequence: Int64, limit: Int) async throws -> [ChangeEvent]
    /// The latest sequence number (0 for an empty feed): where a fresh follower starts.
    func latestChangeSequence() async throws -> Int64
    /// Follows the feed from `sequence`: woken by LISTEN/NOTIFY where the database has it, and by
    /// polling every `pollInterval` in any case. Ends when the task is cancelled.
    func changeFeed(after sequence: Int64, pollInterval: Duration) -> AsyncThrowingStream<ChangeEvent, any Error>

    // MARK: Lifecycle

    /// Releases connections. The store must not be used afterwards.
    func close() async throws
}

/// One committed change to a tenant, slot or caller. Followers re-read the record (the event
/// carries no data, so it can never be stale or leak anything).
public struct ChangeEvent: Hashable, Sendable {
    public enum Kind: String, Hashable, Sendable {
        case tenant, slot, caller
    }

    public let sequence: Int64
    public let kind: Kind
    public let entityID: String
    public let version: RecordVersion
    public let time: Date

    public init(sequence: Int64, kind: Kind, entityID: String, version: RecordVersion, time: Date) {
        self.sequence = sequence
        self.kind = kind
        self.entityID = entityID
        self.version = version
        self.time = time
    }
}

/// The audit record a job step writes with its progress.
public struct SlotJobAuditEntry: Hashable, Sendable {
    public var operation: String
    public var tenant: TenantID?
    public var detail: String
    public var failed: Bool

    public init(operation: String, tenant: TenantID? = nil, detail: String, failed: Bool = false) {
        self.operation = operation
        self.tenant = tenant
        self.detail = detail
        self.failed = failed
    }
}

/// What `migrate()` did.
public struct MigrationReport: Hashable, Sendable {
    /// The schema version before.
    public let previousVersion: Int
    /// The migrations applied now, as `NNNN_name.sql`, in order (empty: already current).
    public let applied: [String]
    /// The schema version after (the newest this binary knows).
    public let currentVersion: Int
}
