import Testing

@testable import FedBrokerCore

@Suite struct BoundedTextTests {
    @Test("Clean text within the bound comes back unchanged")
    func cleanText() {
        #expect(BoundedText.escaped("tenant-1", maximumBytes: 8) == "tenant-1")
        #expect(BoundedText.escaped("é", maximumBytes: 2) == "é")
        #expect(BoundedText.escaped("", maximumBytes: 1) == "")
    }

    @Test("Control characters, DEL, C1 and the line separators are written out, never passed through")
    func controlsEscaped() {
        #expect(BoundedText.escaped("a\nb\r\u{0}\u{7f}\u{85}\u{2028}\u{2029}", maximumBytes: 256)
            == "a\\u{a}b\\u{d}\\u{0}\\u{7f}\\u{85}\\u{2028}\\u{2029}")
    }

    @Test("The byte bound holds for multi-byte text and is marked with an ellipsis, never splitting a scalar")
    func byteBound() {
        let text = String(repeating: "€", count: 100)  // 3 bytes each
        let bounded = BoundedText.escaped(text, maximumBytes: 32)
        #expect(bounded.utf8.count <= 32)
        #expect(bounded == String(repeating: "€", count: 9) + "…")  // 27 + 3 bytes
        // One byte over: cut and marked.
        let over = BoundedText.escaped(String(repeating: "x", count: 33), maximumBytes: 32)
        #expect(over == String(repeating: "x", count: 29) + "…")
        #expect(over.utf8.count == 32)
    }

    @Test("An escape is kept whole or not at all at the cut")
    func escapeNotSplit() {
        // "\u{a}" is 5 bytes: 30 x, then the escape would end at 35 > 32 - 3.
        let bounded = BoundedText.escaped(String(repeating: "x", count: 30) + "\n" + "tail", maximumBytes: 32)
        #expect(bounded == String(repeating: "x", count: 29) + "…")
    }

    @Test("900 KiB of input leaves at most the bound, and escaping it again changes nothing")
    func hugeInput() {
        let huge = String(repeating: "t\n", count: 900 * 512)
        let bounded = BoundedText.escaped(huge, maximumBytes: 256)
        #expect(bounded.utf8.count <= 256)
        #expect(bounded.hasSuffix("…"))
        #expect(!bounded.contains("\n"))
        #expect(BoundedText.escaped(bounded, maximumBytes: 256) == bounded)
    }

    @Test("A bound too small for the marker gives the empty string, not a trap")
    func tinyBounds() {
        #expect(BoundedText.escaped("abcdef", maximumBytes: 2) == "")
        #expect(BoundedText.escaped("abcdef", maximumBytes: 0) == "")
        #expect(BoundedText.escaped("abcdef", maximumBytes: -5) == "")
        #expect(BoundedText.escaped("abcdef", maximumBytes: 4) == "a…")
    }

    @Test("The scalar-count variant keeps its meaning: at most `limit` scalars, the cut marked")
    func scalarLimit() {
        let long = BoundedText.escaped(String(repeating: "x", count: 10_000))
        #expect(long.unicodeScalars.count == 256)
        #expect(long.hasSuffix("…"))
        #expect(BoundedText.escaped(String(repeating: "y", count: 256)) == String(repeating: "y", count: 256))
        #expect(BoundedText.escaped("line\nforged\u{7}") == "line\\u{a}forged\\u{7}")
    }
}
