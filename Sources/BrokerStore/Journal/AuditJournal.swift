import CoreMetrics
import FedBrokerCore
import Foundation
import Logging
import NIOPosix
import Synchronization

/// A local write-ahead log of audit records: what makes a key operation's audit record durable
/// before its answer (invariant 4) without the store on the request path.
///
/// - `appendDurably` returns once the record is durable: records are framed and checksummed
///   (`AuditJournalRecord`), written after the last record of the current segment by one I/O
///   thread, and made durable with one `fdatasync` per batch (group commit: whatever arrived
///   while a batch was being synced forms the next one). With `Sync.interval` it returns once the batch is written to the file
///   (in the kernel, so a crash of the process loses nothing) and the file is synced in the
///   background about that long after (by a tick the journal owns until `shutdown()`).
/// - `run()` ships the journal to the store in the background, oldest first, in batches of
///   `batchSize` (one store transaction each; re-sending is idempotent by record id). A segment is
///   deleted once every record in it is committed to the store. The store failing only makes the
///   journal grow; `AuditFlushStateMachine` decides when to try again.
/// - Segments are preallocated (zeros to `segmentBytes`; the next one made ahead by
///   `spareThread`), so a sync commits no file growth; zeros from a record boundary to the end
///   of the file end a segment.
/// - At start, segments left by an earlier process (a crash, or a shutdown that could not reach
///   the store) are shipped first; a torn last record is a write that was never acknowledged.
/// - Bounded on disk by `maximumBytes`: beyond it appends are refused (AUDIT_UNAVAILABLE for key
///   operations), never silently dropped, and readiness reports the journal full.
///
/// The trade-off: between its append and its shipping, a record exists only on this disk. A
/// process crash loses nothing (the next start ships it); losing the disk before the next start
/// loses what was not shipped, usually under a second's worth. A deployment whose disks do not
/// outlive the pod must give the journal a volume that does, or accept that window (docs/operations.md).
public final class AuditJournal: AuditTrail, Sendable {
    public struct Configuration: Sendable {
        /// Where the segments live (made, mode 0700, if missing). One process per directory.
        public var directory: String
        /// A segment is closed and a new one begun past this size; shipped segments are deleted whole.
        public var segmentBytes: Int = 8 << 20
        /// Segments are made at `segmentBytes` (zeros) before records go in, the next one ahead
        /// of need by a thread of its own: a sync then commits no file growth, about half an
        /// appended file's `fdatasync` on ext4. Costs a write of the zeros (the journal volume
        /// writes each segment twice) and one segment of disk ahead. Off: segments grow as written.
        public var preallocate = true
        /// Unshipped journal beyond which appends are refused (the store has been away long).
        public var maximumBytes: Int = 1 << 30
        /// Records per store transaction when shipping.
        public var batchSize: Int = 500
        /// How long the shipper lets records gather after it is woken, so the store gets a few
        /// large transactions a second rather than one per group commit (each store commit is a
        /// sync of its own). The store lags the journal by about this much; nothing waits on it.
        public var shipDelay: Duration = .milliseconds(100)
        /// Unshipped records up to which the shipper's work runs at a lowered CPU priority: reading
        /// its batches back (`readThread`) and the store's part in this process
        /// (`BrokerStore.appendAuditInBackground`: SQLite's inserts), on threads that yield the
        /// cores to the answers. Beyond it (a machine so busy that low-priority shipping falls
        /// behind), with more than two segments unshipped (a previous run's backlog), and at
        /// shutdown, batches go at the answers' priority, so the backlog cannot grow until appends
        /// are refused. About half a second of the highest load measured here.
        public var backgroundBacklog: Int = 20_000
        /// The first pause after a failed shipment; it doubles up to `maximumRetryDelay`.
        public var retryDelay: Duration = .milliseconds(500)
        public var maximumRetryDelay: Duration = .seconds(30)
        /// Failed shipments `shutdown()` tolerates before it leaves the rest to the next start.
        public var shutdownAttempts: Int = 5
        /// Where records the database rejects for their data go (`audit-quarantine.jsonl`).
        public var quarantineDirectory: String?
        /// When an appended record counts as durable (so when its operation may be answered).
        public var sync: Sync = .everyBatch
        /// The data sync of the segment being written (`fdatasync`); a test makes it fail, since
        /// no disk here can be made to fail a sync on demand.
        package var dataSync: @Sendable (Int32) -> Int32 = { fdatasync($0) }

        public init(directory: String) { self.directory = directory }
    }

