import Foundation

/// The token cache's decisions for one key, without I/O or clocks: the driver (`TokenCache`)
/// feeds it events with the current time and carries out the action it returns.
///
/// Rules: hand out a token only while it has at least `minimumValidity` left; refresh ahead of
/// expiry (at `refreshAt`, set with jitter when the token arrives) while still handing out the
/// current token; one fetch at a time per key; if a refresh fails, keep serving the token while
/// it is valid and try again a little later; never hand out an expired token.
struct TokenCacheStateMachine: Sendable {
    struct Policy: Sendable, Equatable {
        /// Tokens with less than this left are not handed out (the caller still has to use it).
        var minimumValidity: Double = 60
        /// Refresh when this share of the lifetime remains (before jitter)…
        var refreshAheadFraction: Double = 0.15
        /// …but at least this many seconds before expiry.
        var minimumRefreshAhead: Double = 300
        /// After a failed background refresh, wait this long before the next attempt.
        var retryAfterFailure: Double = 5

        func isUsable(_ token: AccessToken, now: Date) -> Bool {
            token.expiresOn.timeIntervalSince(now) >= minimumValidity
        }
    }

    enum Action: Equatable, Sendable {
        /// Hand out this token.
        case use(AccessToken)
        /// Hand out this token, and start a background refresh.
        case useAndRefresh(AccessToken)
        /// Nothing usable: start a fetch and wait for it.
        case fetchAndWait
        /// A fetch is already running: wait for it.
        case wait
    }

    private enum State: Sendable {
        case idle(token: AccessToken?, refreshAt: Date)
        case fetching(token: AccessToken?)
    }

    let policy: Policy
    private var state: State = .idle(token: nil, refreshAt: .distantPast)

    init(policy: Policy = Policy()) { self.policy = policy }

    /// A caller wants a token.
    mutating func tokenRequested(now: Date) -> Action {
        switch state {
        case .fetching(let token):
            if let token, isUsable(token, now: now) { return .use(token) }
            return .wait
        case .idle(let token, let refreshAt):
            guard let token, isUsable(token, now: now) else {
                state = .fetching(token: nil)
                return .fetchAndWait
            }
            if now >= refreshAt {
                state = .fetching(token: token)
                return .useAndRefresh(token)
            }
            return .use(token)
        }
    }

    /// A fetch brought a new token. `jitter` in 0..<1 spreads refreshes of many keys apart.
    mutating func fetchSucceeded(_ token: AccessToken, now: Date, jitter: Double) {
        let latest = token.expiresOn.addingTimeInterval(-policy.minimumValidity)
        if case .fetching(let previous?) = state, token.expiresOn <= previous.expiresOn {
            // No newer token to be had yet (IMDS serves its own cached token for hours): try again
            // halfway to the point where this one stops being handed out, not on every request.
            let halfway = now.addingTimeInterval(max(policy.retryAfterFailure, latest.timeIntervalSince(now) / 2))
            state = .idle(token: token, refreshAt: min(halfway, latest))
            return
        }
        let lifetime = max(0, token.expiresOn.timeIntervalSince(now))
        let ahead = max(policy.minimumRefreshAhead, lifetime * policy.refreshAheadFraction) * (1 + 0.5 * jitter)
        // Never schedule the refresh after the point where the token stops being handed out.
        state = .idle(token: token, refreshAt: min(token.expiresOn.addingTimeInterval(-ahead), latest))
    }

    /// A fetch failed. Returns the token that is still usable, if any, for the waiters.
    mutating func fetchFailed(now: Date) -> AccessToken? {
        guard case .fetching(let token) = state else { return nil }
        let usable = token.flatMap { isUsable($0, now: now) ? $0 : nil }
        state = .idle(token: usable, refreshAt: now.addingTimeInterval(policy.retryAfterFailure))
        return usable
    }

    /// The token was rejected (a 401 from the resource): drop it so the next request fetches.
    /// With `rejected` nil, whatever token is held is dropped.
    mutating func invalidate(_ rejected: String?) {
        switch state {
        case .idle(let token, _) where rejected == nil || token?.token == rejected:
            state = .idle(token: nil, refreshAt: .distantPast)
        case .fetching(let token) where rejected == nil || token?.token == rejected:
            state = .fetching(token: nil)
        default:
            break
        }
    }

    func isUsable(_ token: AccessToken, now: Date) -> Bool { policy.isUsable(token, now: now) }
}
