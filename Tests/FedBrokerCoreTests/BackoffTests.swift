import FedBrokerCore
import Foundation
import Testing
import FedBrokerTestSupport

@Suite struct BackoffTests {
    let now = Date(timeIntervalSince1970: 1_000)
    let policy = Backoff(initial: 1, maximum: 8, multiplier: 2, maxRetries: 5)

    @Test func growsExponentiallyWithHalfJitterUpToTheCap() {
        let far = now.addingTimeInterval(3600)
        let full = (1...5).map { policy.decision(afterAttempt: $0, retryAfter: nil, jitter: 1, now: now, deadline: far) }
        #expect(full == [.retry(after: 1), .retry(after: 2), .retry(after: 4), .retry(after: 8), .retry(after: 8)])
        #expect(policy.decision(afterAttempt: 3, retryAfter: nil, jitter: 0, now: now, deadline: far) == .retry(after: 2))
        #expect(policy.decision(afterAttempt: 6, retryAfter: nil, jitter: 1, now: now, deadline: far) == .giveUp)
    }

    @Test func retryAfterWinsAndTheDeadlineBounds() {
        let far = now.addingTimeInterval(3600)
        #expect(policy.decision(afterAttempt: 1, retryAfter: 30, jitter: 0.5, now: now, deadline: far) == .retry(after: 30))
        #expect(policy.decision(afterAttempt: 1, retryAfter: 30, jitter: 0.5, now: now, deadline: now.addingTimeInterval(29)) == .giveUp)
        #expect(policy.decision(afterAttempt: 4, retryAfter: nil, jitter: 1, now: now, deadline: now.addingTimeInterval(5)) == .giveUp)
    }

    @Test func parsesRetryAfterSecondsAndDates() {
        #expect(parseRetryAfter("7", now: now) == 7)
        #expect(parseRetryAfter(" 0 ", now: now) == 0)
        #expect(parseRetryAfter(nil, now: now) == nil)
        #expect(parseRetryAfter("soon", now: now) == nil)
        let date = Date(timeIntervalSince1970: 1_784_000_000)
        #expect(parseRetryAfter("Tue, 14 Jul 2026 03:33:20 GMT", now: date.addingTimeInterval(-20)) == 20)
    }

    @Test func manualClockSleepMovesTimeInstead() async throws {
        let clock = ManualWallClock(now)
        try await clock.sleep(seconds: 2.5)
        #expect(clock.now == now.addingTimeInterval(2.5))
        #expect(clock.remaining(until: now.addingTimeInterval(10)) == 7.5)
    }
}
