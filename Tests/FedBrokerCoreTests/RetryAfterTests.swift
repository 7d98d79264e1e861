import FedBrokerCore
import Foundation
import Testing

/// `parseRetryAfter` reads a header from outside: whatever it says, the result is no hint (nil)
/// or a finite number of seconds within 0...RetryAfter.maximumSeconds, so no wait, deadline or
/// millisecond conversion downstream can trap or park a caller.
@Suite struct RetryAfterTests {
    let now = Date(timeIntervalSince1970: 1_784_000_000)  // Tue, 14 Jul 2026 03:33:20 GMT

    @Test("delta-seconds above the maximum are clamped to it, whatever their size")
    func hugeDeltasAreClamped() {
        #expect(RetryAfter.maximumSeconds == 300)
        #expect(parseRetryAfter("10000000", now: now) == 300)
        #expect(parseRetryAfter("4294968", now: now) == 300)  // ~49.7 days: once trapped a UInt32 conversion of ms
        #expect(parseRetryAfter(String(repeating: "9", count: 64), now: now) == 300)
        #expect(parseRetryAfter("300", now: now) == 300)
        #expect(parseRetryAfter("299", now: now) == 299)
    }

    @Test("values that are not delta-seconds or an HTTP date are no hint", arguments: [
        "inf", "+inf", "-inf", "infinity", "nan", "NaN", "-5", "+5", "1e9", "1.5", "0x10", "5 s", "",
        String(repeating: "9", count: 65),
    ])
    func nonNumbersAreNoHint(_ value: String) {
        #expect(parseRetryAfter(value, now: now) == nil)
    }

    @Test("an HTTP date is read as the time until it, within 0...maximum")
    func datesAreClampedToo() {
        #expect(parseRetryAfter("Tue, 14 Jul 2026 03:35:00 GMT", now: now) == 100)
        #expect(parseRetryAfter("Tue, 14 Jul 2026 03:33:00 GMT", now: now) == 0)  // in the past
        #expect(parseRetryAfter("Fri, 31 Dec 9999 23:59:59 GMT", now: now) == 300)
        #expect(parseRetryAfter("Thu, 01 Jan 1970 00:00:00 GMT", now: now) == 0)
        // A leap day, and the day after a leap year's February.
        #expect(parseRetryAfter("Tue, 29 Feb 2028 00:00:00 GMT", now: Date(timeIntervalSince1970: 1_835_395_200 - 60)) == 60)
        #expect(parseRetryAfter("Wed, 01 Mar 2028 00:00:00 GMT", now: Date(timeIntervalSince1970: 1_835_481_600 - 1)) == 1)
    }

    @Test("only IMF-fixdate naming a real day and time is a date", arguments: [
        "Tue, 31 Feb 2026 03:33:20 GMT", "Tue, 29 Feb 2027 03:33:20 GMT", "Tue, 14 Jul 2026 24:00:00 GMT",
        "Tue, 14 Jul 2026 03:60:00 GMT", "Tue, 14 Jul 2026 03:33:20 UTC", "Tuesday, 14-Jul-26 03:33:20 GMT",
        "Tue Jul 14 03:33:20 2026", "Xyz, 14 Jul 2026 03:33:20 GMT", "Tue, 14 Jul 2026 03:33:2x GMT",
    ])
    func malformedDatesAreNoHint(_ value: String) {
        #expect(parseRetryAfter(value, now: now) == nil)
    }
}
