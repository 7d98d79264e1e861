import Crypto
import FedBrokerCore
import Foundation
import NIOCore
import Synchronization

/// Plaintext data keys recently unwrapped, so a hot blob costs one vault call per few minutes
/// instead of one per request. Memory only, never written anywhere; bounded by entries, age and
/// uses; purged for a tenant at once when its vault refuses us (401/403/KeyDisabled) or the store
/// says the tenant was suspended or disabled. Evicted entries are zeroed (`SecretBytes`).
///
/// The key is (tenant, key version, blob, context): the same blob under another context is
/// another entry, so a context-bound blob is never served from cache under the wrong context.
public final class DataKeyCache: Sendable {
    public struct Policy: Sendable, Equatable {
        public var maximumEntries: Int
        /// The revocation bound: a disabled key or removed role stops a cached key from being
        /// served at most this long after the last successful vault call.
        public var maximumAge: Double
        public var maximumUses: Int

        public init(maximumEntries: Int = 100_000, maximumAge: Double = 300, maximumUses: Int = 100_000) {
            self.maximumEntries = maximumEntries
            self.maximumAge = maximumAge
            self.maximumUses = maximumUses
        }
    }

    public struct Key: Hashable, Sendable {
        public var tenantID: String
        public var keyVersion: String
        /// SHA-256 of the blob and of the context: the cache holds no blob bytes. Kept as digests,
        /// not arrays: a digest hashes its 32 bytes at once, an array byte by byte.
        var blobDigest: SHA256Digest
        var contextDigest: SHA256Digest

        public init(tenantID: String, keyVersion: String, blob: [UInt8], context: [UInt8]?) {
            self.tenantID = tenantID
            self.keyVersion = keyVersion
            self.blobDigest = SHA256.hash(data: blob)
            var hash = SHA256()
            let bound: UInt8 = context == nil ? 0 : 1
            withUnsafeBytes(of: bound) { hash.update(bufferPointer: $0) }
            if let context { hash.update(data: context) }
            self.contextDigest = hash.finalize()
        }
    }

    private struct Entry {
        var secret: SecretBytes
        var storedAt: Date
        var uses: Int
        var sequence: UInt64
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        /// Keys in the order they were stored, with the sequence they were stored under: the
        /// oldest live entry is found from the front in O(1) amortized (an element whose entry
        /// is gone or was stored again since is stale and skipped), instead of a scan of every
        /// entry under the lock on each insertion into a full cache.
        var order = CircularBuffer<(key: Key, sequence: UInt64)>()
        var nextSequence: UInt64 = 0
        var evictions = 0
        /// Bumped by every purge: a vault call that began before a purge must not put its key
        /// back afterwards (the tenant was revoked meanwhile).
        var purges: UInt64 = 0
    }

    public let policy: Policy
    private let clock: any WallClock
    private let state = Mutex(State())
    private let metrics = Metrics()

    public init(policy: Policy = Policy(), clock: any WallClock = SystemWallClock()) {
        self.policy = policy
        self.clock = clock
    }

    /// The cached plaintext, counting one use; nil when absent, too old or used up (then evicted).
    ///
    /// - Parameter recordingLookup: false for a second look by the same request (inside its
    ///   single flight), so one request counts one hit or miss in the metrics.
    public func get(_ key: Key, recordingLookup: Bool = true) -> SecretBytes? {
        let now = clock.now
        let (secret, evictedLeaving) = state.withLock { s -> (SecretBytes?, Int?) in
            guard var entry = s.entries[key] else { return (nil, nil) }
            guard now.timeIntervalSince(entry.storedAt) < policy.maximumAge, now >= entry.storedAt, entry.uses < policy.maximumUses else {
                s.entries[key] = nil
                s.evictions += 1
                return (nil, s.entries.count)
            }
            entry.uses += 1
            s.entries[key] = entry
            return (entry.secret, nil)
        }
        if let evictedLeaving { metrics.evicted(1, leaving: evictedLeaving) }
        if recordingLookup { metrics.lookup(found: secret != nil) }
        return secret
    }

    /// Taken before a vault call and handed to `put`, so a purge in between wins.
    public var purgeEpoch: UInt64 { state.withLock { $0.purges } }

    /// Stores a plaintext just obtained from the vault, evicting the oldest entry when full.
    ///
    /// - Parameter epoch: `purgeEpoch` read before the vault call; if any purge happened since,
    ///   the key is not stored (the caller still gets it: it was the vault's answer at the time).
    public func put(_ key: Key, _ secret: SecretBytes, ifNotPurgedSince epoch: UInt64? = nil) {
        let now = clock.now
        let stored = state.withLock { s -> (evicted: Bool, count: Int)? in
            if let epoch, epoch != s.purges { return nil }
            var evicted = false
            if s.entries[key] == nil, s.entries.count >= policy.maximumEntries {
                while let oldest = s.order.popFirst() {
                    guard s.entries[oldest.key]?.sequence == oldest.sequence else { continue }  // stale
                    s.entries[oldest.key] = nil
                    s.evictions += 1
                    evicted = true
                    break
                }
            }
            s.entries[key] = Entry(secret: secret, storedAt: now, uses: 0, sequence: s.nextSequence)
            s.order.append((key, s.nextSequence))
            s.nextSequence += 1
            // Stale elements (entries expired, purged or stored again) are dropped when they
            // outnumber the live ones, so the order stays within twice the cache's size.
            if s.order.count > 2 * s.entries.count + 1024 {
                let live = s.entries
                s.order = CircularBuffer(s.order.filter { live[$0.key]?.sequence == $0.sequence })
            }
            return (evicted, s.entries.count)
        }
        if let stored { metrics.evicted(stored.evicted ? 1 : 0, leaving: stored.count) }
    }

    /// Forgets every key of a tenant: its customer revoked access, or it was suspended.
    @discardableResult
    public func purge(tenantID: String) -> Int {
        let (purged, left) = state.withLock { s in
            s.purges &+= 1
            let before = s.entries.count
            s.entries = s.entries.filter { $0.key.tenantID != tenantID }
            return (before - s.entries.count, s.entries.count)
        }
        metrics.purged(purged, leaving: left)
        return purged
    }

    public func purgeAll() {
        let purged = state.withLock { s in
            s.purges &+= 1
            defer {
                s.entries.removeAll()
                s.order.removeAll()
            }
            return s.entries.count
        }
        metrics.purged(purged, leaving: 0)
    }

    public var count: Int { state.withLock { $0.entries.count } }
    public var evictions: Int { state.withLock { $0.evictions } }
}
