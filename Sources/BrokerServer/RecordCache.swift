import FedBrokerCore
import Foundation
import Synchronization

/// Store records (callers, tenants, slots) the hot path reads on every request, kept for at
/// most `maximumAge` seconds so a cached unwrap costs no database round trip. Staleness is
/// bounded twice: by the age, and by the change-feed follower, which drops a record as soon as
/// the store says it changed. The broker's own writes (a tenant it suspends) drop theirs at
/// once. Failures are not cached: an unknown tenant is looked up again next time.
final class RecordCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct Entry {
        var value: Value
        var loadedAt: Date
        /// A background refresh of this entry is under way.
        var refreshing = false
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        /// Bumped by every invalidation, so a load that started before one cannot put back the
        /// record it removed.
        var generation: UInt64 = 0
    }

    let maximumAge: Double
    private let clock: any WallClock
    private let state = Mutex(State())
    /// When a hot record expires, every request in flight misses at once: one of them reads the
    /// store, the others wait for it (without this, hundreds of identical reads every
    /// `maximumAge`, and a latency spike each time). Shared only within one generation: a reader
    /// that comes after an invalidation must not join a read that began before it, or it would
    /// cache the very record the invalidation removed (a suspended tenant served as active).
    private let loads = SingleFlight<Flight, Value>()

    private struct Flight: Hashable, Sendable {
        let key: Key
        let generation: UInt64
    }

    init(maximumAge: Double, clock: any WallClock) {
        self.maximumAge = maximumAge
        self.clock = clock
    }

    /// The record if it is cached and fresh: the hot path's answer without a task or a wait.
    ///
    /// Past half its age, the first caller to see it also starts one background `load` (refresh
    /// ahead): a hot record is replaced before it expires, so requests do not all stall on the
    /// store once per `maximumAge`. The age bound is unchanged: a record is never served older
    /// than `maximumAge`, counted from when the load that produced it began.
    func cached(_ key: Key, refreshing load: (@Sendable () async throws -> Value)? = nil) -> Value? {
        let now = clock.now
        let (value, refresh) = state.withLock { state -> (Value?, UInt64?) in
            guard var entry = state.entries[key], now.timeIntervalSince(entry.loadedAt) < maximumAge else { return (nil, nil) }
            guard load != nil, !entry.refreshing, now.timeIntervalSince(entry.loadedAt) >= maximumAge / 2 else { return (entry.value, nil) }
            entry.refreshing = true
            state.entries[key] = entry
            return (entry.value, state.generation)
        }
        if let generation = refresh, let load {
            Task {
                let value = try? await load()
                state.withLock { state in
                    guard let value, state.generation == generation else {
                        state.entries[key]?.refreshing = false
                        return
                    }
                    state.entries[key] = Entry(value: value, loadedAt: now)
                }
            }
        }
        return value
    }

    /// `deadline` bounds this caller's wait; a load shared with others goes on for them. The
    /// request path passes none: it bounds the whole read with `withStoreDeadline` already.
    func value(for key: Key, deadline: Date? = nil, load: @escaping @Sendable () async throws -> Value) async throws -> Value {
        let now = clock.now
        let (cached, generation) = state.withLock { state -> (Value?, UInt64) in
            if let entry = state.entries[key], now.timeIntervalSince(entry.loadedAt) < maximumAge { return (entry.value, state.generation) }
            return (nil, state.generation)
        }
        if let cached { return cached }
        let value = try await loads.run(Flight(key: key, generation: generation), deadline: deadline, load)
        guard maximumAge > 0 else { return value }
        state.withLock { state in
            if state.generation == generation { state.entries[key] = Entry(value: value, loadedAt: now) }
        }
        return value
    }

    func invalidate(_ key: Key) {
        state.withLock {
            $0.entries[key] = nil
            $0.generation &+= 1
        }
    }

    func invalidateAll() {
        state.withLock {
            $0.entries.removeAll()
            $0.generation &+= 1
        }
    }
}
