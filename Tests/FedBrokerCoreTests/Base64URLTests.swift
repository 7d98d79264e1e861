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
        for junk in ["A===", " Zm8", "Zm8 ", "Zm\n8", "Zm8\u{0}", "Zé8", "Z=m8", "-_8=-", "Zm8\u{600}="] {
            #expect(Base64URL.decode(junk) == nil, "\(junk.debugDescription)")
        }
        #expect(Base64URL.decode("") == [])
    }

    @Test func acceptsPadding() {
        #expect(Base64URL.decode("Zm8=") == Array("fo".utf8))
        #expect(Base64URL.decode("Zg==") == Array("f".utf8))
        #expect(Base64URL.decode("Zg=") == Array("f".utf8))
        #expect(Base64URL.decode("Zm9v") == Array("foo".utf8))
    }

    /// Every length up to a wrapped RSA-4096 key, against Foundation's coder with the alphabet
    /// swapped by hand (what this type did before it used swift-extras-base64).
    @Test func agreesWithFoundation() {
        var generator = SystemRandomNumberGenerator()
        for length in 0...520 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let standard = Data(bytes).base64EncodedString()
            let expected = standard.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            #expect(Base64URL.encode(bytes) == expected, "length \(length)")
            #expect(Base64URL.decode(expected) == bytes, "length \(length)")
            #expect(Base64URL.decode(standard.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")) == bytes, "padded, length \(length)")
            if standard.contains("+") || standard.contains("/") { #expect(Base64URL.decode(standard) == nil, "standard alphabet, length \(length)") }
        }
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
