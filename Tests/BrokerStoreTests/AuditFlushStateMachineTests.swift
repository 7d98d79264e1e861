import Testing

@testable import BrokerStore

/// The audit writers' rules (the journal's shipper and the in-memory writer), without a disk, a
/// database or a clock.
@Suite struct AuditFlushStateMachineTests {
    let t0 = ContinuousClock.now

    func machine() -> AuditFlushStateMachine {
        AuditFlushStateMachine(baseDelay: .milliseconds(500), maximumDelay: .seconds(4), closingAttempts: 3)
    }

    @Test("Records wake an idle shipper; a wake during a batch makes the next one follow at once")
    func wakesAndFollowUps() {
        var m = machine()
        #expect(m.wake(now: t0) == .ship)
        #expect(m.state == .flushing)
        #expect(m.wake(now: t0) == .none)  // records arrived meanwhile
        #expect(m.shipped(more: false) == .ship)
        #expect(m.shipped(more: false) == .none)
        #expect(m.state == .open)
        #expect(m.wake(now: t0) == .ship)
        #expect(m.shipped(more: true) == .ship)
    }

    @Test("A failure backs off, doubling to the maximum; nothing is tried early; a success resets it")
    func backOff() {
        var m = machine()
        _ = m.wake(now: t0)
        #expect(m.failed(now: t0) == .sleep(until: t0 + .milliseconds(500)))
        #expect(m.wake(now: t0 + .milliseconds(100)) == .sleep(until: t0 + .milliseconds(500)))
        #expect(m.wake(now: t0 + .milliseconds(500)) == .ship)
        #expect(m.failed(now: t0) == .sleep(until: t0 + .seconds(1)))
        _ = m.wake(now: t0 + .seconds(1))
        #expect(m.failed(now: t0) == .sleep(until: t0 + .seconds(2)))
        _ = m.wake(now: t0 + .seconds(2))
        #expect(m.failed(now: t0) == .sleep(until: t0 + .seconds(4)))
        _ = m.wake(now: t0 + .seconds(4))
        #expect(m.failed(now: t0) == .sleep(until: t0 + .seconds(4)))  // capped
        #expect(m.consecutiveFailures == 5)
        _ = m.wake(now: t0 + .seconds(4))
        #expect(m.shipped(more: false) == .none)
        #expect(m.consecutiveFailures == 0)
        #expect(m.state == .open)
    }

    @Test("Closing cuts a back-off short, ships the rest, and finishes when nothing is left")
    func closingFinishes() {
        var m = machine()
        _ = m.wake(now: t0)
        _ = m.failed(now: t0)
        #expect(m.close() == .ship)
        #expect(m.shipped(more: true) == .ship)
        #expect(m.shipped(more: false) == .finished)
        #expect(m.state == .closed)
        #expect(m.wake(now: t0) == .none)
        #expect(m.close() == .none)
    }

    @Test("Closing while a batch is out lets that batch decide")
    func closingDuringABatch() {
        var m = machine()
        _ = m.wake(now: t0)
        #expect(m.close() == .none)
        #expect(m.shipped(more: false) == .finished)
    }

    @Test("Closing gives up after its attempts, with short pauses between them")
    func closingGivesUp() {
        var m = machine()
        #expect(m.close() == .ship)
        #expect(m.failed(now: t0) == .sleep(until: t0 + .milliseconds(500)))
        #expect(m.wake(now: t0 + .milliseconds(500)) == .ship)
        #expect(m.failed(now: t0) == .sleep(until: t0 + .seconds(1)))
        #expect(m.wake(now: t0 + .seconds(1)) == .ship)
        #expect(m.failed(now: t0) == .gaveUp)
        #expect(m.state == .closed)
    }

    @Test("Results without a batch out change nothing")
    func strayResults() {
        var m = machine()
        #expect(m.shipped(more: true) == .none)
        #expect(m.failed(now: t0) == .none)
        #expect(m.state == .open)
    }

    @Test("A ship decided but never started (the driver was cancelled) leaves no batch out, so closing ships")
    func notShipped() {
        var m = machine()
        #expect(m.wake(now: t0) == .ship)
        m.notShipped()
        #expect(m.state == .open)
        #expect(m.close() == .ship)
        m.notShipped()
        #expect(m.state == .closing(flushing: false))
        #expect(m.wake(now: t0) == .ship)
    }

    @Test("An explicit flush goes through a back-off, waits for a batch out, and is one more attempt after closing")
    func explicitFlush() {
        var m = machine()
        #expect(m.flushRequested() == .ship)
        #expect(m.isFlushing)
        #expect(m.flushRequested() == .none)  // wait for the batch out
        #expect(m.failed(now: t0) == .sleep(until: t0 + .milliseconds(500)))
        #expect(!m.isFlushing)
        #expect(m.wake(now: t0) == .sleep(until: t0 + .milliseconds(500)))  // the timer waits
        #expect(m.flushRequested() == .ship)  // a waiting appender does not
        #expect(m.shipped(more: false) == .none)
        #expect(m.state == .open)

        #expect(m.close() == .ship)
        #expect(m.failed(now: t0) == .sleep(until: t0 + .milliseconds(500)))
        #expect(m.flushRequested() == .ship)  // cuts the closing pause short
        #expect(m.failed(now: t0) == .sleep(until: t0 + .seconds(1)))
        #expect(m.wake(now: t0 + .seconds(1)) == .ship)
        #expect(m.failed(now: t0) == .gaveUp)
        #expect(m.state == .closed)
        // What shutdown could not write: flushed by hand later, one attempt each time.
        #expect(m.flushRequested() == .ship)
        #expect(m.failed(now: t0) == .gaveUp)
        #expect(m.flushRequested() == .ship)
        #expect(m.shipped(more: false) == .finished)
        #expect(m.state == .closed)
    }

    @Test("Closing pauses start at their own delay and are capped by their own maximum")
    func closingPauses() {
        var m = AuditFlushStateMachine(
            baseDelay: .seconds(2), maximumDelay: .seconds(30), closingAttempts: 5, closingDelay: .milliseconds(200),
            closingMaximumDelay: .milliseconds(500))
        #expect(m.close() == .ship)
        #expect(m.failed(now: t0) == .sleep(until: t0 + .milliseconds(200)))
        _ = m.wake(now: t0 + .seconds(1))
        #expect(m.failed(now: t0) == .sleep(until: t0 + .milliseconds(400)))
        _ = m.wake(now: t0 + .seconds(1))
        #expect(m.failed(now: t0) == .sleep(until: t0 + .milliseconds(500)))
        #expect(m.delay(failures: 1) == .seconds(2))
        #expect(m.delay(failures: 5) == .seconds(30))
    }

    @Test("A closing delay longer than the closing maximum (it defaults to the base delay) is cut to it from the first pause")
    func closingPauseNeverExceedsItsMaximum() {
        var m = AuditFlushStateMachine(baseDelay: .seconds(5), maximumDelay: .seconds(30), closingAttempts: 5)
        #expect(m.close() == .ship)
        #expect(m.failed(now: t0) == .sleep(until: t0 + .seconds(2)))
        #expect(m.closingPause(failures: 1) == .seconds(2))
        #expect(m.closingPause(failures: 4) == .seconds(2))
        #expect(m.delay(failures: 1) == .seconds(5))
    }
}
