import Foundation

/// At most one log line per key per `interval`, saying how many were left out since: what the
/// transport refuses can come by the thousand (a flood, a misconfigured fleet), and each one
/// logged would be a flood of its own. Time is passed in, so it is tested without waiting.
public struct LogRateLimit: Sendable {
    public let interval: Double
    private var lastLogged: [String: Date] = [:]
    private var suppressed: [String: Int] = [:]

    public init(interval: Double) { self.interval = interval }

    /// Whether to log the event `key` at `now`: the number of events of that key left out since
    /// the last line, or nil to leave this one out (it is counted for the next line).
    public mutating func admit(_ key: String, at now: Date) -> Int? {
        if let last = lastLogged[key], now.timeIntervalSince(last) < interval, now >= last {
            suppressed[key, default: 0] += 1
            return nil
        }
        lastLogged[key] = now
        return suppressed.removeValue(forKey: key) ?? 0
    }
}
