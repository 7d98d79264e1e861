import FedBrokerCore
import Foundation
import Synchronization

/// A clock that only moves when told to. Shared by reference so the code under test and the
/// test see the same time.
public final class ManualWallClock: WallClock {
    private let current: Mutex<Date>

    public init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        self.current = Mutex(start)
    }

    public var now: Date { self.current.withLock { $0 } }

    /// Moves time forward by `seconds`.
    public func advance(by seconds: TimeInterval) {
        self.current.withLock { $0 = $0.addingTimeInterval(seconds) }
    }

    /// Sets the time outright (may move backwards: clocks do).
    public func set(_ date: Date) {
        self.current.withLock { $0 = date }
    }

    /// Time moves on by `seconds` at once: code that backs off runs without waiting.
    public func sleep(seconds: Double) async throws {
        try Task.checkCancellation()
        if seconds > 0 { self.advance(by: seconds) }
        await Task.yield()
    }
}
