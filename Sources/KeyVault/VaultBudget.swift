import FedBrokerCore
import Foundation
import Synchronization

/// Keeps the broker's calls to each vault under the vault's published budget (by default the
/// RSA-3072 software-key limit, 1,000 transactions per 10 s), so the broker waits a little
/// rather than provoking 429s, and fails fast when even waiting would miss the deadline.
final class VaultBudget: Sendable {
    private let limit: Int
    private let windowSeconds: Int
    private let windows = Mutex<[String: RateWindow]>([:])

    init(limit: Int, windowSeconds: Int) {
        self.limit = limit
        self.windowSeconds = windowSeconds
    }

    /// Admits one transaction for `vault`, waiting for room if needed. Returns false when room
    /// would only come after the deadline.
    func admit(vault: String, clock: any WallClock, deadline: Date) async throws -> Bool {
        while true {
            let second = clock.unixSeconds
            let wait = windows.withLock { all -> Int64 in
                var window = all[vault] ?? RateWindow(limit: limit, windowSeconds: windowSeconds)
                defer { all[vault] = window }
                return window.admit(at: second) ? 0 : max(1, window.wait(at: second))
            }
            if wait == 0 { return true }
            guard wait != Int64.max, clock.now.addingTimeInterval(Double(wait)) < deadline else { return false }
            try await clock.sleep(seconds: Double(wait))
        }
    }
}
