import FedBrokerCore
import Foundation
import Testing

@Suite struct CircuitBreakerTests {
    let t0 = Date(timeIntervalSince1970: 1_000_000)
    func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }
    func refused(_ admission: CircuitBreaker.Admission, after seconds: Double) -> Bool {
        if case .refused(let wait) = admission { return abs(wait - seconds) < 1e-6 }
        return false
    }

    @Test func opensAfterConsecutiveFailuresOnly() {
        var b = CircuitBreaker(policy: .init(failureThreshold: 3, openSeconds: 5))
        for _ in 0..<2 {
            let v1 = b.admit(at: at(0))
            #expect(v1 == .allowed)
            let v2 = b.record(.failed, at: at(0))
            #expect(!v2)
        }
        // An answer in between (a 404, a 429, a customer's 403) resets the count.
        let v3 = b.admit(at: at(0))
        #expect(v3 == .allowed)
        b.record(.answered, at: at(0))
        for _ in 0..<2 { b.record(.failed, at: at(1)) }
        #expect(!b.isOpen)
        let v4 = b.record(.failed, at: at(1))
        #expect(v4)  // third in a row: opens
        #expect(b.isOpen)
        let v5 = b.admit(at: at(2))
        #expect(refused(v5, after: 4))
    }

    @Test func oneProbeAfterTheOpenPeriodDecides() {
        var b = CircuitBreaker(policy: .init(failureThreshold: 1, openSeconds: 5))
        b.record(.failed, at: at(0))
        let v6 = b.admit(at: at(4.5))
        #expect(refused(v6, after: 0.5))
        let v7 = b.admit(at: at(5))
        #expect(v7 == .probe)
        let v8 = b.admit(at: at(5.1))
        #expect(refused(v8, after: 4.9))  // only one probe at a time
        // The probe fails: open for another period.
        let v9 = b.record(.failed, at: at(6), probe: true)
        #expect(!v9)
        let v10 = b.admit(at: at(10))
        #expect(refused(v10, after: 1))
        let v11 = b.admit(at: at(11))
        #expect(v11 == .probe)
        let v12 = b.record(.answered, at: at(11.2), probe: true)
        #expect(v12)  // recovered: closed
        #expect(!b.isOpen)
        let v13 = b.admit(at: at(11.3))
        #expect(v13 == .allowed)
    }

    @Test func aProbeThatNeverReportsIsReplaced() {
        var b = CircuitBreaker(policy: .init(failureThreshold: 1, openSeconds: 5))
        b.record(.failed, at: at(0))
        let v14 = b.admit(at: at(5))
        #expect(v14 == .probe)
        let v15 = b.admit(at: at(9))
        #expect(refused(v15, after: 1))
        let v16 = b.admit(at: at(10))
        #expect(v16 == .probe)  // the first probe's caller vanished
        // An abandoned probe (no request was sent) lets the next caller probe at once.
        b.abandonProbe(at: at(10.5))
        let v17 = b.admit(at: at(10.5))
        #expect(v17 == .probe)
    }

    @Test func whileHalfOpenOnlyTheProbeDecides() {
        var b = CircuitBreaker(policy: .init(failureThreshold: 1, openSeconds: 5))
        b.record(.failed, at: at(0))
        let probe = b.admit(at: at(5))
        #expect(probe == .probe)
        // A call admitted before the circuit opened times out now: it does not reopen it…
        let late = b.record(.failed, at: at(5.2))
        #expect(!late)
        #expect(b.state == .halfOpen(probeStartedAt: at(5)))
        // …nor does a late success close it; the probe's own answer does.
        let lateSuccess = b.record(.answered, at: at(5.25))
        #expect(!lateSuccess)
        #expect(b.isOpen)
        let closed = b.record(.answered, at: at(5.3), probe: true)
        #expect(closed)
        #expect(!b.isOpen)
    }

    @Test func lateReportsWhileOpenChangeNothing() {
        var b = CircuitBreaker(policy: .init(failureThreshold: 1, openSeconds: 5))
        b.record(.failed, at: at(0))
        let v18 = b.record(.answered, at: at(1))
        #expect(!v18)  // admitted before it opened
        let v19 = b.admit(at: at(2))
        #expect(refused(v19, after: 3))
    }
}
