import Foundation
import Synchronization

/// Keeps callers under a budget of `limit` admissions per `windowSeconds` for each key (a
/// vault, an IMDS endpoint), waiting for room rather than provoking the service's 429s, and
/// saying at once when room would only come after the caller's deadline.
public final class RateLimiter: Sendable {
    public let limit: Int
    public let windowSeconds: Int
    private let windows = Mutex<[String: RateWindow]>([:])

    public init(limit: Int, windowSeconds: Int) {
        self.limit = limit
        self.windowSeconds = windowSeconds
    }

    /// Admits one transaction for `key`, waiting (on `clock`) for room if needed. Returns false,
    /// without waiting, when room would only come after `deadline`.
    public func admit(_ key: String, clock: any WallClock, deadline: Date) async throws -> Bool {
        while true {
            let second = clock.unixSeconds
            let wait = windows.withLock { all -> Int64 in
                var window = all[key] ?? RateWindow(limit: limit, windowSeconds: windowSeconds)
                defer { all[key] = window }
                return window.admit(at: second) ? 0 : max(1, window.wait(at: second))
            }
            if wait == 0 { return true }
            guard wait != Int64.max, clock.now.addingTimeInterval(Double(wait)) < deadline else { return false }
            try await clock.sleep(seconds: Double(wait))
        }
    }
}
