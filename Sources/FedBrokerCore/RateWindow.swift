import Foundation

/// A sliding-window counter: at most `limit` admissions in any `window` seconds, counted in
/// one-second buckets. Key Vault counts its budget this way (per 10 s) and IMDS its 20 requests
/// per second: the emulator enforces those budgets with it, and the broker's clients keep
/// under them with it. Time is passed in, so it is tested without sleeping.
public struct RateWindow: Sendable {
    /// May change while counting (a replica's share of a vault's budget follows the number of
    /// live replicas); what was admitted stays counted.
    public var limit: Int
    public let windowSeconds: Int
    private var buckets: [Int64: Int] = [:]

    public init(limit: Int, windowSeconds: Int) {
        precondition(windowSeconds > 0, "window must be positive")
        self.limit = limit
        self.windowSeconds = windowSeconds
    }

    /// Admits one transaction at `second` if the window has room, and counts it. A refused
    /// transaction is not counted ("Failed requests that return a 429 do not count").
    public mutating func admit(at second: Int64, cost: Int = 1) -> Bool {
        let oldest = second - Int64(windowSeconds) + 1
        // Buckets "after" `second` exist only if the clock stepped back; they do not count.
        buckets = buckets.filter { $0.key >= oldest && $0.key <= second }
        let used = buckets.values.reduce(0, +)
        guard used + cost <= limit else { return false }
        buckets[second, default: 0] += cost
        return true
    }

    /// Seconds from `second` until a transaction of `cost` would be admitted (0 when it would be now).
    public func wait(at second: Int64, cost: Int = 1) -> Int64 {
        guard cost <= limit else { return Int64.max }
        var used = self.used(at: second)
        var candidate = second
        // Buckets leave the window oldest first; walk forward until enough room frees up.
        let oldest = second - Int64(windowSeconds) + 1
        for bucket in buckets.keys.filter({ $0 >= oldest && $0 <= second }).sorted() where used + cost > limit {
            used -= buckets[bucket]!
            candidate = bucket + Int64(windowSeconds)
        }
        return max(0, candidate - second)
    }

    /// Transactions counted in the window ending at `second`.
    public func used(at second: Int64) -> Int {
        let oldest = second - Int64(windowSeconds) + 1
        return buckets.filter { $0.key >= oldest && $0.key <= second }.values.reduce(0, +)
    }
}
