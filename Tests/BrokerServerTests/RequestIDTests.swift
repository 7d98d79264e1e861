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

    @Test("Too long, spaces, control characters and non-ASCII are refused", arguments: [
        String(repeating: "x", count: 129), "a b", "a\nb", "a\u{1b}[31m", "café", "\u{7f}",
    ])
    func refused(_ id: String) {
        #expect(BrokerService.requestID(id) == nil)
    }
}
