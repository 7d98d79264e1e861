import FedBrokerCore
import Foundation
import Testing

/// Audit record ids: version-7 UUIDs, ordered by time, for the audit table's id index.
@Suite struct TimeOrderedUUIDTests {
    /// A generator that returns the given words in turn.
    struct Fixed: RandomNumberGenerator {
        var words: [UInt64]
        mutating func next() -> UInt64 { words.isEmpty ? 0 : words.removeFirst() }
    }

    @Test("Version 7 and variant 10 bits, the time's milliseconds in the first 48 bits, random bits after")
    func layout() {
        var zeros = Fixed(words: [0, 0])
        let date = Date(timeIntervalSince1970: 1_700_000_000.123)
        let id = UUID.timeOrdered(at: date, using: &zeros)
        // 1,700,000,000,123 ms = 0x018BCFE5687B
        #expect(id.uuidString == "018BCFE5-687B-7000-8000-000000000000")
        var ones = Fixed(words: [.max, .max])
        let full = UUID.timeOrdered(at: date, using: &ones)
        #expect(full.uuidString.hasPrefix("018BCFE5-687B-7"))
        #expect(full.uuidString.dropFirst(19).hasPrefix("BFFF"))  // variant 10, then random
        let random = UUID.timeOrdered(at: date)
        #expect(random.uuidString.prefix(15) == "018BCFE5-687B-7")
        #expect(["8", "9", "A", "B"].contains(random.uuidString.dropFirst(19).prefix(1)))
    }

    @Test("Ids of later milliseconds sort after earlier ones, as text and as bytes")
    func ordered() {
        // Half past each millisecond, so a Double's rounding cannot move one into the next.
        let ids = (0..<1000).map { UUID.timeOrdered(at: Date(timeIntervalSince1970: (1_800_000_000_000 + Double($0) + 0.5) / 1000)) }
        let text = ids.map(\.uuidString)
        let outOfOrder = zip(text, text.dropFirst()).filter { $0 >= $1 }.count
        #expect(outOfOrder == 0)
        let lower = text.map { $0.lowercased() }
        #expect(zip(lower, lower.dropFirst()).filter { $0 >= $1 }.count == 0)
        #expect(Set(ids).count == 1000)
    }

    @Test("Dates outside the 48-bit range, and non-finite ones, are clamped instead of trapping")
    func clamped() {
        #expect(UUID.timeOrdered(at: Date(timeIntervalSince1970: -5)).uuidString.hasPrefix("00000000-0000-7"))
        #expect(UUID.timeOrdered(at: .distantPast).uuidString.hasPrefix("00000000-0000-7"))
        #expect(UUID.timeOrdered(at: Date(timeIntervalSince1970: 1e15)).uuidString.hasPrefix("FFFFFFFF-FFFF-7"))
        #expect(UUID.timeOrdered(at: Date(timeIntervalSince1970: .infinity)).uuidString.hasPrefix("00000000-0000-7"))
        #expect(UUID.timeOrdered(at: Date(timeIntervalSince1970: .nan)).uuidString.hasPrefix("00000000-0000-7"))
    }

    @Test("Ids of one millisecond differ in their random bits, across several refills of the random pool")
    func sameMillisecond() {
        let date = Date(timeIntervalSince1970: 1_800_000_000.0005)
        // About 2 words an id, 512 words a refill: 3,000 ids take about a dozen refills.
        let ids = (0..<3000).map { _ in UUID.timeOrdered(at: date) }
        #expect(Set(ids).count == 3000)
        let randomTails = Set(ids.map { $0.lowercaseText.dropFirst(19) })
        #expect(randomTails.count == 3000)
        #expect(!randomTails.contains("8000-000000000000"))
    }

    @Test("lowercaseText is uuidString in lowercase")
    func lowercaseText() {
        for _ in 0..<200 {
            let id = UUID()
            #expect(id.lowercaseText == id.uuidString.lowercased())
        }
        #expect(UUID(uuid: (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 255)).lowercaseText == "00010203-0405-0607-0809-0a0b0c0d0eff")
    }

    @Test("randomLowercaseText is a version-4 UUID in lowercase, distinct across refills of the pool")
    func randomText() throws {
        let texts = (0..<2000).map { _ in UUID.randomLowercaseText() }
        #expect(Set(texts).count == 2000)
        for text in texts.prefix(200) {
            let parsed = try #require(UUID(uuidString: text))
            #expect(parsed.lowercaseText == text)
            #expect(parsed.uuid.6 >> 4 == 4)
            #expect(parsed.uuid.8 >> 6 == 0b10)
        }
    }
}
