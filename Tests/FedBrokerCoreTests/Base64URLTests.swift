import FedBrokerCore
import Foundation
import Testing
import FedBrokerTestSupport

@Suite struct Base64URLTests {
    @Test(arguments: ["", "f", "fo", "foo", "foob", "fooba", "foobar", "\u{00ff}\u{00fe}?>"])
    func roundTrip(_ s: String) {
        let bytes = Array(s.utf8)
        let encoded = Base64URL.encode(bytes)
        #expect(!encoded.contains("="))
        #expect(Base64URL.decode(encoded) == bytes)
    }

    @Test func usesTheURLAlphabet() {
        #expect(Base64URL.encode([0xfb, 0xff]) == "-_8")
        #expect(Base64URL.decode("-_8") == [0xfb, 0xff])
    }

    @Test func rejectsTheStandardAlphabetAndJunk() {
        #expect(Base64URL.decode("+/8") == nil)
        #expect(Base64URL.decode("a") == nil)
        #expect(Base64URL.decode("ab=c") == nil)
        #expect(Base64URL.decode("not base64!") == nil)
    }

    @Test func acceptsPadding() {
        #expect(Base64URL.decode("Zm8=") == Array("fo".utf8))
    }
}

@Suite struct WallClockTests {
    @Test func manualClockMovesOnlyWhenTold() {
        let clock = ManualWallClock(Date(timeIntervalSince1970: 1_000))
        #expect(clock.unixSeconds == 1_000)
        clock.advance(by: 59.9)
        #expect(clock.unixSeconds == 1_059)
        clock.set(Date(timeIntervalSince1970: 10))
        #expect(clock.unixSeconds == 10)
    }
}
