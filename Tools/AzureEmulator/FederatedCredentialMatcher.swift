import Foundation

/// How Entra decides whether a presented assertion is covered by one of the application's
/// federated identity credentials: issuer, subject and audience must each match exactly,
/// case-sensitively (WIRE.md §3.1), and only credentials that have propagated count.
public enum FederatedCredentialMatcher {
    public enum Outcome: Equatable, Sendable {
        case matched(credentialID: String)
        /// The subject matched only case-insensitively (AADSTS7002138).
        case subjectCaseMismatch
        /// Nothing matched (AADSTS70021).
        case noMatch
    }

    public static func match(
        issuer: String, subject: String, audiences: [String],
        credentials: [Directory.FederatedCredential], now: Date
    ) -> Outcome {
        let visible = credentials.filter { isVisible($0, now: now) }
        for credential in visible
        where credential.issuer == issuer && credential.subject == subject
            && credential.audiences.contains(where: { audiences.contains($0) })
        {
            return .matched(credentialID: credential.id)
        }
        let caseOnly = visible.contains {
            $0.issuer == issuer && $0.subject != subject && $0.subject.lowercased() == subject.lowercased()
                && $0.audiences.contains(where: { audiences.contains($0) })
        }
        return caseOnly ? .subjectCaseMismatch : .noMatch
    }

    /// A credential is seen by token exchange from `effectiveFrom` until its deletion has propagated.
    public static func isVisible(_ credential: Directory.FederatedCredential, now: Date) -> Bool {
        guard now >= credential.effectiveFrom else { return false }
        if let removed = credential.removedFrom, now >= removed { return false }
        return true
    }

    /// Credentials that count against the limit of 20 and are listed by Graph: everything not deleted.
    public static func isListed(_ credential: Directory.FederatedCredential) -> Bool {
        credential.removedFrom == nil
    }

    /// Graph's name rule: 3–120 characters, alphanumeric, dash or underscore, starting alphanumeric.
    public static func isValidName(_ name: String) -> Bool {
        guard (3...120).contains(name.count), let first = name.unicodeScalars.first else { return false }
        let isAlnum: (Unicode.Scalar) -> Bool = { $0.isASCII && (CharacterSet.alphanumerics.contains($0)) }
        guard isAlnum(first) else { return false }
        return name.unicodeScalars.allSatisfy { isAlnum($0) || $0 == "-" || $0 == "_" }
    }
}
