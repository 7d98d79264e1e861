import Foundation
import Synchronization

/// The source of wall-clock time for everything that compares against token lifetimes,
/// key validity windows and rate windows.
///
/// Why a protocol and not `Date()`: token expiry, refresh-ahead, propagation delays and
/// throttle windows must be testable without sleeping. Production code receives a
/// `SystemWallClock`; tests receive a `ManualWallClock` and move time explicitly.
/// Wall time (not a monotonic clock) is what JWT `exp`/`nbf` and Key Vault attributes speak.
public protocol WallClock: Sendable {
    /// The current time.
    var now: Date { get }

    /// Waits `seconds` (backoff between retries). A manual clock moves its time instead of
    /// waiting, so retry schedules run instantly and deterministically in tests.
    func sleep(seconds: Double) async throws
}

extension WallClock {
    /// The current time as whole seconds since 1970, the unit of JWT and Key Vault timestamps.
    public var unixSeconds: Int64 { Int64(self.now.timeIntervalSince1970.rounded(.down)) }

    public func sleep(seconds: Double) async throws {
        guard seconds > 0 else { return }
        try await Task.sleep(for: .milliseconds(Int64((seconds * 1000).rounded(.up))))
    }

    /// Seconds left until `deadline` (negative once it has passed).
    public func remaining(until deadline: Date) -> Double {
        deadline.timeIntervalSince(self.now)
    }
}

/// The real clock.
public struct SystemWallClock: WallClock {
    public init() {}
    public var now: Date { Date() }
}
