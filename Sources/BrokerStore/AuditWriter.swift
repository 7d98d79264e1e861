import CoreMetrics
import FedBrokerCore
import Foundation
import Logging
import Synchronization

/// Appends audit records to the store in batches, off the request path.
///
/// Contract (invariant 4): a record handed to `append` is committed, still pending in this writer,
/// or quarantined (counted, logged, appended to the quarantine file, or kept in
/// `quarantinedRecords` when there is no file); it is never dropped silently.
///
/// - A flush that fails for a reason that may pass (the database is down, a timeout, a conflict, a
///   broken schema) puts its batch back at the front, counts the failure (`failedFlushes`) and is
///   retried, by `run()` with an exponential back-off.
/// - A batch the database rejects for its data (`invalidData`, e.g. a constraint) is bisected
///   until the bad records are isolated: the others are written, the bad ones quarantined, so one
///   bad record cannot block the queue. Quarantined records go to a JSON-lines file in
///   `quarantineDirectory` (fsynced, mode 0600), so they survive the process.
/// - Back-pressure: at `maximumPending` pending records, or `maximumQueueBytes` of them, `append`
///   waits for a successful flush, at most `appendTimeout`, then throws `storeTimeout` (the record
///   was not accepted). The byte bound is what keeps a store outage from turning the queue into
///   the process's largest allocation; a cancelled appender stops waiting at once.
/// - `appendDurably` returns only once the batch holding the record has committed (group commit):
///   the server replies to a key operation only after its audit record is stored.
/// - `shutdown()` closes the writer: it waits for appends under way, flushes everything and throws
///   the real error when records remain unwritten or were quarantined. An append after it writes
///   through synchronously (or throws); nothing is accepted and then lost.
///
/// Batches are the unit of atomicity: each batch is one transaction, so a crash leaves every batch
/// wholly committed or wholly absent.
///
/// `appendDurably` is on every key operation's path (and `append` on others'), so their common
/// case does not enter the actor: the record (with its waiter) goes into a locked inbox that the
/// actor drains, in order, before each batch. Only the appender that asks for a flush, or one
/// that finds no room or the writer closed, involves the actor.
public actor AuditWriter {
    public struct Configuration: Sendable {
        /// Records per transaction.
        public var batchSize: Int = 500
        /// How often `run()` flushes a partial batch.
        public var flushInterval: Duration = .seconds(1)
        /// At this many pending records, `append` waits for a flush (back-pressure, not loss).
        public var maximumPending: Int = 100_000
        /// At this many bytes of pending records (`AuditRecord.approximateSize`), `append` waits
        /// too. 64 MiB: about 100,000 records of the usual size, far fewer of the largest.
        public var maximumQueueBytes: Int = 64 << 20
        /// Where records the database rejected are appended, one JSON object a line, to
        /// `audit-quarantine.jsonl`; nil: kept in memory only (`quarantinedRecords`).
        public var quarantineDirectory: String?
        /// How long `append` waits for room before it throws `storeTimeout`.
        public var appendTimeout: Duration = .seconds(10)
        /// The longest pause between retries after failed flushes (the pause doubles from
        /// `flushInterval` up to this).
        public var maximumRetryDelay: Duration = .seconds(30)
        /// Attempts `shutdown()` makes before giving up, and the first pause between them (doubling).
        public var shutdownAttempts: Int = 5
        public var shutdownRetryDelay: Duration = .milliseconds(200)

        public init() {}
    }

    private struct Entry {
        let record: AuditRecord
        /// `record.approximateSize`, computed once: what the entry counts against the byte bound.
        let bytes: Int
        /// Set for `appendDurably`: resumed when the record's batch commits or fails.
        var waiter: CheckedContinuation<Void, any Error>?

        init(record: AuditRecord, waiter: CheckedContinuation<Void, any Error>? = nil) {
            self.record = record
            self.bytes = record.approximateSize
            self.waiter = waiter
        }
    }

    /// Records appended without entering the actor, and what the actor tells appenders about
    /// itself. Whatever lands here before `closed` is set is flushed by `shutdown()`.
    private struct Inbox {
        var records: [Entry] = []
        /// The bytes of `records`.
        var recordBytes = 0
        var closed = false
        /// `pending` + `inFlight`, as of the actor's last change: with `records`, the back-pressure count.
        var backlog = 0
        /// The bytes of `backlog`, as of the actor's last change.
        var backlogBytes = 0
        /// A full batch was reported to the actor and not drained yet: one appender hops in, not all.
        var flushRequested = false
    }

    private nonisolated let inbox = Mutex(Inbox())
    private let store: any BrokerStore
    private nonisolated let configuration: Configuration
    private let logger: Logger
    private var pending: [Entry] = []
    private var pendingBytes = 0
    /// Records of the batch being written (out of `pending` until it commits or goes back).
    private var inFlight = 0
    private var inFlightBytes = 0
    /// Open, flushing, backing off, closing, closed: when to write, when to retry, when to give up.
    private var machine: AuditFlushStateMachine
    private var isFlushing: Bool { self.machine.isFlushing }
    private var flushWaiters: [CheckedContinuation<Void, Never>] = []
    private var isClosed = false
    /// Appends that have not yet put their record in `pending` (or written it through).
    private var appendsUnderWay = 0
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []
    private var roomWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
    private var nextRoomWaiter = 0
    /// When the current run of failed flushes began (nil after a flush that succeeded).
    private var failingSince: ContinuousClock.Instant?
    private var lastError: (any Error)?
    /// Records accepted and not yet committed, and each batch's commit time (docs/metrics.md).
    private nonisolated let queueDepth = Gauge(label: "fedbroker_audit_queue_depth")
    private nonisolated let commitDuration = CoreMetrics.Timer(label: "fedbroker_audit_commit_duration_seconds")
    /// The bytes of those records, against `maximumQueueBytes`.
    private nonisolated let queueBytes = Gauge(label: "fedbroker_audit_queue_bytes")
    /// Appends that found no room within `appendTimeout` and were refused.
    private nonisolated let appendsRefused = Counter(label: "fedbroker_audit_appends_refused_total")
    /// Records the database rejected.
    private nonisolated let quarantinedTotal = Counter(label: "fedbroker_audit_quarantined_total")
    private var firstQuarantineError: (any Error)?
    private nonisolated let quarantineFile: AuditQuarantineFile?

    /// Flushes that failed (each is retried later). Exposed for metrics.
    public private(set) var failedFlushes = 0
    /// Records committed by this writer.
    public private(set) var writtenRecords = 0
    /// Records the database rejected that are held in memory only: every one when no
    /// `quarantineDirectory` is configured, else those the file could not take. Logged as errors.
    public private(set) var quarantinedRecords: [AuditRecord] = []
    /// Every record the database rejected, in the file or in memory.
    public private(set) var quarantinedCount = 0
    /// The file quarantined records are appended to, if any: for the operator to inspect them
    /// and re-insert them once the cause is fixed.
    public nonisolated var quarantineFilePath: String? { self.quarantineFile?.path }
    /// Records accepted but not yet committed.
    public var pendingCount: Int { self.pending.count + self.inbox.withLock { $0.records.count } }
    /// Appends waiting for room (back-pressure). Exposed for metrics and tests.
    public var appendsWaitingForRoom: Int { self.roomWaiters.count }

    /// Whether the writer takes records and gets them committed, as readiness reads it.
    public struct Health: Sendable, Equatable {
        /// `shutdown()` began: appends write through one by one, the writer is going away.
        public var closed: Bool
        /// Records accepted and not yet committed (pending, in flight, in the inbox).
        public var backlog: Int
        /// Where `append` starts to wait for room.
        public var maximumPending: Int
        /// The bytes of `backlog`, and where `append` starts to wait for room by size.
        public var backlogBytes: Int
        public var maximumQueueBytes: Int
        /// How long flushes have been failing; nil when the last one succeeded.
        public var failingFor: Duration?
        /// The last failure's stable code (a `BrokerError` code or a type name), never its text.
        public var lastFailure: String?

        public init(
            closed: Bool, backlog: Int, maximumPending: Int, failingFor: Duration? = nil, lastFailure: String? = nil,
            backlogBytes: Int = 0, maximumQueueBytes: Int = .max
        ) {
            self.closed = closed
            self.backlog = backlog
            self.maximumPending = maximumPending
            self.failingFor = failingFor
            self.lastFailure = lastFailure
            self.backlogBytes = backlogBytes
            self.maximumQueueBytes = maximumQueueBytes
        }

        /// Whether appends now wait for room, by count or by size.
        public var isFull: Bool { self.backlog >= self.maximumPending || self.backlogBytes >= self.maximumQueueBytes }
    }

    public var health: Health {
        let (inboxCount, inboxBytes) = self.inbox.withLock { ($0.records.count, $0.recordBytes) }
        return Health(
            closed: self.isClosed, backlog: self.pending.count + self.inFlight + inboxCount,
            maximumPending: self.configuration.maximumPending, failingFor: self.failingSince.map { ContinuousClock.now - $0 },
            lastFailure: self.failingSince == nil
                ? nil : self.lastError.map { ($0 as? BrokerError)?.code.rawValue ?? String(describing: type(of: $0)) },
            backlogBytes: self.pendingBytes + self.inFlightBytes + inboxBytes,
            maximumQueueBytes: self.configuration.maximumQueueBytes)
    }

    public init(store: any BrokerStore, configuration: Configuration = .init(), logger: Logger) {
        precondition(configuration.batchSize > 0, "batchSize must be positive")
        precondition(configuration.maximumPending > 0, "maximumPending must be positive")
        precondition(configuration.maximumQueueBytes > 0, "maximumQueueBytes must be positive")
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.quarantineFile = configuration.quarantineDirectory.map(AuditQuarantineFile.init(directory:))
        // The pause after the first failure is two intervals, doubling to maximumRetryDelay;
        // shutdown's attempts pause shutdownRetryDelay, doubling likewise.
        let maximumDelay = max(configuration.flushInterval, configuration.maximumRetryDelay)
        self.machine = AuditFlushStateMachine(
            baseDelay: min(configuration.flushInterval * 2, maximumDelay), maximumDelay: maximumDelay,
            closingAttempts: configuration.shutdownAttempts, closingDelay: configuration.shutdownRetryDelay,
            closingMaximumDelay: configuration.maximumRetryDelay)
    }

    /// Queues a record; flushes when a batch is full, and waits when too much is pending.
    ///
    /// - Throws: `storeTimeout` when no room opened within `appendTimeout` (the record was not
    ///   accepted); `CancellationError` when the appender was cancelled while waiting for room;
    ///   after `shutdown()`, the error of the synchronous write.
    public nonisolated func append(_ record: AuditRecord) async throws {
        let queued = enqueue(Entry(record: record), requestFlushAt: configuration.batchSize)
        guard queued.accepted else { return try await appendWaitingForRoom(record, durable: false) }
        if queued.requestFlush { await flushFullBatch() }
    }

    /// Queues a record and returns once the batch holding it has committed (group commit: records
    /// appended while a batch is being written go together in the next one).
    ///
    /// - Throws: the flush's error when its batch could not be written (the record stays pending
    ///   and is retried, so it may still be stored later); `invalidData` when it was quarantined;
    ///   `storeTimeout` as `append`.
    public nonisolated func appendDurably(_ record: AuditRecord) async throws {
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                // The first appender since the last drain asks for a flush. It waits for one under
                // way (which may fail before draining the inbox again), so every waiter is answered.
                let queued = enqueue(Entry(record: record, waiter: continuation), requestFlushAt: 1)
                if !queued.accepted {
                    continuation.resume(throwing: NoRoomInInbox())
                } else if queued.requestFlush {
                    Task { await self.flush() }
                }
            }
        } catch is NoRoomInInbox {
            try await appendWaitingForRoom(record, durable: true)
        }
    }

    /// The inbox was full or the writer closed: `appendDurably` goes the actor's way.
    private struct NoRoomInInbox: Error {}

    /// The common case of both appends, without entering the actor: into the inbox if it is open
    /// and has room. `requestFlush` is true for the one appender that brought the backlog to
    /// `threshold` since the last drain: it sees that a flush happens.
    private nonisolated func enqueue(_ entry: Entry, requestFlushAt threshold: Int) -> (accepted: Bool, requestFlush: Bool) {
        let maximumPending = configuration.maximumPending
        let maximumBytes = configuration.maximumQueueBytes
        return inbox.withLock { inbox in
            guard !inbox.closed, inbox.records.count + inbox.backlog < maximumPending,
                Self.fits(entry.bytes, queued: inbox.recordBytes + inbox.backlogBytes, maximum: maximumBytes)
            else { return (false, false) }
            inbox.records.append(entry)
            inbox.recordBytes += entry.bytes
            guard inbox.records.count + inbox.backlog >= threshold, !inbox.flushRequested else { return (true, false) }
            inbox.flushRequested = true
            return (true, true)
        }
    }

    /// The appender that filled a batch writes it (as before the inbox: a full batch flushes on
    /// its own, without waiting for `run()`'s interval).
    private func flushFullBatch() async {
        drainInbox()
        if self.pending.count >= self.configuration.batchSize, !self.isFlushing {
            await self.flush()
        }
    }

    /// No room in the inbox, or the writer closed: waits in the actor for room, or writes the
    /// record through once the writer is closed. `durable`: returns once its batch committed.
    private func appendWaitingForRoom(_ record: AuditRecord, durable: Bool) async throws {
        drainInbox()
        if self.isClosed { return try await self.writeThrough(record) }
        self.appendsUnderWay += 1
        do {
            try await self.waitForRoom(for: record.approximateSize)
        } catch {
            self.appendDone()
            throw error
        }
        if self.isClosed {
            self.appendDone()
            return try await self.writeThrough(record)
        }
        drainInbox()
        guard durable else {
            self.enqueuePending(Entry(record: record))
            publishBacklog()
            self.appendDone()
            if self.pending.count >= self.configuration.batchSize, !self.isFlushing {
                await self.flush()
            }
            return
        }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            self.enqueuePending(Entry(record: record, waiter: continuation))
            self.publishBacklog()
            self.appendDone()
            if !self.isFlushing {
                Task { await self.flush() }
            }
        }
    }

    /// Moves the inbox's records to `pending`, after those already there (append order).
    private func drainInbox() {
        let (entries, bytes) = inbox.withLock { inbox -> ([Entry], Int) in
            inbox.flushRequested = false
            defer {
                inbox.records.removeAll(keepingCapacity: true)
                inbox.recordBytes = 0
            }
            return (inbox.records, inbox.recordBytes)
        }
        self.pending.append(contentsOf: entries)
        self.pendingBytes += bytes
        publishBacklog()
    }

    private func enqueuePending(_ entry: Entry) {
        self.pending.append(entry)
        self.pendingBytes += entry.bytes
    }

    private func publishBacklog() {
        let backlog = self.pending.count + self.inFlight
        let backlogBytes = self.pendingBytes + self.inFlightBytes
        inbox.withLock {
            $0.backlog = backlog
            $0.backlogBytes = backlogBytes
        }
        queueDepth.record(backlog)
        queueBytes.record(backlogBytes)
    }

    /// A record fits when the queue stays within its byte bound, or the queue is empty (so that
    /// a bound below one record's size stalls nothing).
    static func fits(_ bytes: Int, queued: Int, maximum: Int) -> Bool {
        queued == 0 || queued + bytes <= maximum
    }

    /// Writes everything pending, batch by batch. Returns `false` if a batch failed; its records
    /// stay pending and the failure is counted. Concurrent callers take turns: one waits for the
    /// flush under way, then flushes what is left.
    @discardableResult
    public func flush() async -> Bool {
        while true {
            switch self.machine.flushRequested() {
            case .ship:
                return await self.flushPending().flushed
            default:
                await withCheckedContinuation { self.flushWaiters.append($0) }
            }
        }
    }

    /// One flush the machine decided on: batches until nothing is pending, or one fails. Tells
    /// the machine how it went and returns what it answered (a follow-up flush when it was woken
    /// meanwhile is made here).
    private func flushPending() async -> (flushed: Bool, next: AuditFlushStateMachine.Action) {
        defer {
            let waiters = self.flushWaiters
            self.flushWaiters = []
            for waiter in waiters { waiter.resume() }
        }
        while true {
            if let error = await self.writePending() {
                self.failedFlushes += 1
                if self.failingSince == nil { self.failingSince = ContinuousClock.now }
                self.lastError = error
                let next = self.machine.failed(now: .now)
                // Durable appenders learn now rather than after the back-off; their records stay.
                for index in self.pending.indices {
                    self.pending[index].waiter?.resume(throwing: error)
                    self.pending[index].waiter = nil
                }
                self.logger.warning(
                    "audit flush failed; records kept for retry",
                    metadata: [
                        "error": "\(String(reflecting: error))", "pending": "\(self.pending.count)",
                        "failedFlushes": "\(self.failedFlushes)",
                    ])
                return (false, next)
            }
            self.failingSince = nil
            let next = self.machine.shipped(more: false)
            guard next == .ship else { return (true, next) }
        }
    }

    /// Writes the pending records batch by batch; the error of the batch that failed (its
    /// unresolved records back at the front), or nil when nothing is left pending.
    private func writePending() async -> (any Error)? {
        while true {
            drainInbox()
            guard !self.pending.isEmpty else { return nil }
            let batch = Array(self.pending.prefix(self.configuration.batchSize))
            let batchBytes = batch.reduce(0) { $0 + $1.bytes }
            self.pending.removeFirst(batch.count)
            self.pendingBytes -= batchBytes
            self.inFlight = batch.count
            self.inFlightBytes = batchBytes
            let (unresolved, error) = await self.write(batch)
            self.inFlight = 0
            self.inFlightBytes = 0
            publishBacklog()
            if let error {
                self.pending.insert(contentsOf: unresolved, at: 0)
                self.pendingBytes += unresolved.reduce(0) { $0 + $1.bytes }
                publishBacklog()
                return error
            }
            self.wakeRoomWaiters()
        }
    }

    /// Flushes every `flushInterval` until the task is cancelled; after failures, not before the
    /// machine's back-off (doubling up to `maximumRetryDelay`). Call `shutdown()` afterwards.
    public func run() async {
        var action = AuditFlushStateMachine.Action.none
        while true {
            let until: ContinuousClock.Instant
            if case .sleep(let instant) = action {
                until = instant
            } else {
                until = .now.advanced(by: self.configuration.flushInterval)
            }
            guard (try? await Task.sleep(until: until)) != nil else { return }
            action = self.machine.wake(now: .now)
            if action == .ship { action = await self.flushPending().next }
        }
    }

    /// Closes the writer and flushes everything, retrying failed batches with a doubling pause,
    /// at most `shutdownAttempts` times.
    ///
    /// - Throws: the last flush error (its code, e.g. `databaseUnavailable`), naming how many
    ///   records remain unwritten, when every attempt failed (they are still in `pendingCount`);
    ///   `invalidData` when records were quarantined (in the quarantine file, or in
    ///   `quarantinedRecords`). Either way the audit trail is incomplete and the process should
    ///   say so by its exit status.
    public func shutdown() async throws {
        self.isClosed = true
        inbox.withLock { $0.closed = true }
        drainInbox()
        self.wakeRoomWaiters()
        while self.appendsUnderWay > 0 {
            await withCheckedContinuation { self.idleWaiters.append($0) }
        }
        var action = self.machine.close()
        loop: while true {
            switch action {
            case .ship:
                action = await self.flushPending().next
            case .sleep(let until):
                try? await Task.sleep(until: until)
                action = self.machine.wake(now: .now)
            case .none:
                // Another caller's batch is out (it decides), or the machine closed meanwhile.
                if self.machine.state == .closed { break loop }
                if self.isFlushing { await withCheckedContinuation { self.flushWaiters.append($0) } }
                action = self.machine.wake(now: .now)
            case .finished, .gaveUp:
                break loop
            }
        }
        if !self.pending.isEmpty {
            let attempts = max(1, self.configuration.shutdownAttempts)
            let code = (self.lastError as? BrokerError)?.code ?? .storeFailure
            let reason =
                (self.lastError as? BrokerError)?.message ?? self.lastError.map { String(describing: type(of: $0)) }
                ?? "unknown error"
            throw BrokerError(
                code, "\(self.pending.count) audit record(s) could not be written after \(attempts) attempts: \(reason)",
                underlying: self.lastError)
        }
        if self.quarantinedCount > 0 {
            let inFile = self.quarantinedCount - self.quarantinedRecords.count
            let whereKept =
                [
                    inFile > 0 ? "\(inFile) in \(self.quarantineFilePath ?? "the quarantine file")" : nil,
                    self.quarantinedRecords.isEmpty ? nil : "\(self.quarantinedRecords.count) in memory only (now lost)",
                ].compactMap { $0 }.joined(separator: ", ")
            throw BrokerError(
                .invalidData,
                "\(self.quarantinedCount) audit record(s) were rejected by the database and quarantined: \(whereKept)",
                underlying: self.firstQuarantineError)
        }
    }

    // MARK: - Internals

    /// Writes `batch`, bisecting it when the database rejects its data. Returns, after a failure
    /// that may pass, the entries not yet resolved (to go back to the front) and the error.
    private func write(_ batch: [Entry]) async -> (unresolved: [Entry], error: (any Error)?) {
        do {
            // Unstructured on purpose: a batch, once started, is written even if the task that
            // happened to trigger the flush (an appender being cancelled at shutdown) is cancelled.
            let store = self.store
            let records = batch.map(\.record)
            let started = ContinuousClock.now
            try await Task { try await store.appendAudit(records) }.value
            commitDuration.recordNanoseconds(Self.nanoseconds(ContinuousClock.now - started))
            self.writtenRecords += batch.count
            for entry in batch { entry.waiter?.resume() }
            return ([], nil)
        } catch let error as BrokerError where error.code == .invalidData {
            guard batch.count > 1 else {
                self.quarantine(batch[0], error)
                return ([], nil)
            }
            let middle = batch.count / 2
            let first = await self.write(Array(batch[..<middle]))
            if first.error != nil { return (first.unresolved + batch[middle...], first.error) }
            return await self.write(Array(batch[middle...]))
        } catch {
            return (batch, error)
        }
    }

    /// Into the quarantine file (a rare event, so the short blocking write and fsync happen here),
    /// or, without a file or when it fails, into memory.
    private func quarantine(_ entry: Entry, _ error: BrokerError) {
        self.quarantinedCount += 1
        self.quarantinedTotal.increment()
        if self.firstQuarantineError == nil { self.firstQuarantineError = error }
        var kept = "memory"
        if let file = self.quarantineFile {
            do {
                try file.append(entry.record, rejection: error, at: Date())
                kept = file.path
            } catch {
                self.logger.critical(
                    "audit quarantine file cannot be written; the rejected record is kept in memory only",
                    metadata: ["fb.auditQuarantineFile": "\(file.path)", "error": "\(String(reflecting: error))"])
                self.quarantinedRecords.append(entry.record)
            }
        } else {
            self.quarantinedRecords.append(entry.record)
        }
        self.logger.error(
            "audit record rejected by the database; quarantined",
            metadata: [
                "record": "\(entry.record.id)", "operation": "\(entry.record.operation)",
                "tenant": "\(entry.record.tenantID?.rawValue ?? "-")", "error": "\(String(reflecting: error))",
                "quarantined": "\(self.quarantinedCount)", "fb.auditQuarantineFile": "\(kept)",
            ])
        entry.waiter?.resume(throwing: error)
    }

    /// After `shutdown()`: one transaction for this record, now.
    private func writeThrough(_ record: AuditRecord) async throws {
        let store = self.store
        try await Task { try await store.appendAudit([record]) }.value
        self.writtenRecords += 1
    }

    /// Waits until fewer than `maximumPending` records are pending and a record of `bytes` fits
    /// within `maximumQueueBytes` (or the writer closed).
    private func waitForRoom(for bytes: Int) async throws {
        let maximum = self.configuration.maximumPending
        let maximumBytes = self.configuration.maximumQueueBytes
        func full() -> (records: Int, bytes: Int)? {
            let (inboxCount, inboxBytes) = self.inbox.withLock { ($0.records.count, $0.recordBytes) }
            let records = self.pending.count + self.inFlight + inboxCount
            let queued = self.pendingBytes + self.inFlightBytes + inboxBytes
            return records >= maximum || !Self.fits(bytes, queued: queued, maximum: maximumBytes) ? (records, queued) : nil
        }
        guard full() != nil else { return }
        let deadline = ContinuousClock.now.advanced(by: self.configuration.appendTimeout)
        while let queue = full(), !self.isClosed {
            try Task.checkCancellation()
            guard ContinuousClock.now < deadline else {
                self.appendsRefused.increment()
                throw BrokerError(
                    .storeTimeout,
                    "the audit queue is full (\(queue.records) records, \(queue.bytes) bytes pending; bounds \(maximum) records, "
                        + "\(maximumBytes) bytes) and no flush made room within the append timeout")
            }
            if !self.isFlushing { Task { await self.flush() } }
            let id = self.nextRoomWaiter
            self.nextRoomWaiter += 1
            // The deadline, not a synchronization sleep: wakes this waiter if no flush does.
            let timer = Task { [weak self] in
                try? await Task.sleep(until: deadline)
                await self?.wakeRoomWaiter(id)
            }
            // A cancelled appender (its request's deadline passed) stops waiting now, not at the
            // append timeout; the wake-up runs on the actor after the waiter is registered.
            await withTaskCancellationHandler {
                await withCheckedContinuation { self.roomWaiters[id] = $0 }
            } onCancel: {
                Task { [weak self] in await self?.wakeRoomWaiter(id) }
            }
            timer.cancel()
        }
    }

    private func wakeRoomWaiter(_ id: Int) {
        self.roomWaiters.removeValue(forKey: id)?.resume()
    }

    private func wakeRoomWaiters() {
        let waiters = self.roomWaiters
        self.roomWaiters = [:]
        for waiter in waiters.values { waiter.resume() }
    }

    private func appendDone() {
        self.appendsUnderWay -= 1
        if self.appendsUnderWay == 0 {
            let waiters = self.idleWaiters
            self.idleWaiters = []
            for waiter in waiters { waiter.resume() }
        }
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }
}
