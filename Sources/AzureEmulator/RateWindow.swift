import Foundation

/// A sliding-window counter: at most `limit` admissions in any `window` seconds, counted in
/// one-second buckets. Used for a vault's transaction budget (Key Vault counts per 10 s) and
/// for IMDS's 20 requests per second. Time is passed in, so it is tested without sleeping.
public struct RateWindow: Sendable {
    public let limit: Int
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
        buckets = buckets.filter { $0.key >= oldest }
        let used = buckets.values.reduce(0, +)
        guard used + cost <= limit else { return false }
        buckets[second, default: 0] += cost
        return true
    }

    /// Transactions counted in the window ending at `second`.
    public func used(at second: Int64) -> Int {
        let oldest = second - Int64(windowSeconds) + 1
        return buckets.filter { $0.key >= oldest && $0.key <= second }.values.reduce(0, +)
    }
}