    /// What an acknowledged record survives, against what the acknowledgement waits for.
    public enum Sync: Sendable, Equatable {
        /// Each batch is `fdatasync`ed before its appends return: a record survives a crash of the
        /// process and of the host (kernel panic, power loss). Every answer waits for one sync of
        /// the journal's volume.
        case everyBatch
        /// Appends return once their batch is written to the file: the kernel holds it, so a crash
        /// (SIGKILL) of the process loses nothing, and the next start ships it. The file is
        /// `fdatasync`ed about this long after the oldest write not yet synced (plus the sync's own
        /// time), so a crash of the host loses about this long's records. For a volume whose sync
        /// is slow (a network disk), the way MySQL's `innodb_flush_log_at_trx_commit=2` is.
        case interval(Duration)
    }

    struct Segment {
        let sequence: UInt64
        /// Bytes known to be on disk: synced by this process, or the file's size for an older one
        /// (a preallocated segment's zeros included).
        var end: Int
        /// No more appends: an older process's segment, or one this process rotated away from.
        var sealed: Bool
    }

    private struct State {
        var queued: [UInt8] = []
        var waiters: [CheckedContinuation<Void, any Error>] = []
        var queuedRecords = 0
        var writing = false
        var closed = false
        /// Set when the current segment could not be repaired after a failed write: appends stop.
        var broken: String?
        var brokenSince: ContinuousClock.Instant?
        /// Unshipped segments, oldest first; the last is the one appended to.
        var segments: [Segment] = []
        var activeDescriptor: Int32 = -1
        /// Whether the active segment was made at its full size (else it grows as written), so
        /// cutting it back after a failed write loses its preallocation.
        var activePreallocated = false
        /// Bytes of `segments` on disk.
        var bytes = 0
        /// Records committed to the journal by this process and not yet shipped.
        var unshippedRecords = 0
        /// The first segment this process wrote: records shipped from earlier ones (a previous
        /// run's) were never counted in `unshippedRecords`, so they are not taken off it.
        var firstOwnSegment: UInt64 = 0
        var writerIdle: [CheckedContinuation<Void, Never>] = []
        var shipperWaiting: CheckedContinuation<Void, Never>?
        var shipperWake = false
        /// An append was refused for room, and no segment has been shipped since.
        var full = false
        /// `Sync.interval`: the active segment holds writes not yet synced, the oldest from `unsyncedSince`.
        var unsynced = false
        var unsyncedSince = ContinuousClock.now
        /// A sync from the tick waits on the I/O thread: no second one is queued behind it.
        var syncQueued = false
        var syncWaiters: [CheckedContinuation<Void, Never>] = []
        /// The next segment, preallocated ahead by `spareThread` under `spareName`.
        var spare: Int32?
        var preparingSpare = false
    }

    public let configuration: Configuration
    private let store: any BrokerStore
    private let logger: Logger
    private let state = Mutex(State())
    private let machine: Mutex<AuditFlushStateMachine>
    /// The shipper's position: segment sequence and byte offset.
    private let cursor = Mutex<(sequence: UInt64, offset: Int)>((0, 0))
    private let thread = NIOThreadPool(numberOfThreads: 1)
    /// Zero-fills the next segment off the I/O thread, so a rotation does not hold appends up.
    private let spareThread = NIOThreadPool(numberOfThreads: 1)
    /// Reads and decodes the shipper's batches while it ships in the background
    /// (`shipsInBackground`), at a lowered CPU priority (`LowPriorityThread`), like the store's
    /// own work for them: on two cores, reading 500 records back took the answers' threads
    /// about as much as lengthened their p99 by a tenth at concurrency 16 and 64.
    private let readThread = NIOThreadPool(numberOfThreads: 1)
    /// The nice value of the thread that read the last batch (tests: which thread it was).
    private let lastReadNice = Atomic<Int32>(-100)
    package var lastBatchReadAtNice: Int32? {
        let nice = lastReadNice.load(ordering: .relaxed)
        return nice == -100 ? nil : nice
    }
    /// The spare's scratch name, this journal's own: a journal dropped without `shutdown()` (a
    /// test's crash) may still be filling its spare when the next one opens the directory.
    private let spareName = "audit-spare-\(UInt32.random(in: .min ... .max)).tmp"
    private let quarantineFile: AuditQuarantineFile?
    private let quarantined = Atomic<Int>(0)
    private let syncCount = Atomic<Int>(0)
    /// `Sync.interval`: the background sync, owned by the journal so it runs until `shutdown()`
    /// (through the listeners' drain, whose answers need it too), not only while `run()` ships.
    private let ticker = Mutex<Task<Void, Never>?>(nil)
    /// The directory's lock, held for the journal's life.
    private let lockDescriptor: Atomic<Int32>

    private let journalBytes = Gauge(label: "fedbroker_audit_journal_bytes")
    private let syncDuration = CoreMetrics.Timer(label: "fedbroker_audit_journal_sync_duration_seconds")
    private let shippedTotal = Counter(label: "fedbroker_audit_journal_shipped_total")
    private let shipFailures = Counter(label: "fedbroker_audit_journal_ship_failures_total")
    private let refusedTotal = Counter(label: "fedbroker_audit_appends_refused_total")
    /// The same family as `AuditWriter`'s: the alert on it must fire whichever path wrote.
    private let quarantinedTotal = Counter(label: "fedbroker_audit_quarantined_total")

