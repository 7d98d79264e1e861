@testable import AzureEmulator
import Foundation
import Testing

/// `$filter` on the FIC list: the grammar Graph supports there, and Graph's two refusals.
@Suite struct GraphFilterTests {
    private func clauses(_ text: String) throws -> [GraphFilter.Clause] {
        try GraphFilter.parse(text).get().clauses
    }

    private func refusal(_ text: String) -> GraphFailure? {
        if case .failure(let failure) = GraphFilter.parse(text) { return failure }
        return nil
    }

    @Test("eq clauses on name, subject and issuer, joined by and")
    func eqClausesJoinedByAnd() throws {
        #expect(try clauses("name eq 'slot-1'") == [.init(property: "name", value: "slot-1")])
        #expect(
            try clauses("issuer eq 'https://login.microsoftonline.com/t/v2.0' and subject eq 'p'")
                == [.init(property: "issuer", value: "https://login.microsoftonline.com/t/v2.0"), .init(property: "subject", value: "p")])
        #expect(try clauses("  name   eq  'a b'  and  subject eq ''  ") == [.init(property: "name", value: "a b"), .init(property: "subject", value: "")])
    }

    @Test("'' inside a literal is one quote, and a quote cannot end the literal early")
    func doubledQuoteIsOneQuote() throws {
        #expect(try clauses("subject eq 'O''Brien'") == [.init(property: "subject", value: "O'Brien")])
        #expect(try clauses("subject eq ''''") == [.init(property: "subject", value: "'")])
        #expect(try clauses("subject eq 'x'' or name eq ''y'") == [.init(property: "subject", value: "x' or name eq 'y")])
    }

    @Test("syntax errors are 400 BadRequest 'Invalid filter clause'", arguments: [
        "", "name", "name eq", "name eq slot", "name eq 'open", "name eq 'a' and", "name eq 'a' 'b'", "name eq 'a'and subject eq 'b'",
        "nameeq 'a'", "startswith(name,'a')", "name eq 'a' xor name eq 'b'", "'a' eq name",
    ])
    func syntaxErrors(_ text: String) throws {
        let failure = try #require(refusal(text))
        #expect(failure.status == 400)
        #expect(failure.code == "BadRequest")
        #expect(failure.message.hasPrefix("Invalid filter clause"))
    }

    @Test("other properties and operators are 400 Request_UnsupportedQuery", arguments: [
        "description eq 'x'", "id eq 'x'", "name ne 'x'", "subject startswith 'x'", "name eq 'a' or name eq 'b'", "Name eq 'x'",
    ])
    func unsupported(_ text: String) throws {
        let failure = try #require(refusal(text))
        #expect(failure.status == 400)
        #expect(failure.code == "Request_UnsupportedQuery")
    }

    @Test("a credential matches when every clause matches exactly (case-sensitively)")
    func matching() throws {
        let credential = Directory.FederatedCredential(
            id: "id", name: "slot-1", issuer: "https://login.microsoftonline.com/t/v2.0", subject: "Principal", audiences: ["api://AzureADTokenExchange"],
            description: nil, effectiveFrom: Date(timeIntervalSince1970: 0), removedFrom: nil)
        #expect(try GraphFilter.parse("name eq 'slot-1' and subject eq 'Principal'").get().matches(credential))
        #expect(try !GraphFilter.parse("name eq 'slot-1' and subject eq 'principal'").get().matches(credential))
        #expect(try !GraphFilter.parse("issuer eq 'https://login.microsoftonline.com/t/v2.0/'").get().matches(credential))
    }
}
