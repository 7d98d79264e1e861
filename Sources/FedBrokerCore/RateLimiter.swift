import Foundation
import Synchronization

/// Keeps callers under a budget of `limit` admissions per `windowSeconds` for each key (a
/// vault, an IMDS endpoint), waiting for room rather than provoking the service's 429s, and
/// saying at once when room would only come after the caller's deadline.
public final class RateLimiter: Sendable {
    private struct State {
        var limit: Int
        var windows: [String: RateWindow] = [:]
    }
    public let windowSeconds: Int
    private let state: Mutex<State>

    public init(limit: Int, windowSeconds: Int) {
        self.windowSeconds = windowSeconds
        self.state = Mutex(State(limit: limit))
    }

    /// Admissions allowed per window for each key, now.
    public var limit: Int { state.withLock { $0.limit } }

    /// Changes the budget of every key from now on (at least 1): what was admitted in the current
    /// window still counts against the new limit.
    public func setLimit(_ limit: Int) {
        state.withLock { state in
            state.limit = max(1, limit)
            for key in state.windows.keys { state.windows[key]?.limit = state.limit }
        }
    }

    /// Admits one transaction for `key`, waiting (on `clock`) for room if needed. Returns false,
    /// without waiting, when room would only come after `deadline`.
    public func admit(_ key: String, clock: any WallClock, deadline: Date) async throws -> Bool {
        while true {
            let second = clock.unixSeconds
            let wait = state.withLock { state -> Int64 in
                var window = state.windows[key] ?? RateWindow(limit: state.limit, windowSeconds: windowSeconds)
                defer { state.windows[key] = window }
                return window.admit(at: second) ? 0 : max(1, window.wait(at: second))
            }
            if wait == 0 { return true }
            guard wait != Int64.max, clock.now.addingTimeInterval(Double(wait)) < deadline else { return false }
            try await clock.sleep(seconds: Double(wait))
        }
    }
}
