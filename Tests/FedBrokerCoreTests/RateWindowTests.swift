import FedBrokerCore
import Testing

@Suite struct RateWindowTests {
    @Test func admitsUpToTheLimitWithinTheWindowThenSlides() {
        var w = RateWindow(limit: 3, windowSeconds: 10)
        let admitted = [100, 105, 109, 109].map { w.admit(at: $0) }
        #expect(admitted == [true, true, true, false])
        #expect(w.used(at: 109) == 3)  // the refused one is not counted
        let later = [110, 110].map { w.admit(at: $0) }
        #expect(later == [true, false])  // second 100 left the window, second 110 is full again
    }

    @Test func saysHowLongUntilThereIsRoom() {
        var w = RateWindow(limit: 2, windowSeconds: 10)
        #expect(w.wait(at: 100) == 0)
        _ = w.admit(at: 100)
        _ = w.admit(at: 104)
        #expect(w.wait(at: 105) == 5)  // the bucket of second 100 leaves the window at 110
        #expect(w.wait(at: 105, cost: 2) == 9)  // both must leave
        #expect(w.wait(at: 105, cost: 3) == Int64.max)  // never fits
        #expect(w.wait(at: 110) == 0)
    }
}

