import FedBrokerCore
import Logging

/// Appends audit records to the store in batches, off the request path.
///
/// Contract (invariant 4): a record handed to `append` is either committed or still pending in
/// this writer; it is never dropped. A failed flush puts its batch back at the front, counts the
/// failure (`failedFlushes`) and is retried by the next flush. `shutdown()` flushes everything and
/// throws — with the number of records it could not write — rather than return with records lost.
///
/// Batches are the unit of atomicity: each batch is one transaction, so a crash leaves every batch
/// wholly committed or wholly absent.
public actor AuditWriter {
    public struct Configuration: Sendable {
        /// Records per transaction.
        public var batchSize: Int = 200
        /// How often `run()` flushes a partial batch.
        public var flushInterval: Duration = .seconds(1)
        /// Above this many pending records, `append` waits for a flush (back-pressure, not loss).
        public var maximumPending: Int = 100_000
        /// Attempts `shutdown()` makes before giving up, and the pause between them.
        public var shutdownAttempts: Int = 5
        public var shutdownRetryDelay: Duration = .milliseconds(200)

        public init() {}
    }

    private let store: any BrokerStore
    private let configuration: Configuration
    private let logger: Logger
    private var pending: [AuditRecord] = []
    private var isFlushing = false
    private var flushWaiters: [CheckedContinuation<Void, Never>] = []

    /// Flushes that failed (each is retried later). Exposed for metrics.
    public private(set) var failedFlushes = 0
    /// Records committed by this writer.
    public private(set) var writtenRecords = 0
    /// Records accepted but not yet committed.
    public var pendingCount: Int { self.pending.count }

    public init(store: any BrokerStore, configuration: Configuration = .init(), logger: Logger) {
        precondition(configuration.batchSize > 0, "batchSize must be positive")
        self.store = store
        self.configuration = configuration
        self.logger = logger
    }

    /// Queues a record; flushes when a batch is full, and waits when too much is pending.
    public func append(_ record: AuditRecord) async {
        self.pending.append(record)
        if self.pending.count >= self.configuration.maximumPending {
            await self.flush()
        } else if self.pending.count >= self.configuration.batchSize, !self.isFlushing {
            await self.flush()
        }
    }

    /// Writes everything pending, batch by batch. Returns `false` if a batch failed; its records
    /// stay pending and the failure is counted. Concurrent callers take turns.
    @discardableResult
    public func flush() async -> Bool {
        while self.isFlushing {
            await withCheckedContinuation { self.flushWaiters.append($0) }
        }
        self.isFlushing = true
        defer {
            self.isFlushing = false
            let waiters = self.flushWaiters
            self.flushWaiters = []
            for waiter in waiters { waiter.resume() }
        }
        while !self.pending.isEmpty {
            let batch = Array(self.pending.prefix(self.configuration.batchSize))
            self.pending.removeFirst(batch.count)
            do {
                // Unstructured on purpose: a batch, once started, is written even if the task that
                // happened to trigger the flush (an appender being cancelled at shutdown) is cancelled.
                let store = self.store
                try await Task { try await store.appendAudit(batch) }.value
                self.writtenRecords += batch.count
            } catch {
                self.pending.insert(contentsOf: batch, at: 0)
                self.failedFlushes += 1
                self.logger.warning(
                    "audit flush failed; records kept for retry",
                    metadata: [
                        "error": "\(error)", "pending": "\(self.pending.count)", "failedFlushes": "\(self.failedFlushes)",
                    ])
                return false
            }
        }
        return true
    }

    /// Flushes every `flushInterval` until the task is cancelled. Call `shutdown()` afterwards.
    public func run() async {
        while (try? await Task.sleep(for: self.configuration.flushInterval)) != nil {
            await self.flush()
        }
    }

    /// Flushes everything, retrying failed batches.
    ///
    /// - Throws: `BrokerError(.databaseUnavailable)` naming how many records remain unwritten when
    ///   every attempt failed; the records are still in `pendingCount` for the caller to decide.
    public func shutdown() async throws {
        for attempt in 1...max(1, self.configuration.shutdownAttempts) {
            if await self.flush() { return }
            if attempt < self.configuration.shutdownAttempts {
                try? await Task.sleep(for: self.configuration.shutdownRetryDelay)
            }
        }
        throw BrokerError(
            .databaseUnavailable,
            "\(self.pending.count) audit record(s) could not be written after \(self.configuration.shutdownAttempts) attempts")
    }
}
