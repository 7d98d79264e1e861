import Foundation

/// Graph's `$filter` on an application's federated identity credentials, as far as Graph
/// supports it there: `eq` on `name`, `subject` and `issuer`, clauses joined by `and`, values as
/// OData string literals (`'…'`, with `''` for a quote inside). Anything else is refused the way
/// Graph refuses it: a syntax error with 400 `BadRequest` "Invalid filter clause…", a property or
/// operator Graph does not filter on with 400 `Request_UnsupportedQuery`.
///
/// Values compare exactly (case-sensitively), as token exchange compares issuer and subject.
/// Whether Graph's `eq` on `name` ignores case is unconfirmed.
struct GraphFilter: Equatable, Sendable {
    struct Clause: Equatable, Sendable {
        var property: String
        var value: String
    }

    var clauses: [Clause]

    static let properties: Set<String> = ["name", "subject", "issuer"]
    /// OData operators Graph knows but does not support on these properties.
    private static let otherOperators: Set<String> = ["ne", "gt", "ge", "lt", "le", "in", "has", "startswith", "endswith", "contains", "any", "all", "not"]

    static func parse(_ text: String) -> Result<GraphFilter, GraphFailure> {
        var scanner = Scanner(Array(text.unicodeScalars))
        var clauses: [Clause] = []
        func syntaxError() -> Result<GraphFilter, GraphFailure> { .failure(.invalidFilter(text, position: scanner.position)) }
        while true {
            scanner.skipSpaces()
            guard let property = scanner.identifier() else { return syntaxError() }
            guard scanner.skipSpaces() > 0, let op = scanner.identifier() else { return syntaxError() }
            guard op == "eq" else {
                return Self.otherOperators.contains(op.lowercased()) ? .failure(.unsupportedFilter(property: property)) : syntaxError()
            }
            guard Self.properties.contains(property) else { return .failure(.unsupportedFilter(property: property)) }
            guard scanner.skipSpaces() > 0, let value = scanner.stringLiteral() else { return syntaxError() }
            clauses.append(Clause(property: property, value: value))
            let spaces = scanner.skipSpaces()
            if scanner.atEnd { return .success(GraphFilter(clauses: clauses)) }
            guard spaces > 0, let joiner = scanner.identifier() else { return syntaxError() }
            guard joiner == "and" else {
                return joiner == "or" ? .failure(.unsupportedQuery) : syntaxError()
            }
            guard scanner.skipSpaces() > 0 else { return syntaxError() }
        }
    }

    func matches(_ credential: Directory.FederatedCredential) -> Bool {
        clauses.allSatisfy { clause in
            switch clause.property {
            case "name": credential.name == clause.value
            case "subject": credential.subject == clause.value
            case "issuer": credential.issuer == clause.value
            default: false
            }
        }
    }

    /// A cursor over the filter text.
    private struct Scanner {
        let scalars: [Unicode.Scalar]
        var position = 0

        init(_ scalars: [Unicode.Scalar]) { self.scalars = scalars }

        var atEnd: Bool { position >= scalars.count }

        /// Skips spaces and returns how many there were.
        @discardableResult
        mutating func skipSpaces() -> Int {
            let start = position
            while position < scalars.count, scalars[position] == " " { position += 1 }
            return position - start
        }

        /// ASCII letters, digits, `_` and `.`, starting with a letter.
        mutating func identifier() -> String? {
            guard position < scalars.count, scalars[position].isASCII, scalars[position].properties.isAlphabetic else { return nil }
            var out = ""
            while position < scalars.count, scalars[position].isASCII,
                scalars[position].properties.isAlphabetic || scalars[position].properties.numericType != nil || scalars[position] == "_"
                    || scalars[position] == "."
            {
                out.unicodeScalars.append(scalars[position])
                position += 1
            }
            return out
        }

        /// `'…'` with `''` standing for one quote; nil when it does not start with a quote or never ends.
        mutating func stringLiteral() -> String? {
            guard position < scalars.count, scalars[position] == "'" else { return nil }
            var out = ""
            var index = position + 1
            while index < scalars.count {
                if scalars[index] == "'" {
                    if index + 1 < scalars.count, scalars[index + 1] == "'" {
                        out.unicodeScalars.append("'")
                        index += 2
                        continue
                    }
                    position = index + 1
                    return out
                }
                out.unicodeScalars.append(scalars[index])
                index += 1
            }
            return nil
        }
    }
}
