import Foundation
import Testing

@testable import BrokerServer

/// `request_id`: the caller's id goes into the audit trail as it is, so only plain, bounded text passes.
@Suite struct RequestIDTests {
    @Test("Printable ASCII up to 128 characters is kept; empty gets a fresh UUID")
    func accepted() throws {
        #expect(BrokerService.requestID("trace-4bf92f3577b34da6a3ce929d0e0e4736") == "trace-4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(BrokerService.requestID(String(repeating: "x", count: 128))?.count == 128)
        let fresh = try #require(BrokerService.requestID(""))
        #expect(fresh.count == 36 && fresh == fresh.lowercased())
        #expect(BrokerService.requestID("") != fresh)
    }

    @Test("Generated ids are version-4 UUIDs in lowercase, distinct, from a counter through a bijection")
    func generated() throws {
        let ids = (0..<10_000).map { _ in GeneratedRequestID.next() }
        #expect(Set(ids).count == ids.count)
        for id in ids.prefix(100) {
            let uuid = try #require(UUID(uuidString: id), "\(id) is not a UUID")
            #expect(uuid.uuidString.lowercased() == id)
            #expect(Array(id.utf8)[14] == UInt8(ascii: "4"))
            #expect("89ab".utf8.contains(Array(id.utf8)[19]))
        }
        // The finalizer is a bijection, so distinct counters never share a word: spot-check
        // that neighbouring inputs do not collide and that it is not the identity.
        let mixed = Set((0..<UInt64(100_000)).map(GeneratedRequestID.mix))
        #expect(mixed.count == 100_000)
        #expect(GeneratedRequestID.mix(1) != 1)
        #expect(UUID.lowercaseText(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210) == "01234567-89ab-cdef-fedc-ba9876543210")
    }

    @Test("Too long, spaces, control characters and non-ASCII are refused", arguments: [
        String(repeating: "x", count: 129), "a b", "a\nb", "a\u{1b}[31m", "café", "\u{7f}",
    ])
    func refused(_ id: String) {
        #expect(BrokerService.requestID(id) == nil)
    }
}