    /// Opens the journal: older segments are kept for shipping, and a new segment is begun.
    public init(store: any BrokerStore, configuration: Configuration, logger: Logger) throws {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        self.machine = Mutex(
            AuditFlushStateMachine(
                baseDelay: configuration.retryDelay, maximumDelay: configuration.maximumRetryDelay,
                closingAttempts: configuration.shutdownAttempts))
        self.quarantineFile = configuration.quarantineDirectory.map(AuditQuarantineFile.init(directory:))
        try AuditJournalSegments.prepare(directory: configuration.directory)
        let lock = try AuditJournalSegments.lock(directory: configuration.directory)
        lockDescriptor = Atomic(lock)
        let existing = try AuditJournalSegments.existing(in: configuration.directory)
        let next = (existing.last?.sequence ?? 0) + 1
        let descriptor: Int32
        do {
            // A spare an earlier process was making or had ready: never written to, so never shipped.
            AuditJournalSegments.removeScratch(in: configuration.directory)
            descriptor = try AuditJournalSegments.create(next, in: configuration.directory, preallocated: Self.preallocated(configuration))
        } catch {
            close(lock)
            throw error
        }
        let header = AuditJournalSegments.header.count
        state.withLock {
            $0.segments = existing.map { Segment(sequence: $0.sequence, end: $0.size, sealed: true) } + [Segment(sequence: next, end: header, sealed: false)]
            $0.bytes = existing.reduce(header) { $0 + $1.size }
            $0.activeDescriptor = descriptor
            $0.activePreallocated = configuration.preallocate
            $0.firstOwnSegment = next
        }
        journalBytes.record(existing.reduce(header) { $0 + $1.size })
        let durability: String
        switch configuration.sync {
        case .everyBatch: durability = "each batch fdatasynced before its answers"
        case .interval(let every): durability = "written before the answer, fdatasynced about every \(every) (a host crash loses about that)"
        }
        logger.info("audit journal open", metadata: ["fb.auditJournal": "\(configuration.directory)", "fb.sync": "\(durability)"])
        if !existing.isEmpty {
            logger.notice(
                "audit journal holds segments from an earlier process; shipping them to the store first",
                metadata: ["fb.auditJournal": "\(configuration.directory)", "fb.segments": "\(existing.count)"])
        }
        thread.start()
        spareThread.start()
        readThread.start()
        readThread.submit { _ in _ = LowPriorityThread.lowerCurrentThread() }
        prepareSpare()
        if case .interval(let every) = configuration.sync {
            ticker.withLock {
                $0 = Task { [weak self] in
                    while (try? await Task.sleep(for: every)) != nil {
                        guard let self else { return }
                        self.tick(every: every)
                    }
                }
            }
        }
    }

    // MARK: Appending

