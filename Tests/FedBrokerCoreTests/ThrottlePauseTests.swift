import FedBrokerCore
import Foundation
import Testing

@Suite struct ThrottlePauseTests {
    let t0 = Date(timeIntervalSince1970: 1_000_000)
    func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

    @Test("Without Retry-After, the pause doubles with each 429 in a row, up to the cap")
    func backoffDoublesToTheCap() {
        var pause = ThrottlePause(policy: .init(initialSeconds: 1, maximumSeconds: 16))
        #expect(pause.wait(at: at(0)) == 0)
        var now = 0.0
        for expected in [1.0, 2, 4, 8, 16, 16, 16] {
            let end = pause.throttled(retryAfter: nil, at: at(now))
            #expect(end == at(now + expected))
            #expect(pause.wait(at: at(now)) == expected)
            now += expected
            #expect(pause.wait(at: at(now)) == 0)
        }
        #expect(pause.consecutive == 7)
        // Thousands in a row (each as the last pause ends) neither overflow nor pass the cap.
        for _ in 0..<5_000 { now = pause.throttled(retryAfter: nil, at: at(now)).timeIntervalSince(t0) }
        #expect(pause.consecutive == 5_007)
        #expect(pause.wait(at: at(now - 16)) == 16)
    }

    @Test("A burst of 429s to calls sent before the pause began does not climb the backoff; a longer Retry-After among them extends it")
    func aBurstCountsOnce() {
        var pause = ThrottlePause(policy: .init(initialSeconds: 1, maximumSeconds: 16))
        pause.throttled(retryAfter: nil, at: at(0))
        for step in 1...5 { pause.throttled(retryAfter: nil, at: at(Double(step) * 0.01)) }
        #expect(pause.consecutive == 1)
        #expect(pause.until == at(1))
        pause.throttled(retryAfter: 3, at: at(0.5))
        #expect(pause.until == at(3.5))
        #expect(pause.consecutive == 1)
        // The next 429 after the pause is the second in a row.
        pause.throttled(retryAfter: nil, at: at(3.5))
        #expect(pause.consecutive == 2)
        #expect(pause.wait(at: at(3.5)) == 2)
    }

    @Test("After a quiet spell longer than the longest pause, 429s are no longer in a row, and the entry can be forgotten; a clock stepped back waits no longer than the cap")
    func quietSpellsAndClockSteps() {
        var pause = ThrottlePause(policy: .init(initialSeconds: 1, maximumSeconds: 16))
        pause.throttled(retryAfter: nil, at: at(0))
        pause.throttled(retryAfter: nil, at: at(1))
        #expect(pause.wait(at: at(1)) == 2)
        #expect(!pause.isIdle(at: at(3)), "two 429s in a row are remembered")
        #expect(!pause.isIdle(at: at(19)))
        #expect(pause.isIdle(at: at(19.5)))
        pause.throttled(retryAfter: nil, at: at(20))
        #expect(pause.consecutive == 1)
        #expect(pause.wait(at: at(20)) == 1)
        #expect(pause.wait(at: at(-1_000)) == 16)
        // The caller about to wait pulls such a pause back, so it ends 16 s after the step.
        #expect(pause.remaining(at: at(-1_000)) == 16)
        #expect(pause.remaining(at: at(-984)) == 0)
        #expect(pause.until == at(-984))
    }

    @Test("The server's Retry-After sets the pause, capped; any other answer restarts the backoff but keeps the pause")
    func retryAfterAndAnswers() {
        var pause = ThrottlePause(policy: .init(initialSeconds: 1, maximumSeconds: 16))
        pause.throttled(retryAfter: 3, at: at(0))
        #expect(pause.wait(at: at(1)) == 2)
        pause.throttled(retryAfter: 300, at: at(3))
        #expect(pause.wait(at: at(3)) == 16)
        // A call sent before the pause answered meanwhile: the vault's request stands.
        pause.answered()
        #expect(pause.consecutive == 0)
        #expect(pause.wait(at: at(3)) == 16)
        #expect(!pause.isIdle(at: at(3)))
        #expect(pause.isIdle(at: at(19)))
        // The next 429 without a hint starts from the first step again.
        pause.throttled(retryAfter: nil, at: at(20))
        #expect(pause.wait(at: at(20)) == 1)
        // A zero, negative or non-finite hint is no hint.
        pause.answered()
        for hint in [0, -5, Double.nan, Double.infinity] {
            var fresh = ThrottlePause()
            fresh.throttled(retryAfter: hint, at: at(0))
            #expect(fresh.wait(at: at(0)) == 1, "hint \(hint)")
        }
    }

    @Test("A 429 that was in flight before a longer pause does not shorten it")
    func aLaterShorterPauseKeepsTheLonger() {
        var pause = ThrottlePause(policy: .init(initialSeconds: 1, maximumSeconds: 16))
        pause.throttled(retryAfter: 10, at: at(0))
        let end = pause.throttled(retryAfter: 1, at: at(0.5))
        #expect(end == at(10))
        #expect(pause.wait(at: at(5)) == 5)
    }
}
