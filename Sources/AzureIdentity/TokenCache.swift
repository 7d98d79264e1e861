import FedBrokerCore
import Foundation

/// Tokens by key — (customer tenant, FIC slot, resource) for access tokens, the identity for
/// assertions — with refresh ahead of expiry, single flight and stale-while-valid, following
/// `TokenCacheStateMachine`. N concurrent callers for a cold key cause exactly one fetch.
public actor TokenCache<Key: Hashable & Sendable> {
    public typealias Fetch = @Sendable (_ key: Key, _ deadline: Date) async throws -> AccessToken

    private struct Entry {
        var machine: TokenCacheStateMachine
        var inFlight: Task<AccessToken, any Error>?
        /// Which entry this is: a fetch begun for an entry that `removeAll` has since dropped
        /// finishes for its own callers only, and neither installs its token in the entry made
        /// after it nor clears that entry's fetch in flight.
        var epoch: UInt64
    }

    private let clock: any WallClock
    private let fetch: Fetch
    private let policy: TokenCacheStateMachine.Policy
    private let jitter: @Sendable () -> Double
    /// How long a background refresh may take.
    private let refreshTimeout: Double
    private var entries: [Key: Entry] = [:]
    private var epochs: UInt64 = 0

    public init(
        clock: any WallClock = SystemWallClock(), minimumValidity: Double = 60, refreshTimeout: Double = 30,
        jitter: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }, fetch: @escaping Fetch
    ) {
        self.clock = clock
        self.fetch = fetch
        self.policy = .init(minimumValidity: minimumValidity)
        self.refreshTimeout = refreshTimeout
        self.jitter = jitter
    }

    /// A token for `key` with at least the minimum validity left, fetching it (once, for all
    /// concurrent callers) when there is none.
    public func token(for key: Key, deadline: Date) async throws -> AccessToken {
        var entry = entries[key] ?? newEntry()
        let action = entry.machine.tokenRequested(now: clock.now)
        entries[key] = entry
        switch action {
        case .use(let token):
            return token
        case .useAndRefresh(let token):
            startFetch(key, deadline: clock.now.addingTimeInterval(refreshTimeout))
            return token
        case .fetchAndWait:
            // The fetch serves every caller that joins it, so it is not cut short by the first
            // caller's deadline; each caller stops waiting at its own.
            let task = startFetch(key, deadline: max(deadline, clock.now.addingTimeInterval(refreshTimeout)))
            return try await Self.wait(for: task, remaining: clock.remaining(until: deadline))
        case .wait:
            guard let task = entries[key]?.inFlight else { preconditionFailure("fetching without a task in flight") }
            return try await Self.wait(for: task, remaining: clock.remaining(until: deadline))
        }
    }

    /// Waits for the shared fetch for at most `remaining` seconds (of real time: the race must
    /// hold whatever clock drives the schedule). Leaving early does not cancel the fetch.
    private static func wait(for task: Task<AccessToken, any Error>, remaining: Double) async throws -> AccessToken {
        guard remaining > 0 else { throw AzureIdentityError.deadlineExceeded(lastFailure: "waiting for a token") }
        return try await withThrowingTaskGroup(of: AccessToken?.self) { group in
            group.addTask { try await task.value }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(Int64((remaining * 1000).rounded(.up))))
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let token = first else {
                throw AzureIdentityError.deadlineExceeded(lastFailure: "waiting for a token")
            }
            return token
        }
    }

    /// Drops a token the resource rejected (any token when `token` is nil), so the next
    /// `token(for:)` fetches a new one.
    public func invalidate(_ key: Key, token: String? = nil) {
        entries[key]?.machine.invalidate(token)
    }

    /// Forgets every token (tenant offboarded, slot retired).
    public func removeAll(where predicate: (Key) -> Bool) {
        for key in entries.keys where predicate(key) { entries[key] = nil }
    }

    private func newEntry() -> Entry {
        epochs &+= 1
        return Entry(machine: TokenCacheStateMachine(policy: policy), inFlight: nil, epoch: epochs)
    }

    @discardableResult
    private func startFetch(_ key: Key, deadline: Date) -> Task<AccessToken, any Error> {
        let fetch = self.fetch
        if entries[key] == nil { entries[key] = newEntry() }
        let epoch = entries[key]?.epoch ?? 0
        let task = Task<AccessToken, any Error> {
            do {
                let token = try await fetch(key, deadline)
                guard self.policy.isUsable(token, now: self.clock.now) else {
                    // An answer whose lifetime is under the minimum (`expires_in` 0, an IMDS
                    // token about to expire) is never handed out, to the callers waiting for
                    // this fetch either: a failure, so the state machine's retry pacing applies.
                    if let stale = self.finish(key, epoch: epoch, with: nil) { return stale }
                    throw AzureIdentityError.malformedResponse(
                        service: "token", detail: "a token with less than \(Int(self.policy.minimumValidity)) s left (expires \(token.expiresOn))")
                }
                self.finish(key, epoch: epoch, with: token)
                return token
            } catch {
                if let stale = self.finish(key, epoch: epoch, with: nil) { return stale }
                throw error
            }
        }
        entries[key]?.inFlight = task
        return task
    }

    /// Records the outcome, the fetched token or nil for a failure; after a failure returns the
    /// still-usable token for the waiters.
    @discardableResult
    private func finish(_ key: Key, epoch: UInt64, with fetched: AccessToken?) -> AccessToken? {
        guard var entry = entries[key], entry.epoch == epoch else { return nil }
        entry.inFlight = nil
        var stale: AccessToken?
        if let fetched {
            entry.machine.fetchSucceeded(fetched, now: clock.now, jitter: jitter())
        } else {
            stale = entry.machine.fetchFailed(now: clock.now)
        }
        entries[key] = entry
        return stale
    }
}