    public func appendDurably(_ record: AuditRecord, deadline: Date, clock: any WallClock) async throws {
        var frame: [UInt8] = []
        AuditJournalRecord.encode(record, into: &frame)
        let maximum = configuration.maximumBytes
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let decision = state.withLock { state -> Result<Bool, BrokerError> in
                if state.closed { return .failure(BrokerError(.storeFailure, "the audit journal is closed")) }
                if let broken = state.broken { return .failure(BrokerError(.storeFailure, "the audit journal cannot be written: \(broken)")) }
                guard state.bytes + state.queued.count + frame.count <= maximum else {
                    state.full = true
                    return .failure(
                        BrokerError(.storeTimeout, "the audit journal is full (\(state.bytes) bytes not yet in the store; bound \(maximum))"))
                }
                state.queued += frame
                state.queuedRecords += 1
                state.waiters.append(continuation)
                guard !state.writing else { return .success(false) }
                state.writing = true
                return .success(true)
            }
            switch decision {
            case .failure(let error):
                refusedTotal.increment()
                continuation.resume(throwing: error)
            case .success(true):
                thread.submit { [self] _ in writeQueued() }
            case .success(false):
                break
            }
        }
    }

    /// The I/O thread's loop: one write and one `fdatasync` per batch, until nothing is queued.
    private func writeQueued() {
        while true {
            let taken = state.withLock { state -> (bytes: [UInt8], waiters: [CheckedContinuation<Void, any Error>], records: Int, fd: Int32, end: Int, broken: Bool)? in
                guard !state.queued.isEmpty else {
                    state.writing = false
                    let idle = state.writerIdle
                    state.writerIdle = []
                    for waiter in idle { waiter.resume() }
                    return nil
                }
                defer {
                    state.queued = []
                    state.waiters = []
                    state.queuedRecords = 0
                }
                return (state.queued, state.waiters, state.queuedRecords, state.activeDescriptor, state.segments.last?.end ?? 0, state.broken != nil)
            }
            guard let taken else { return }
            guard !taken.broken else {
                // Queued before the journal broke (a failed repair or sync): not written, refused.
                let refusal = BrokerError(.storeFailure, "the audit journal cannot be written")
                for waiter in taken.waiters { waiter.resume(throwing: refusal) }
                continue
            }
            let path = configuration.directory + "/" + AuditJournalSegments.name(activeSequence)
            let started = ContinuousClock.now
            do {
                try AuditJournalSegments.writeAll(taken.fd, taken.bytes, at: taken.end, path: path)
                if configuration.sync == .everyBatch {
                    guard configuration.dataSync(taken.fd) == 0 else { throw AuditJournalSegments.Failure("cannot sync", path) }
                    syncCount.add(1, ordering: .relaxed)
                    syncDuration.recordNanoseconds(AuditWriter.nanoseconds(ContinuousClock.now - started))
                }
                let (total, syncDue) = state.withLock { state -> (Int, Bool) in
                    state.segments[state.segments.count - 1].end += taken.bytes.count
                    state.bytes += taken.bytes.count
                    state.unshippedRecords += taken.records
                    guard case .interval(let every) = configuration.sync else { return (state.bytes, false) }
                    let now = ContinuousClock.now
                    if !state.unsynced {
                        state.unsynced = true
                        state.unsyncedSince = now
                    }
                    return (state.bytes, now - state.unsyncedSince >= every)
                }
                journalBytes.record(total)
                for waiter in taken.waiters { waiter.resume() }
                wakeShipper()
                // Under steady load this loop may never run dry, so the interval is kept here too,
                // not only by the background tick (whose sync waits for this loop to end).
                if syncDue { syncWritten() }
                if taken.end + taken.bytes.count >= configuration.segmentBytes { rotate() }
            } catch {
                // Nothing of this batch was acknowledged. Cut the segment back to its last synced
                // record so no later record follows a torn one; if even that fails, stop appending.
                let repaired = ftruncate(taken.fd, off_t(taken.end)) == 0 && configuration.dataSync(taken.fd) == 0
                logger.error(
                    "audit journal write failed; the batch's operations are refused",
                    metadata: ["fb.auditJournal": "\(path)", "error": "\(error)", "fb.records": "\(taken.records)", "fb.repaired": "\(repaired)"])
                if !repaired {
                    state.withLock {
                        $0.broken = "\(error)"
                        $0.brokenSince = ContinuousClock.now
                    }
                }
                let refusal = BrokerError(.storeFailure, "the audit journal could not be written")
                for waiter in taken.waiters { waiter.resume(throwing: refusal) }
                // The cut also ended the segment's preallocation, so every later sync in it would
                // commit file growth: seal it, and go on in the next (the spare, when it is ready).
                // A segment that was growing as written already has nothing to lose.
                if repaired, state.withLock({ $0.activePreallocated }) { rotate() }
            }
        }
    }

    private var activeSequence: UInt64 { state.withLock { $0.segments.last?.sequence ?? 0 } }

    /// `Sync.interval`: syncs what was written to the active segment since the last sync. On the
    /// I/O thread, which does every write, so nothing is written between the flag's read and the
    /// sync; or from `shutdown()` once that thread and the tick are done. Once the journal is
    /// closed or broken only the syncs that must run do (`evenWhenClosed`: sealing a segment, the
    /// last one at shutdown), so none from the tick races the descriptor's close or retries a
    /// sync that failed.
    private func syncWritten(evenWhenClosed: Bool = false) {
        let descriptor = state.withLock { state -> Int32? in
            guard state.unsynced, state.activeDescriptor >= 0, evenWhenClosed || (state.broken == nil && !state.closed) else { return nil }
            return state.activeDescriptor
        }
        guard let descriptor else { return resumeSyncWaiters() }
        let started = ContinuousClock.now
        if configuration.dataSync(descriptor) == 0 {
            syncCount.add(1, ordering: .relaxed)
            syncDuration.recordNanoseconds(AuditWriter.nanoseconds(ContinuousClock.now - started))
            state.withLock { $0.unsynced = false }
        } else {
            // Answered records may not survive a crash of the host. Stop answering more on a disk
            // that cannot sync: appends are refused from here on (readiness fails).
            let failure = AuditJournalSegments.Failure("cannot sync", configuration.directory + "/" + AuditJournalSegments.name(activeSequence))
            logger.critical(
                "audit journal cannot be synced; appends are refused, and records already answered may be lost if the host crashes",
                metadata: ["error": "\(failure)"])
            state.withLock {
                $0.broken = "\(failure)"
                $0.brokenSince = ContinuousClock.now
            }
        }
        resumeSyncWaiters()
    }

    private func resumeSyncWaiters() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            defer { state.syncWaiters = [] }
            return state.syncWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once nothing written is waiting for its sync (`Sync.interval`; at once otherwise).
    /// For tests: the background sync is observable without a sleep.
    package func synced() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                guard state.unsynced, state.broken == nil else { return true }
                state.syncWaiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// `Sync.interval`, every interval: writes at least an interval old are synced on the I/O
    /// thread. One queued at a time, so a sync slower than the interval (the disk this mode is
    /// for) does not pile up syncs that then take the journal's thread from the writes.
    private func tick(every interval: Duration) {
        let due = state.withLock { state -> Bool in
            guard state.unsynced, state.broken == nil, !state.syncQueued, ContinuousClock.now - state.unsyncedSince >= interval else { return false }
            state.syncQueued = true
            return true
        }
        guard due else { return }
        thread.submit { [self] in
            state.withLock { $0.syncQueued = false }
            if $0 == .active { syncWritten() }
        }
    }

    /// Returns once the I/O thread has done what was submitted to it so far (tests: a rotation
    /// that follows an append's answer is finished before files are counted).
    package func quiesce() async {
        try? await thread.runIfActive {}
    }

    /// Returns once the spare asked for so far is made (tests).
    package func spareReady() async {
        try? await spareThread.runIfActive {}
    }

    /// Seals the current segment and begins the next (on the I/O thread, between batches).
    private func rotate() {
        let next = activeSequence + 1
        // A sealed segment gets no later sync of its own.
        if case .interval = configuration.sync { syncWritten(evenWhenClosed: true) }
        do {
            let descriptor: Int32
            let preallocated: Bool
            if let spare = state.withLock({ $0.spare.take() }) {
                try AuditJournalSegments.install(spare, from: spareName, as: next, in: configuration.directory)
                descriptor = spare
                preallocated = true
            } else {
                // The spare is not ready (a slow disk, or a burst): this segment grows as written.
                descriptor = try AuditJournalSegments.create(next, in: configuration.directory, preallocated: AuditJournalSegments.header.count)
                preallocated = false
            }
            let old = state.withLock { state -> Int32 in
                let old = state.activeDescriptor
                state.segments[state.segments.count - 1].sealed = true
                state.segments.append(Segment(sequence: next, end: AuditJournalSegments.header.count, sealed: false))
                state.bytes += AuditJournalSegments.header.count
                state.activeDescriptor = descriptor
                state.activePreallocated = preallocated
                return old
            }
            close(old)
        } catch {
            // The current segment stays in use; the next batch tries again.
            logger.warning("audit journal could not begin a new segment", metadata: ["error": "\(error)"])
        }
        prepareSpare()
    }

    private static func preallocated(_ configuration: Configuration) -> Int {
        configuration.preallocate ? configuration.segmentBytes : AuditJournalSegments.header.count
    }

    /// Has `spareThread` make the next segment, unless one is ready or being made. The work holds
    /// the journal weakly, so a journal dropped without `shutdown()` lets its directory go at once.
    private func prepareSpare() {
        guard configuration.preallocate else { return }
        let start = state.withLock { state -> Bool in
            guard state.spare == nil, !state.preparingSpare, !state.closed else { return false }
            state.preparingSpare = true
            return true
        }
        guard start else { return }
        let (directory, name, size, logger) = (configuration.directory, spareName, Self.preallocated(configuration), logger)
        spareThread.submit { [weak self] work in
            var made: Int32?
            if work == .active {
                do {
                    made = try AuditJournalSegments.createScratch(name, in: directory, preallocated: size)
                } catch {
                    logger.warning(
                        "audit journal could not prepare its next segment; that one will grow as it is written, with slower syncs",
                        metadata: ["error": "\(error)"])
                }
            }
            guard let self else {
                if let made { AuditJournalSegments.discard(made, name, in: directory) }
                return
            }
            let unwanted = self.state.withLock { state -> Int32? in
                state.preparingSpare = false
                guard !state.closed else { return made }
                state.spare = made
                return nil
            }
            if let unwanted { AuditJournalSegments.discard(unwanted, name, in: directory) }
        }
    }

    // MARK: Shipping

    /// Ships the journal to the store until the task is cancelled; then call `shutdown()`.
    public func run() async {
        var action = machine.withLock { $0.wake(now: .now) }
        while !Task.isCancelled {
            switch action {
            case .none:
                await waitForRecords()
                guard (try? await Task.sleep(for: configuration.shipDelay)) != nil else { break }
                action = machine.withLock { $0.wake(now: .now) }
            case .ship:
                action = await shipOnce()
            case .sleep(let until):
                guard (try? await Task.sleep(until: until)) != nil else { return }
                action = machine.withLock { $0.wake(now: .now) }
            case .finished, .gaveUp:
                return
            }
        }
        if action == .ship { machine.withLock { $0.notShipped() } }
    }

    private func shipOnce() async -> AuditFlushStateMachine.Action {
        do {
            let more = try await shipBatch()
            return machine.withLock { $0.shipped(more: more) }
        } catch {
            shipFailures.increment()
            let failures = machine.withLock { $0.consecutiveFailures } + 1
            logger.warning(
                "audit records could not be shipped to the store; they stay in the journal",
                metadata: ["error": "\(String(reflecting: error))", "fb.failures": "\(failures)", "fb.journalBytes": "\(state.withLock { $0.bytes })"])
            return machine.withLock { $0.failed(now: .now) }
        }
    }

    private func wakeShipper() {
        let waiting = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiting = state.shipperWaiting.take() else {
                state.shipperWake = true
                return nil
            }
            return waiting
        }
        waiting?.resume()
    }

    private func waitForRecords() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.shipperWake || Task.isCancelled {
                        state.shipperWake = false
                        return true
                    }
                    state.shipperWaiting = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.shipperWaiting.take() }?.resume()
        }
        state.withLock { $0.shipperWake = false }
    }

    /// Reads the next records from the oldest unshipped segment and commits them to the store.
    /// Returns whether more remain.
    private func shipBatch() async throws -> Bool {
        guard let segment = state.withLock({ $0.segments.first }) else { return false }
        let path = configuration.directory + "/" + AuditJournalSegments.name(segment.sequence)
        var position = cursor.withLock { $0.sequence == segment.sequence ? $0.offset : 0 }
        if position == 0 {
            let header = try AuditJournalSegments.read(path, from: 0, maximum: AuditJournalSegments.header.count)
            guard header == AuditJournalSegments.header else {
                return try retire(segment, path: path, damaged: "it does not begin with the journal header")
            }
            position = header.count
        }
        guard position < segment.end else {
            guard segment.sealed else { return false }
            return try retire(segment, path: path, damaged: nil)
        }
        let background = state.withLock { state in
            Self.shipsInBackground(
                closed: state.closed, unshippedRecords: state.unshippedRecords, segments: state.segments.count,
                backlogLimit: configuration.backgroundBacklog)
        }
        let (start, end, batchSize) = (position, segment.end, configuration.batchSize)
        let read = { @Sendable [self] in
            self.lastReadNice.store(LowPriorityThread.currentNice(), ordering: .relaxed)
            return try Self.readBatch(path, from: start, to: end, batchSize: batchSize)
        }
        // Unstructured, like the write below: the thread pool's wait ends at cancellation, and a
        // shipper cancelled at shutdown would count a read it never made as a failed shipment.
        let (window, records, consumed, failure) = background ? try await Task { try await readThread.runIfActive(read) }.value : try read()
        if records.isEmpty {
            // Nothing readable where records should be: where writing stopped in a preallocated
            // segment, the tail of a write a crash cut short (never acknowledged), or damage.
            // Either way nothing after it can be trusted.
            guard segment.sealed else { return false }
            // Zeros to the end of the file: a preallocated segment's unused rest (all zeros), or a
            // record a crash of the host left allocated but unwritten (with `Sync.interval`,
            // records written and not yet synced). Torn, not damaged, when nothing but zeros
            // follows the record that fails to read.
            let zerosToEnd = try AuditJournalRecord.endsInZeros(window) && AuditJournalSegments.zeros(path, from: position + window.count, to: segment.end)
            if zerosToEnd && window.allSatisfy({ $0 == 0 }) { return try retire(segment, path: path, damaged: nil) }
            let tornTail = failure == .truncated || zerosToEnd
            if tornTail {
                logger.notice(
                    "audit journal segment ends in a torn record (a write interrupted by a crash of the process or the host); ignored",
                    metadata: ["fb.auditJournal": "\(path)", "fb.bytes": "\(segment.end - position)"])
            }
            return try retire(segment, path: path, damaged: tornTail ? nil : "unreadable record at byte \(position) (\(failure.map { "\($0)" } ?? "unknown"))")
        }
        try await write(records, background: background)
        shippedTotal.increment(by: records.count)
        cursor.withLock { $0 = (segment.sequence, position + consumed) }
        let more = state.withLock { state -> Bool in
            if segment.sequence >= state.firstOwnSegment {
                state.unshippedRecords = max(0, state.unshippedRecords - records.count)
            }
            return position + consumed < segment.end || state.segments.count > 1
        }
        return more
    }

    /// Removes a segment that is fully shipped, or renames one that is damaged (kept for an
    /// operator, never replayed again). Returns whether more segments remain.
    private func retire(_ segment: Segment, path: String, damaged: String?) throws -> Bool {
        if let damaged {
            logger.critical(
                "audit journal segment is damaged; the rest of it cannot be shipped and is kept aside for inspection",
                metadata: ["fb.auditJournal": "\(path)\(AuditJournalSegments.damagedSuffix)", "fb.reason": "\(damaged)"])
            guard rename(path, path + AuditJournalSegments.damagedSuffix) == 0 else {
                throw AuditJournalSegments.Failure("cannot rename", path)
            }
        } else if unlink(path) != 0, errno != ENOENT {
            throw AuditJournalSegments.Failure("cannot remove", path)
        }
        let (more, total) = state.withLock { state -> (Bool, Int) in
            if state.segments.first?.sequence == segment.sequence {
                state.segments.removeFirst()
                state.bytes -= segment.end
                state.full = false
            }
            return (state.segments.count > 1 || (state.segments.first.map { $0.end > AuditJournalSegments.header.count } ?? false), state.bytes)
        }
        journalBytes.record(total)
        cursor.withLock { $0 = (0, 0) }
        return more
    }

    /// Up to `batchSize` records from `path` at `start` (a window of at most 1 MiB, not past
    /// `end`): the window, the records, the bytes they took, and why reading stopped early.
    private static func readBatch(
        _ path: String, from start: Int, to end: Int, batchSize: Int
    ) throws -> (window: [UInt8], records: [AuditRecord], consumed: Int, failure: AuditJournalRecord.ReadFailure?) {
        let window = try AuditJournalSegments.read(path, from: start, maximum: min(end - start, 1 << 20))
        var records: [AuditRecord] = []
        var consumed = 0
        var failure: AuditJournalRecord.ReadFailure?
        window.withUnsafeBytes { bytes in
            while records.count < batchSize {
                switch AuditJournalRecord.decode(bytes, at: consumed) {
                case .success(let (record, next)):
                    records.append(record)
                    consumed = next
                case .failure(let reason):
                    if consumed < bytes.count { failure = reason }
                    return
                }
            }
        }
        return (window, records, consumed, failure)
    }

    /// One batch into the store; records the database rejects for their data are bisected out
    /// and quarantined, so one bad record cannot hold the journal back. `background`: at a
    /// lowered priority (`shipsInBackground`).
    private func write(_ records: [AuditRecord], background: Bool) async throws {
        do {
            let store = self.store
            // Unstructured: a batch once started is written even if the shipper is being cancelled.
            try await Task {
                if background {
                    try await store.appendAuditInBackground(records)
                } else {
                    try await store.appendAudit(records)
                }
            }.value
        } catch let error as BrokerError where error.code == .invalidData {
            guard records.count > 1 else { return quarantine(records[0], error) }
            try await write(Array(records[..<(records.count / 2)]), background: background)
            try await write(Array(records[(records.count / 2)...]), background: background)
        }
    }

    /// Whether a batch goes to the store at a lowered priority (`Configuration.backgroundBacklog`).
    /// Records a previous run left are not counted in `unshippedRecords` (this process only
    /// knows their bytes), so more segments than the one being shipped and the one being
    /// written count as a backlog too: a previous run's last segment, up to 8 MiB, still ships
    /// in the background.
    static func shipsInBackground(closed: Bool, unshippedRecords: Int, segments: Int, backlogLimit: Int) -> Bool {
        !closed && unshippedRecords <= backlogLimit && segments <= 2
    }

    /// Ships everything appended so far, as the shipper would (tests: without `run()` and its
    /// timing). Not while `run()` is shipping.
    package func shipPending() async throws {
        while try await shipBatch() {}
    }

    private func quarantine(_ record: AuditRecord, _ error: BrokerError) {
        quarantined.add(1, ordering: .relaxed)
        quarantinedTotal.increment()
        var kept = "the journal's log only"
        if let file = quarantineFile {
            do {
                try file.append(record, rejection: error, at: Date())
                kept = file.path
            } catch {
                logger.critical("audit quarantine file cannot be written", metadata: ["error": "\(error)"])
            }
        }
        logger.error(
            "audit record rejected by the database; quarantined",
            metadata: ["record": "\(record.id)", "operation": "\(record.operation)", "error": "\(String(reflecting: error))", "fb.auditQuarantineFile": "\(kept)"])
    }

    // MARK: Health and shutdown

    private func releaseLock() {
        let lock = lockDescriptor.exchange(-1, ordering: .relaxed)
        if lock >= 0 { close(lock) }
    }

    /// A journal dropped without `shutdown()` (a test's simulated crash) lets the directory go.
    deinit {
        ticker.withLock { $0?.cancel() }
        releaseLock()
        let (descriptor, spare) = state.withLock { ($0.activeDescriptor, $0.spare) }
        if descriptor >= 0 { close(descriptor) }
        if let spare { close(spare) }
    }

    public var health: AuditWriter.Health {
        get async {
            state.withLock { state in
                AuditWriter.Health(
                    closed: state.closed, backlog: state.unshippedRecords + state.queuedRecords, maximumPending: .max,
                    failingFor: state.brokenSince.map { ContinuousClock.now - $0 }, lastFailure: state.broken == nil ? nil : "journal_write_failed",
                    backlogBytes: state.full ? configuration.maximumBytes : state.bytes + state.queued.count,
                    maximumQueueBytes: configuration.maximumBytes)
            }
        }
    }

    /// Segment syncs so far (tests: which writes waited for one).
    package var syncs: Int { syncCount.load(ordering: .relaxed) }

    /// Where rejected records are kept, when a quarantine directory is configured.
    public var quarantineFilePath: String? { quarantineFile?.path }

    /// Records the database rejected, quarantined since the journal opened.
    public var quarantinedCount: Int { quarantined.load(ordering: .relaxed) }

    /// Bytes of unshipped segments on disk (tests, metrics).
    public var bytesOnDisk: Int { state.withLock { $0.bytes } }

    /// Closes a journal that never served: for a process that fails to start after opening it
    /// (a port in use, a bad admin setting). No shipping: what earlier processes left stays for
    /// the next start, and this process's own segment, still empty, is removed rather than left
    /// to count 8 MiB against `journalMaxBytes` at every failed start. Its threads stop and the
    /// directory's lock is released.
    public func abandon() async {
        let (descriptor, active) = state.withLock { state -> (Int32, Segment?) in
            state.closed = true
            defer { state.activeDescriptor = -1 }
            return (state.activeDescriptor, state.segments.last)
        }
        await quiesce()
        if let ticker = ticker.withLock({ $0.take() }) {
            ticker.cancel()
            await ticker.value
        }
        if descriptor >= 0 { close(descriptor) }
        if let active, !active.sealed, active.end <= AuditJournalSegments.header.count {
            unlink(configuration.directory + "/" + AuditJournalSegments.name(active.sequence))
        }
        await releaseResources()
    }

    /// The I/O threads, the spare segment being made, and the directory's lock.
    private func releaseResources() async {
        try? await thread.shutdownGracefully()
        try? await spareThread.shutdownGracefully()
        try? await readThread.shutdownGracefully()
        if let spare = state.withLock({ $0.spare.take() }) { AuditJournalSegments.discard(spare, spareName, in: configuration.directory) }
        releaseLock()
    }

    /// Refuses further appends, waits for the ones under way to reach the disk, then ships what
    /// is left to the store. Call after `run()` has returned.
    ///
    /// - Throws: when records could not be shipped (they remain in the journal and are shipped by
    ///   the next start on this directory), or when records were quarantined. Either way the
    ///   store's audit trail is not complete now, and the process should say so by its exit status.
    public func shutdown() async throws {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let idle = state.withLock { state -> Bool in
                state.closed = true
                guard state.writing else { return true }
                state.writerIdle.append(continuation)
                return false
            }
            if idle { continuation.resume() }
        }
        if let ticker = ticker.withLock({ $0.take() }) {
            ticker.cancel()
            await ticker.value
            // The writer is idle and appends are closed; a sync the tick handed over finishes
            // first. What is left unshipped goes to disk now, before the process can go.
            await quiesce()
            syncWritten(evenWhenClosed: true)
        }
        var action = machine.withLock { $0.close() }
        var finished = false
        loop: while true {
            switch action {
            case .ship:
                action = await shipOnce()
            case .sleep(let until):
                try? await Task.sleep(until: until)
                action = machine.withLock { $0.wake(now: .now) }
            case .none:
                action = machine.withLock { $0.wake(now: .now) }
                if action == .none { break loop }
            case .finished:
                finished = true
                break loop
            case .gaveUp:
                break loop
            }
        }
        let (descriptor, left) = state.withLock { state -> (Int32, [Segment]) in
            defer { state.activeDescriptor = -1 }
            return (state.activeDescriptor, state.segments)
        }
        if descriptor >= 0 { close(descriptor) }
        if finished {
            // Everything is in the store: the last segment too (appends are closed, and the
            // shipper reached its end), so a clean stop leaves nothing to replay.
            for segment in left { _ = try? retire(segment, path: configuration.directory + "/" + AuditJournalSegments.name(segment.sequence), damaged: nil) }
        }
        await releaseResources()
        if !finished {
            let (bytes, records) = state.withLock { ($0.bytes, $0.unshippedRecords) }
            throw BrokerError(
                .databaseUnavailable,
                "audit records are not yet in the store (\(records) from this process, \(bytes) journal bytes); they are kept in "
                    + "\(configuration.directory) and shipped by the next start that uses it")
        }
        let count = quarantined.load(ordering: .relaxed)
        if count > 0 {
            throw BrokerError(.invalidData, "\(count) audit record(s) were rejected by the database and quarantined (\(quarantineFile?.path ?? "logged only"))")
        }
    }
}
