/// Why a client certificate that the TLS library verified is still refused at the handshake:
/// it yields no identity under `server.callerIdentity`, or its CA revoked it (`server.crlFile`).
/// The message names only what the certificate shows, escaped and bounded.
public struct CallerCertificateRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String { case noIdentity = "no_identity", ambiguousIdentity = "ambiguous_identity", invalidIdentity = "invalid_identity", revoked, unreadable }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// Neither the URI SAN nor (where allowed) the subject gives an identity.
        public static let noIdentity = Code(.noIdentity)
        /// More than one URI SAN: which one is the caller is not for the broker to guess.
        public static let ambiguousIdentity = Code(.ambiguousIdentity)
        /// A URI SAN that is not a URI, or an identity longer than the bound.
        public static let invalidIdentity = Code(.invalidIdentity)
        /// The CRL of its issuer lists it.
        public static let revoked = Code(.revoked)
        /// The certificate (or its SAN extension) cannot be parsed.
        public static let unreadable = Code(.unreadable)

        /// Also the metric label (`fedbroker_connections_closed_total{reason}`).
        public var description: String { value.rawValue }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "client certificate refused (\(code)): \(message)" }

    public static func == (lhs: CallerCertificateRefusal, rhs: CallerCertificateRefusal) -> Bool { lhs.code == rhs.code }
}
