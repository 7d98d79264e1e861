/// How a registration is made repeatable: the client's `Idempotency-Key` and a fingerprint of
/// what it asked, so a retry returns the first answer and a different request under the same
/// key is refused instead of answered with someone else's tenant.
public struct RegistrationIdempotency: Hashable, Sendable {
    public var key: String
    public var fingerprint: String

    public init(key: String, fingerprint: String) {
        self.key = key
        self.fingerprint = fingerprint
    }
}
